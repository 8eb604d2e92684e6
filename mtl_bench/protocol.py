"""Model selection rules (the ``protocol`` config group), shared by the trainer and the report layer.

An epoch's evaluation is ``{split: {task: {metric: value}}}``. A rule picks which epochs a run
reports:

- ``last``: the last epoch;
- ``best``: the epoch with the best value of ``metric`` on ``split`` (val by default; test
  only when asked for by name), where ``metric`` is ``"task/metric"`` or ``"mean/metric"`` (the
  mean over tasks of that metric);
- ``mean_last_k``: every metric averaged over the last ``k`` epochs (the NYUv2 protocol);
- ``delta_m``: the epoch with the lowest Delta_m% (Maninis et al. 2019) on ``split`` against
  single-task ``baseline`` values of that split. The baselines live in other runs, so only the
  report layer (``mtl-bench table``) applies this rule; the trainer records it as pending.
  :func:`delta_m` (docs/protocols.md#scores-delta_m-and-mean-rank) is defined here and used by
  the report layer's tables too.
"""
from __future__ import annotations

import math
from typing import Mapping

AVERAGES = ("metric", "task")

# Config keys that change where, how fast or how visibly a run goes and leave its numbers alone
# (to rounding: the batched and the loop gradients, or another eval batch size, sum in other
# orders): a run may resume with them changed.
SAME_NUMBERS = ("dataset.root", "dataset.download", "dataset.cache_dir", "dataset.pin_memory",
                "dataset.eval_batch_size", "trainer.progress", "trainer.checkpoint", "trainer.log_interval",
                "trainer.host_memory", "grad.method", "grad.chunk_size", "grad.vmap_max_bytes", "logger",
                "diagnostics")
# ... and keys that also change the random streams (the data order of a cache, the augmentation
# draws of the loader's workers, a device's or a compiled graph's random numbers) but not the
# experiment: runs that differ in them are seeds of one experiment. They never split a report
# panel and are no departure from a preset. (trainer.distributed is neither: without synchronised
# batch norm each process normalises its own share of the batch, docs/distributed.md.)
SAME_EXPERIMENT = (*SAME_NUMBERS, "dataset.cache", "dataset.num_workers", "trainer.device", "trainer.compile")


def is_key_in(key: str, keys: tuple[str, ...]) -> bool:
    """``key`` is one of ``keys`` or below one of them (``logger.tensorboard`` below ``logger``, and
    a config group's override ``hydra/launcher`` below ``hydra``)."""
    return any(key == k or key.startswith((k + ".", k + "/")) for k in keys)


def delta_m(values: Mapping[tuple[str, str], float], baseline: Mapping[tuple[str, str], float],
            higher_is_better: Mapping[tuple[str, str], bool], average: str = "metric") -> float:
    """Delta_m% of ``values`` against ``baseline``; both map ``(task, metric)`` to a value.

    Maninis et al. 2019 (CVPR, eq. 5): ``(100/K) sum_k (-1)^{s_k} (M_k - B_k) / B_k`` with
    ``s_k = 1`` when higher is better, averaged over the K metrics (``average="metric"``) or
    first within each task, then over tasks (``"task"``).

    Every key of ``values`` needs a baseline and a direction. Lower is better: 0 matches the
    baseline, negative improves on it.
    """
    if average not in AVERAGES:
        raise ValueError(f"Delta_m average={average!r}: choose 'metric' or 'task'")
    if not values:
        raise ValueError("Delta_m of no metrics")
    terms: dict[str, list[float]] = {}
    for key, value in values.items():
        if key not in baseline:
            raise KeyError(f"no baseline for {key[0]}/{key[1]}")
        base = baseline[key]
        if base == 0:
            raise ValueError(f"baseline of {key[0]}/{key[1]} is 0: Delta_m is undefined")
        sign = -1.0 if higher_is_better[key] else 1.0
        terms.setdefault(key[0], []).append(sign * (value - base) / abs(base))
    if average == "metric":
        flat = [t for ts in terms.values() for t in ts]
        return 100.0 * sum(flat) / len(flat)
    return 100.0 * sum(sum(ts) / len(ts) for ts in terms.values()) / len(terms)


Evaluation = Mapping[str, Mapping[str, Mapping[str, float]]]
RULES = ("last", "best", "mean_last_k", "delta_m")


def metric_value(evaluation: Evaluation, split: str, metric: str) -> float:
    """The value of ``"task/metric"`` or ``"mean/metric"`` on ``split``."""
    if "/" not in metric:
        raise ValueError(f"protocol.selection.metric={metric!r} must read 'task/metric' or 'mean/metric'")
    task, name = metric.split("/", 1)
    tasks = evaluation.get(split)
    if not tasks:
        raise ValueError(f"no {split!r} evaluation to select on; set protocol.selection.split")
    if task == "mean":
        values = [m[name] for m in tasks.values() if name in m]
        if not values:
            raise ValueError(f"no task has metric {name!r} on {split!r}")
        return sum(values) / len(values)
    if task not in tasks or name not in tasks[task]:
        raise ValueError(f"protocol.selection.metric={metric!r} is not among the logged metrics on {split!r}")
    return tasks[task][name]


