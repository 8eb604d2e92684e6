"""From run dirs to scored selections: collect -> annotate -> select (baselines first) -> tune -> table.

``tune`` (optional: ``--tune trainer.lr``) keeps, per panel and method, the runs of the config
values that score best on validation (:func:`mtl_bench.report.selection.tune`); single-task
baselines are tuned first, per task, so that Delta_m compares tuned runs with tuned baselines.

This is what ``mtl-bench table`` / ``plot`` / ``reproduce`` run; each step is also usable alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from .baselines import Baselines
from .collect import Collection, collect
from .groups import annotate
from .published import load_published
from .selection import TUNE_SPLIT, grid_gaps, selected_values, tune as tune_runs, tune_scores
from .tables import SKIP_METRICS, ScoreTable, _short, score_table


@dataclass
class Selection:
    collection: Collection
    results: pd.DataFrame      # annotated tidy table (completed runs)
    selected: pd.DataFrame     # annotated selected values, one row per (run, split, task, metric)
    baselines: Baselines | None
    tuned: list[str] = field(default_factory=list)              # config keys chosen on val
    tuning: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per (panel, method, tasks)
    grid: pd.DataFrame = field(default_factory=pd.DataFrame)    # tune_scores() of every tuned run, chosen or not


def select_all(source: Sequence[str] | Collection, rule=None, split=None, metric=None, k=None,
               average="metric", baseline: str = "stl", tune: Sequence[str] = (), tune_metric=None) -> Selection:
    """Collect (unless given a :class:`Collection`), annotate and select every run.

    ``baseline``: ``stl`` (stored single-task runs), ``published:NAME`` (the ``stl`` row of
    results/published/NAME.csv) or ``none``. Baseline runs are selected first so that the
    ``delta_m`` rule can select the multi-task runs against them. ``tune``: config keys chosen
    on val per panel and method (``tune_metric`` overrides the runs' selection metric); the
    runs of the other values leave ``results`` and ``selected`` (their val and test scores stay
    in ``grid``).
    """
    tune = list(tune or [])
    collection = source if isinstance(source, Collection) else collect(source)
    if collection.results.empty:
        raise ValueError("no completed runs found" + (f"\n{collection.describe_excluded()}"
                                                      if not collection.excluded.empty else ""))
    results = annotate(collection.results, tuned=tune)
    args = dict(rule=rule, split=split, metric=metric, k=k, average=average)
    base_rows = results[results["is_baseline"]]
    stl = selected_values(base_rows, **args) if not base_rows.empty else pd.DataFrame()
    tuning, grid = [], []
    if not stl.empty:
        stl = annotate_like(stl, results)
        if tune:
            grid.append(tune_scores(stl, tune, tune_metric))
            stl, choices = tune_runs(stl, tune, tune_metric, scores=grid[-1])
            tuning.append(choices)
    if baseline == "stl":
        baselines = Baselines.from_runs(stl) if not stl.empty else None
    elif baseline.startswith("published:"):
        baselines = Baselines.from_published(load_published(baseline.split(":", 1)[1]))
    elif baseline == "none":
        baselines = None
    else:
        raise ValueError(f"--baseline {baseline!r}: choose stl, published:NAME or none")
    lookup = (lambda run, split_: _scored(baselines.lookup(annotated_run(run, results), split_))) if baselines else None
    mtl = selected_values(results[~results["is_baseline"]], baselines=lookup, **args)
    mtl = annotate_like(mtl, results)
    if tune and not mtl.empty:
        grid.insert(0, tune_scores(mtl, tune, tune_metric))
        mtl, choices = tune_runs(mtl, tune, tune_metric, scores=grid[0])
        tuning.insert(0, choices)
    selected = pd.concat([mtl, stl], ignore_index=True)
    if tune:
        results = results[results["run"].isin(selected["run"])].reset_index(drop=True)
    tuning = pd.concat(tuning, ignore_index=True) if tuning else pd.DataFrame()
    if not tuning.empty:  # holes in the grid, single-task and multi-task runs compared together
        tuning["incomplete"] = grid_gaps(tuning, tune)
        tuning = tuning.drop(columns=["values", "seeds", "searched"])
    grid = pd.concat(grid, ignore_index=True) if grid else pd.DataFrame()
    return Selection(collection, results, selected, baselines, tune, tuning, grid)


def _scored(baseline: dict) -> dict:
    """The metrics Delta_m selection scores: all but losses and weights (unless nothing else)."""
    kept = {k: v for k, v in baseline.items() if k[1] not in SKIP_METRICS}
    return kept or baseline


def annotate_like(selected: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Copy panel/method/is_baseline/baseline_panel of each run from the annotated results."""
    runs = results.drop_duplicates("run").set_index("run")
    out = selected.copy()
    for column in ("panel", "method", "is_baseline", "baseline_panel"):
        out[column] = out["run"].map(runs[column])
    return out


def annotated_run(run: pd.Series, results: pd.DataFrame) -> pd.Series:
    if "panel" in run:
        return run
    first = results[results["run"] == run["run"]].iloc[0]
    return first


def make_table(source, split: str = "test", columns=None, metrics=None, delta_average: str = "metric",
               reference: str | None = None, baseline: str = "stl", selection: dict | None = None,
               tune: Sequence[str] = (), tune_metric=None, ci: str = "t", correction: str = "none",
               poi: bool = False, bars: dict[str, float] | None = None) -> tuple[ScoreTable, Selection]:
    """Collect, select, tune and score: the table of ``mtl-bench table``. ``selection`` holds the
    overrides of the runs' protocol (rule, split, metric, k); ``split`` is the reported split;
    ``tune`` the config keys chosen on val (shown as columns of the table, with a note); ``bars``
    marks the metric means worse than a level (metric -> value in the table's units)."""
    sel = select_all(source, average=delta_average, baseline=baseline, tune=tune, tune_metric=tune_metric,
                     **(selection or {}))
    table = score_table(sel.selected, sel.baselines, split=split, columns=columns, metrics=metrics,
                        delta_average=delta_average, reference=reference, tuned=sel.tuned, ci=ci,
                        correction=correction, poi=poi)
    if bars:
        table.set_bars(bars)
    if sel.tuned and not sel.tuning.empty:
        metrics_used = ", ".join(sorted(sel.tuning["metric"].unique()))
        grid = "; ".join(_grid(key, _values(sel.collection.results[f'cfg.{key}'])) for key in sel.tuned)
        table.notes.append(f"{', '.join(sel.tuned)} chosen per method (per task for stl) by the best mean over "
                           f"seeds of {TUNE_SPLIT} {metrics_used} ({grid}); " + _test_use(sel.selected))
        gaps = sel.tuning[sel.tuning["incomplete"] != ""]
        if not gaps.empty:
            table.notes.append("INCOMPLETE GRID, so these choices were made among fewer runs than the others': "
                               + "; ".join(f"{row.method}{f' ({row.tasks})' if row.method == 'stl' else ''}: {row.incomplete}"
                                           for row in gaps.itertuples()) + ".")
        _add_trials(table, source)
    return table, sel


def _test_use(selected) -> str:
    """Whether test entered the choice: through the epochs, when they were selected on test."""
    rules = selected["selection_rule"].astype(str) if "selection_rule" in selected else []
    on_test = sorted({rule for rule in rules if rule.startswith("best: test")})
    if not on_test:
        return "test never used."
    return (f"but each run's epochs were selected on test ({'; '.join(on_test)}), so test entered the choice: "
            f"select on val (--select-split val) for a choice test never saw.")


def _grid(key: str, values: list[str]) -> str:
    """``key in {a, b, c}``, or the range of the values when there are many (an Optuna study)."""
    if len(values) <= 8:
        return f"{key} in {{{', '.join(_short(v) for v in values)}}}"
    try:
        numbers = sorted(float(v) for v in values if v != "–")
        return f"{key}: {len(values)} values in [{numbers[0]:.4g}, {numbers[-1]:.4g}]"
    except ValueError:
        return f"{key}: {len(values)} values"


def _add_trials(table: ScoreTable, source) -> None:
    """The trials each method spent in the ``mtl-bench tune`` studies among ``source`` (tune.json):
    a column ``trials`` after the tuned values, with a note."""
    if isinstance(source, Collection):
        return
    from ..tune.study import study_of_run, trials_spent

    spent = trials_spent(source)
    if not spent or table.runs.empty:
        return
    counts = []
    for _, row in table.frame.iterrows():   # a row's runs tell which studies (and which method of each) it came from
        runs = table.runs[(table.runs["panel"] == row["panel"]) & (table.runs["method"] == row["method"])]["run"]
        studies = {study_of_run(run) for run in runs} & set(spent)
        counts.append(str(sum(spent[s] for s in studies)) if studies else "")
    table.frame["trials"] = counts
    table.tuned = table.tuned + ["trials"]
    table.notes.append("trials: finished trials of the method's mtl-bench tune study (completed and failed: "
                       "the same budget for every method; summed over the tasks' studies for stl), of which the "
                       "best on val is shown.")


def _values(column: pd.Series) -> list[str]:
    """The distinct values of a config column, numbers in numeric order."""
    values = column.dropna().astype(str).unique()
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)
