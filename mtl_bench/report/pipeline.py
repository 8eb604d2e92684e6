"""From run dirs to scored selections: collect -> annotate -> select (baselines first) -> table.

This is what ``mtl-bench table`` / ``plot`` / ``reproduce`` run; each step is also usable alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from .baselines import Baselines
from .collect import Collection, collect
from .groups import annotate
from .selection import selected_values
from .tables import SKIP_METRICS, ScoreTable, score_table


@dataclass
class Selection:
    collection: Collection
    results: pd.DataFrame      # annotated tidy table (completed runs)
    selected: pd.DataFrame     # annotated selected values, one row per (run, split, task, metric)
    baselines: Baselines | None


def select_all(source: Sequence[str] | Collection, rule=None, split=None, metric=None, k=None,
               average="metric", baseline: str = "stl") -> Selection:
    """Collect (unless given a :class:`Collection`), annotate and select every run.

    ``baseline``: ``stl`` (stored single-task runs), ``published:NAME`` (the ``stl`` row of
    results/published/NAME.csv) or ``none``. Baseline runs are selected first so that the
    ``delta_m`` rule can select the multi-task runs against them.
    """
    collection = source if isinstance(source, Collection) else collect(source)
    if collection.results.empty:
        raise ValueError("no completed runs found" + (f"\n{collection.describe_excluded()}"
                                                      if not collection.excluded.empty else ""))
    results = annotate(collection.results)
    args = dict(rule=rule, split=split, metric=metric, k=k, average=average)
    base_rows = results[results["is_baseline"]]
    stl = selected_values(base_rows, **args) if not base_rows.empty else pd.DataFrame()
    if not stl.empty:
        stl = annotate_like(stl, results)
    if baseline == "stl":
        baselines = Baselines.from_runs(stl) if not stl.empty else None
    elif baseline.startswith("published:"):
        from .papers import load_published

        baselines = Baselines.from_published(load_published(baseline.split(":", 1)[1]))
    elif baseline == "none":
        baselines = None
    else:
        raise ValueError(f"--baseline {baseline!r}: choose stl, published:NAME or none")
    lookup = (lambda run, split_: _scored(baselines.lookup(annotated_run(run, results), split_))) if baselines else None
    mtl = selected_values(results[~results["is_baseline"]], baselines=lookup, **args)
    selected = pd.concat([annotate_like(mtl, results), stl], ignore_index=True)
    return Selection(collection, results, selected, baselines)


def _scored(baseline: dict) -> dict:
    """The metrics Delta_m selection scores: all but losses and weights (unless nothing else)."""
    kept = {k: v for k, v in baseline.items() if k[1] not in SKIP_METRICS}
    return kept or baseline


def annotate_like(selected: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Copy panel/method/is_baseline of each run from the annotated results."""
    runs = results.drop_duplicates("run").set_index("run")
    out = selected.copy()
    for column in ("panel", "method", "is_baseline"):
        out[column] = out["run"].map(runs[column])
    return out


def annotated_run(run: pd.Series, results: pd.DataFrame) -> pd.Series:
    if "panel" in run:
        return run
    first = results[results["run"] == run["run"]].iloc[0]
    return first


def make_table(source, split: str = "test", columns=None, metrics=None, delta_average: str = "metric",
               reference: str = "ew", baseline: str = "stl", selection: dict | None = None
               ) -> tuple[ScoreTable, Selection]:
    """Collect, select and score: the table of ``mtl-bench table``. ``selection`` holds the
    overrides of the runs' protocol (rule, split, metric, k); ``split`` is the reported split."""
    sel = select_all(source, average=delta_average, baseline=baseline, **(selection or {}))
    table = score_table(sel.selected, sel.baselines, split=split, columns=columns, metrics=metrics,
                        delta_average=delta_average, reference=reference)
    return table, sel
