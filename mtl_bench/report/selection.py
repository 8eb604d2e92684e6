"""Apply the protocol's model selection (mtl_bench/protocol.py) to the tidy results table.

Each run is selected by its own ``protocol.selection`` config (columns ``sel_*``) unless a rule is
given here. Only the evaluation splits (val, test) enter the history; ``best`` and ``delta_m``
read the selection split, which is val unless test is asked for by name - a run without a val
split then fails with a message instead of silently selecting on test.
"""
from __future__ import annotations

import math

import pandas as pd

from ..protocol import select

EVAL_SPLITS = ("val", "test")


def history_of(frame: pd.DataFrame) -> dict[int, dict]:
    """``{epoch: {split: {task: {metric: value}}}}`` of one run's evaluation records."""
    history: dict[int, dict] = {}
    rows = frame[frame["split"].isin(EVAL_SPLITS)]
    for epoch, split, task, metric, value in rows[["epoch", "split", "task", "metric", "value"]].itertuples(index=False):
        value = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
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
    run_columns = [c for c in results.columns if c not in ("epoch", "step", "split", "task", "metric", "value",
                                                           "higher_is_better")]
    out = []
    for run, frame in results.groupby("run", sort=True):
        info = frame.iloc[0]
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
                                "selected_epochs": ",".join(map(str, epochs)), "selection": protocol["rule"]})
    return pd.DataFrame(out)
