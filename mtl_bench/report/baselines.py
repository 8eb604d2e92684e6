"""Single-task baselines for Delta_m: stored STL runs or published numbers.

Stored runs are matched by panel (dataset and settings, see :mod:`.groups`; a run's
``baseline_panel``), task and seed. When a
multi-task run's seed has no single-task run, the baseline is the mean over the seeds that exist,
and a note says so. Published baselines (``results/published/*.csv``, row ``stl``) serve every seed.
"""
from __future__ import annotations

import pandas as pd


class Baselines:
    """``lookup(run_row, split) -> {(task, metric): value}`` plus the notes of how it matched."""

    def __init__(self, table: pd.DataFrame, source: str):
        # table columns: panel (None = any), task, metric, split (None = any), seed (None = any), value
        self.table = table
        self.source = source
        self.notes: set[str] = set()
        self._found: dict[tuple, dict] = {}  # lookup's answers: runs of one panel and seed share them

    @classmethod
    def from_runs(cls, selected: pd.DataFrame) -> "Baselines":
        """From the selected values of the baseline runs (``is_baseline``) of an annotated table."""
        rows = selected[selected["is_baseline"]]
        table = (rows.groupby(["panel", "task", "metric", "split", "seed"], dropna=False)["value"].mean()
                 .reset_index())
        return cls(table, "stored single-task runs")

    @classmethod
    def from_published(cls, published: pd.DataFrame, method: str = "stl") -> "Baselines":
        """From the ``method`` row of a published table (long form: method, task, metric, value)."""
        rows = published[published["method"] == method]
        if rows.empty:
            raise ValueError(f"the published table has no {method!r} row to use as baseline")
        table = rows[["task", "metric", "value"]].assign(panel=None, split=None, seed=None)
        return cls(table, f"published numbers ({published['source'].iloc[0]})"
                   if "source" in published else "published numbers")

    def __bool__(self) -> bool:
        return not self.table.empty

    def lookup(self, run: pd.Series, split: str, tasks: list[str] | None = None) -> dict:
        key = (_panel(run), split, None if tasks is None else tuple(tasks), run["seed"])
        if key not in self._found:
            self._found[key] = self._lookup(run, split, tasks)
        return dict(self._found[key])

    def _lookup(self, run: pd.Series, split: str, tasks: list[str] | None) -> dict:
        t = self.table
        rows = t[(t["panel"].isna() | (t["panel"] == _panel(run))) & (t["split"].isna() | (t["split"] == split))]
        if tasks is not None:  # plus task means, which published tables may print instead of tasks
            rows = rows[rows["task"].isin(tasks) | (rows["task"] == "mean")]
        if rows.empty:
            return {}
        seeded = rows[rows["seed"].notna()]
        if seeded.empty:
            return {(a, b): v for a, b, v in rows[["task", "metric", "value"]].itertuples(index=False)}
        out = {}
        for (task, metric), group in seeded.groupby(["task", "metric"]):
            match = group[group["seed"] == run["seed"]]
            if not match.empty:
                out[(task, metric)] = float(match["value"].mean())
            else:
                out[(task, metric)] = float(group["value"].mean())
                seeds = ",".join(str(int(s)) for s in sorted(group["seed"].unique()))
                self.notes.add(f"no single-task run of {task} with seed {run['seed']} in {_panel(run)}: "
                               f"its baseline is the mean over seeds {seeds}")
        return out


def _panel(run: pd.Series):
    """The panel of a run's single-task baselines (its own, unless its task set names its panel)."""
    panel = run.get("baseline_panel")
    return run["panel"] if panel is None or pd.isna(panel) else panel
