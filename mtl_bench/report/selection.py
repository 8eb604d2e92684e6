"""Apply the protocol's model selection (mtl_bench/protocol.py) to the tidy results table.

Each run is selected by its own ``protocol.selection`` config (columns ``sel_*``) unless a rule is
given here. Only the evaluation splits (val, test) enter the history; ``best`` and ``delta_m``
read the selection split, which is val unless test is asked for by name - a run without a val
split then fails with a message instead of silently selecting on test.

:func:`tune` then chooses hyper-parameters across runs (Sener & Koltun 2018: "lr from {1e-4, ...,
5e-2} chosen on validation", appendix; docs/protocols.md#model-selection): for each (panel, method) it keeps the runs of
the config value with the best mean over seeds of their selected val score; test never enters.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..protocol import select
from .collect import RECORD_COLUMNS

EVAL_SPLITS = ("val", "test")


def history_of(frame: pd.DataFrame) -> dict[int, dict]:
    """``{epoch: {split: {task: {metric: value}}}}`` of one run's evaluation records."""
    history: dict[int, dict] = {}
    for epoch, split, task, metric, value in zip(frame["epoch"], frame["split"], frame["task"], frame["metric"],
                                                 frame["value"]):
        if split not in EVAL_SPLITS:
            continue
        value = math.nan if value is None else float(value)  # NaN stays NaN: a mean over epochs with it is NaN
        history.setdefault(int(epoch), {}).setdefault(split, {}).setdefault(task, {})[metric] = value
    return history


def protocol_of(run: pd.Series, rule=None, split=None, metric=None, k=None, average=None) -> dict:
    """The selection protocol of a run: explicit arguments win over the run's config."""
    def pick(given, column, default):
        if given is not None:
            return given
        value = run.get(column)
        return default if value is None or (isinstance(value, float) and math.isnan(value)) else value
    if rule is not None and split is None:
        split = "val"  # a rule asked for here selects on val; the config's split served the config's rule
    return {"rule": pick(rule, "sel_rule", "last"), "split": pick(split, "sel_split", "val"),
            "metric": pick(metric, "sel_metric", None), "k": int(pick(k, "sel_k", 10)),
            "average": pick(average, "sel_average", "metric")}


def select_run(frame: pd.DataFrame, protocol: dict, baseline: dict | None = None) -> tuple[list[int], dict]:
    """Selected epochs and evaluation of one run (``frame``: its rows of the results table)."""
    history = history_of(frame)
    rule, split, metric = protocol["rule"], protocol["split"], protocol["metric"]
    if rule in ("best", "delta_m") and split != "test" and not any(split in ev for ev in history.values()):
        raise ValueError(f"run {frame['run'].iloc[0]} has no {split!r} split to select on; selecting on test "
                         f"must be asked for by name (--select-split test)")
    direction = None
    if rule == "best":
        if not metric:
            raise ValueError("selection rule 'best' needs a metric ('task/metric' or 'mean/metric')")
        name = metric.split("/", 1)[-1]
        hib = frame.loc[frame["metric"] == name, "higher_is_better"]
        if hib.empty:
            raise ValueError(f"run {frame['run'].iloc[0]} has no metric {name!r} to select on")
        direction = bool(hib.iloc[0])
    directions = None
    if rule == "delta_m" and baseline:
        hib = frame.drop_duplicates(["task", "metric"]).set_index(["task", "metric"])["higher_is_better"]
        baseline = {key: value for key, value in baseline.items() if key in hib.index}
        if not baseline:
            raise ValueError(f"run {frame['run'].iloc[0]} logs none of its baselines' metrics")
        directions = {key: bool(hib[key]) for key in baseline}
    return select(history, rule=rule, split=split, metric=metric, higher_is_better=direction, k=protocol["k"],
                  baseline=baseline, directions=directions, delta_average=protocol["average"])