def select(history: Mapping[int, Evaluation], rule: str = "last", split: str = "val", metric: str | None = None,
           higher_is_better: bool | None = None, k: int = 10, baseline: Mapping | None = None,
           directions: Mapping | None = None, delta_average: str = "metric") -> tuple[list[int], dict]:
    """``(selected epochs, selected evaluation)`` from ``{epoch: evaluation}``.

    ``rule="delta_m"`` needs ``baseline`` and ``directions``, both ``{(task, metric): value}``;
    the Delta_m of an epoch is taken over the baseline's keys (``delta_average`` "metric" or "task").
    """
    if rule not in RULES:
        raise ValueError(f"protocol.selection.rule={rule!r}: choose one of {', '.join(RULES)}")
    epochs = sorted(history)
    if not epochs:
        return [], {}
    if rule == "last":
        chosen = [epochs[-1]]
    elif rule == "mean_last_k":
        chosen = epochs[-int(k):]
    elif rule == "delta_m":
        if not baseline or directions is None:
            raise ValueError("protocol.selection.rule=delta_m needs single-task baselines (mtl-bench table)")
        def delta(epoch):
            tasks = history[epoch].get(split)
            if not tasks:
                raise ValueError(f"no {split!r} evaluation to select on; set protocol.selection.split")
            values = {key: tasks.get(key[0], {}).get(key[1]) for key in baseline}
            if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values.values()):
                return math.inf
            return delta_m(values, baseline, directions, delta_average)
        chosen = [min(epochs, key=delta)]  # ties: the earliest epoch
    else:
        if metric is None or higher_is_better is None:
            raise ValueError("protocol.selection.rule=best needs protocol.selection.metric and its direction")
        def key(epoch):
            value = metric_value(history[epoch], split, metric)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return -math.inf
            return value if higher_is_better else -value
        chosen = [max(epochs, key=key)]  # ties: the earliest epoch
    return chosen, average([history[e] for e in chosen])


def average(evaluations: list[Evaluation]) -> dict:
    """Element-wise mean of evaluations with the same keys; NaN (None) where an evaluation's value is
    NaN (None): a mean over the epochs that happen to have a value would hide the others."""
    out: dict = {}
    for split, tasks in evaluations[0].items():
        out[split] = {}
        for task, metrics in tasks.items():
            out[split][task] = {}
            for name in metrics:
                values = [e[split][task][name] for e in evaluations]
                out[split][task][name] = None if None in values else sum(values) / len(values)
    return out


# ----------------------------------------------------------------- a run's own selection
Directions = Mapping[str, Mapping[str, bool]]  # task -> metric -> higher is better


def check_selection(selection: Mapping, splits: list[str], directions: Directions) -> None:
    """Reject a ``protocol.selection`` a benchmark with ``splits`` and tasks' metric
    ``directions`` cannot satisfy, before any epoch is trained (only ``best`` names a split and
    a metric the run must log)."""
    rule, split, metric = selection.get("rule", "last"), selection.get("split", "val"), selection.get("metric")
    if rule != "best":
        return
    if split not in splits:
        raise ValueError(
            f"protocol.selection.split={split!r}, but this benchmark has no {split!r} split "
            f"(splits: {', '.join(splits) or 'none'}); give the dataset a validation split "
            f"(e.g. dataset.val_size) or choose protocol=last or protocol=mean_last_10"
        )
    task, _, name = (metric or "").partition("/")
    known = {n for metrics in directions.values() for n in metrics}
    if not name or name not in known or task not in ("mean", *directions):
        raise ValueError(
            f"protocol.selection.metric={metric!r} must read 'mean/METRIC' or 'TASK/METRIC' with a logged "
            f"metric ({', '.join(sorted(known))}) and task ({', '.join(directions)})"
        )


def run_selection(selection: Mapping, history: Mapping[int, Evaluation], directions: Directions) -> dict:
    """The ``selected`` block of a run's summary.json: the rule, its split and metric, the chosen
    epochs and their (averaged) metrics, from ``{epoch: evaluation}`` (its ``train`` entries are
    not selected on). ``delta_m`` needs baselines from other runs: recorded as pending."""
    sel = dict(selection)
    metric = sel.get("metric")
    direction = None
    if metric:
        name = metric.split("/", 1)[-1]
        flat = {n: hib for metrics in directions.values() for n, hib in metrics.items()}
        direction = flat.get(name, False)
    split = sel.get("split", "val")
    if sel.get("rule") == "delta_m":  # needs single-task baselines: the report layer selects
        return {"rule": "delta_m", "split": split, "metric": metric, "epochs": [], "metrics": {},
                "note": "selection by Delta_m against baselines is done by mtl-bench table/collect"}
    history = {e: {s: v for s, v in ev.items() if s != "train"} for e, ev in history.items()}
    epochs, metrics = select(history, rule=sel.get("rule", "last"), split=split, metric=metric,
                             higher_is_better=direction, k=int(sel.get("k", 10)))
    return {"rule": sel.get("rule", "last"), "split": split, "metric": metric, "epochs": epochs, "metrics": metrics}