def selected_values(results: pd.DataFrame, rule=None, split=None, metric=None, k=None, average=None,
                    baselines=None) -> pd.DataFrame:
    """One row per (run, split, task, metric) with the selected value and the run's columns.

    ``baselines(run_row, split) -> {(task, metric): value}`` supplies the baselines of the
    ``delta_m`` rule (see :mod:`mtl_bench.report.baselines`).
    """
    records = [c for c in (*RECORD_COLUMNS, "higher_is_better") if c in results.columns]
    run_columns = [c for c in results.columns if c not in records]
    # the run's columns are the same on each of its rows: grouping only the records' columns
    # spares copying the hundred config columns of every run
    first_rows = results.drop_duplicates("run").set_index("run", drop=False)
    out = []
    for run, frame in results[["run", *records]].groupby("run", sort=True):
        info = first_rows.loc[run]
        protocol = protocol_of(info, rule, split, metric, k, average)
        baseline = baselines(info, protocol["split"]) if protocol["rule"] == "delta_m" and baselines else None
        if protocol["rule"] == "delta_m" and not baseline:
            if int(info["n_tasks"]) > 1:
                raise ValueError(f"run {run}: selection by Delta_m needs single-task baseline runs")
            protocol = {**protocol, "rule": "best" if protocol["metric"] else "last"}  # a baseline itself
        epochs, evaluation = select_run(frame, protocol, baseline)
        directions = frame.drop_duplicates(["task", "metric"]).set_index(["task", "metric"])["higher_is_better"]
        base = {c: info[c] for c in run_columns}
        for split_name, tasks in evaluation.items():
            for task, metrics in tasks.items():
                for name, value in metrics.items():
                    out.append({**base, "split": split_name, "task": task, "metric": name,
                                "value": math.nan if value is None else value,
                                "higher_is_better": bool(directions[(task, name)]),
                                "selected_epochs": ",".join(map(str, epochs)), "selection": protocol["rule"],
                                "selection_rule": describe_protocol(protocol)})
    return pd.DataFrame(out)


def describe_protocol(protocol: dict) -> str:
    """The selection rule in words for captions, e.g. ``best: val mean/accuracy``."""
    rule, split = protocol["rule"], protocol["split"]
    if rule == "best":
        return f"best: {split} {protocol['metric']}"
    if rule == "mean_last_k":
        return f"mean of the last {protocol['k']} epochs"
    if rule == "delta_m":
        return f"best: {split} Δm against the single-task runs"
    return "last epoch"


TUNE_SPLIT = "val"  # tuning reads validation only, whatever split the table reports
TRIAL_PREFIX = "trial_"  # the trial folders of an mtl-bench tune study: STUDY/METHOD/trial_K/seed_S


def _tune_score(rows: pd.DataFrame, metric: str, single_task: bool, required: bool = True) -> float:
    """The score of one run's selected rows of a split: ``task/metric`` or ``mean/metric`` as in
    :func:`mtl_bench.protocol.metric_value`; a single-task run scores the metric of its own task.
    Missing: an error when ``required`` (val, which chooses), else NaN (test, shown only)."""
    task, name = metric.split("/", 1)
    picked = rows[rows["metric"] == name]
    if task != "mean" and not single_task:
        picked = picked[picked["task"] == task]
    if picked.empty:
        if not required:
            return math.nan
        logged = ", ".join(sorted(set(rows["metric"]))) or "none"
        raise ValueError(f"run {rows['run'].iloc[0]} has no {TUNE_SPLIT} value of {metric} to tune on; its "
                         f"{TUNE_SPLIT} metrics: {logged}")
    return float(picked["value"].mean())


def tune_scores(selected: pd.DataFrame, keys: Sequence[str], metric: str | None = None) -> pd.DataFrame:
    """One row per run of annotated selected values: ``panel``, ``method``, ``tasks``, ``seed``,
    the run's values of the config ``keys`` (as text, "–" where it lacks a key), the tuning
    ``metric``, its direction ``higher_is_better``, ``score`` (the run's val score, what
    :func:`tune` chooses on) and ``test`` (the same score on test, for figures; never chosen on).

    The score is ``metric`` (``task/metric`` or ``mean/metric``), else each run's
    ``protocol.selection.metric``, read at the epochs the run's rule selected (the best val epoch
    for ``best``, the last or last k for ``last`` / ``mean_last_k``). Single-task runs score
    their own task's metric."""
    columns = [f"cfg.{key}" for key in keys]
    runs = selected.drop_duplicates("run").set_index("run")
    by_split = {split: selected[selected["split"] == split] for split in (TUNE_SPLIT, "test")}
    frames = []
    for (panel, method, tasks), group in runs.groupby(["panel", "method", "tasks"], sort=False, dropna=False):
        metrics = {metric} if metric else set(group["sel_metric"].dropna())
        if len(metrics) != 1:
            raise ValueError(f"tuning {','.join(keys)} of {method} in {panel} needs one val metric: "
                             + ("the runs' protocol.selection.metric is null (rule "
                                f"{','.join(map(str, group['sel_rule'].unique()))}); " if not metrics else
                                f"its runs select on {', '.join(sorted(metrics))}; ")
                             + "pass --tune-metric task/metric or mean/metric")
        name = next(iter(metrics))
        if "/" not in name:
            raise ValueError(f"--tune-metric {name!r} must read 'task/metric' or 'mean/metric'")
        hib = selected.loc[selected["metric"] == name.split("/", 1)[1], "higher_is_better"]
        if hib.empty:
            raise ValueError(f"no run of {method} in {panel} logs {name} to tune on")
        scores, tests = {}, {}
        for run, info in group.iterrows():
            single_task = int(info["n_tasks"]) == 1
            rows = by_split[TUNE_SPLIT][by_split[TUNE_SPLIT]["run"] == run]
            if rows.empty:
                raise ValueError(f"run {run} has no {TUNE_SPLIT} values to tune {','.join(keys)} on "
                                 f"(tuning never reads test)")
            scores[run] = _tune_score(rows, name, single_task)
            tests[run] = _tune_score(by_split["test"][by_split["test"]["run"] == run], name, single_task, required=False)
        # a key another method lacks (strategy.alpha of ew, tuned by mtl-bench tune for gradnorm) reads "–"
        frame = group[columns].map(lambda v: "–" if pd.isna(v) else str(v))
        frames.append(frame.assign(panel=panel, method=method, tasks=tasks, seed=group["seed"], metric=name,
                                   higher_is_better=bool(hib.iloc[0]), score=pd.Series(scores),
                                   test=pd.Series(tests)))
    return pd.concat(frames).rename_axis("run").reset_index()


def tune(selected: pd.DataFrame, keys: Sequence[str], metric: str | None = None,
         scores: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep, in each (panel, method, tasks) of annotated selected values, the runs whose values of
    the config ``keys`` have the best mean over seeds of their val score (``scores``, else
    :func:`tune_scores` of them); ``(kept, choices)``. Ties: the first value in sorted order; a value scoring NaN is never
    chosen over one that scores. ``choices`` has one row per group: panel, method, tasks, the
    chosen ``key`` values, ``score`` and ``candidates`` (value -> score text).
    """
    if selected.empty or not keys:
        return selected, pd.DataFrame()
    columns = [f"cfg.{key}" for key in keys]
    kept, choices = [], []
    scores = tune_scores(selected, keys, metric) if scores is None else scores
    for (panel, method, tasks), frame in scores.groupby(["panel", "method", "tasks"], sort=False, dropna=False):
        sign = 1.0 if frame["higher_is_better"].iloc[0] else -1.0
        per_value = (frame.groupby(columns + ["seed"], dropna=False)["score"].mean()          # mean over a seed's runs,
                     .groupby(level=list(range(len(columns)))).mean())           # then over seeds
        per_value = per_value.sort_index(key=value_order)
        best = (sign * per_value).fillna(-math.inf).idxmax()                     # ties: the first
        best = best if isinstance(best, tuple) else (best,)
        chosen = (frame[columns] == pd.Series(best, index=columns)).all(axis=1)
        kept.extend(frame.loc[chosen, "run"])
        seeds = frame.groupby(columns, dropna=False)["seed"].nunique()
        choices.append({"panel": panel, "method": method, "tasks": tasks, **dict(zip(keys, best)),
                        "metric": frame["metric"].iloc[0], "score": float(per_value[best if len(best) > 1 else best[0]]),
                        "candidates": ", ".join(f"{v}: {x:.4g}" for v, x in per_value.items()),
                        "values": frozenset(seeds.index), "seeds": seeds.to_dict(),
                        "searched": any(Path(str(run)).parent.name.startswith(TRIAL_PREFIX) for run in frame["run"])})
    return selected[selected["run"].isin(kept)].reset_index(drop=True), pd.DataFrame(choices)


def grid_gaps(choices: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """Per row of ``choices`` (:func:`tune`'s, the single-task and multi-task ones together), what
    its grid lacks: the values other groups of its panel ran and it did not, and its values run on
    fewer seeds than its others. Empty text for a complete grid, and for the methods of
    ``mtl-bench tune`` studies (``searched``: trial folders), which draw values of their own."""
    grids = choices[~choices["searched"]]
    gaps = []
    for _, row in choices.iterrows():
        if row["searched"]:
            gaps.append("")
            continue
        panel = grids[grids["panel"] == row["panel"]]
        missing = sorted(frozenset().union(*panel["values"]) - row["values"], key=lambda v: value_order(pd.Index([v]))[0])
        most = max(row["seeds"].values())
        thin = [(v, n) for v, n in row["seeds"].items() if n < most]
        text = []
        if missing:
            text.append(f"no runs at {', '.join(_value_text(keys, v) for v in missing)}")
        if thin:
            text.append(", ".join(f"{_value_text(keys, v)} on {n} of {most} seeds" for v, n in thin))
        gaps.append("; ".join(text))
    return gaps


def _value_text(keys: Sequence[str], value) -> str:
    values = value if isinstance(value, tuple) else (value,)
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values))


def value_order(index: pd.Index) -> pd.Index:
    """Sort config values numerically when they are numbers (1e-4 before 0.001), else as text."""
    def key(value):
        try:
            return (0, float(value), "")
        except (TypeError, ValueError):
            return (1, 0.0, str(value))
    return index.map(key)
