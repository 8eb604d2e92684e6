"""Which runs are compared with which: panels, methods and single-task baselines.

- A **baseline** run trains one task of a multi-task dataset (``dataset.tasks=[left]``), whatever
  its strategy: single-task learning, the reference of Delta_m.
- A **panel** is one comparison: runs of one dataset whose other settings agree. Config keys that
  vary between runs outside ``strategy.*`` / ``grad.*`` (e.g. ``dataset.label_fraction`` in the
  Gong et al. 2019 study, or ``trainer.epochs``) split the runs into panels, each with its own
  baselines, ranks and bests. Multi-task runs that train different task sets are different
  comparisons too: their panels add ``tasks=...``, and their baselines are the single-task runs
  of the panel without it (``baseline_panel``), whose ``stl`` row stands in that panel.
- A **method** is a strategy config (a variant such as ``uniform`` or ``mgda_nash`` is a method of
  its own) plus the ``strategy.*`` / ``grad.*`` keys that vary between its runs in a panel
  (``static weights=[0.2,0.8]``, ``gradnorm alpha=0.12``); seeds of a method are pooled.
- **Tuned** config keys (``annotate(..., tuned=["trainer.lr"])``) tell neither panels nor methods
  apart: their runs stay in one (panel, method) so that :func:`.selection.tune` can choose their
  value on validation (Sener & Koltun 2018, appendix: the lr is chosen on validation;
  docs/protocols.md#model-selection).
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

VARIANT_PREFIXES = ("cfg.strategy.", "cfg.grad.")
NOT_PANEL = ("cfg.dataset.tasks", "cfg.strategy", "cfg.grad", "cfg.seed")


def _varying(runs: pd.DataFrame, columns: list[str]) -> list[str]:
    """Config columns with more than one value among the runs that have the key: a key that older
    runs lack (an option added since, such as a config's ``_target_``) splits nothing."""
    return [c for c in columns if runs[c].dropna().astype(str).nunique() > 1]


def method_names(runs: pd.DataFrame) -> pd.Series:
    """A run's method name: the strategy config it chose (``uniform``, ``mgda_nash``: a variant is
    a method of its own) or, for runs without that record, the strategy's name."""
    chosen = runs["strategy_config"] if "strategy_config" in runs else pd.Series(None, index=runs.index)
    return chosen.where(chosen.notna(), runs["strategy"]).astype(str)


def annotate(results: pd.DataFrame, tuned: Sequence[str] = ()) -> pd.DataFrame:
    """Add ``panel``, ``method``, ``is_baseline`` and ``baseline_panel`` (the panel of a run's
    single-task baselines) columns to a results table (tidy or selected); the config keys in
    ``tuned`` (``trainer.lr``) are left out of panels and methods."""
    if results.empty:
        return results.assign(panel=[], method=[], is_baseline=[], baseline_panel=[])
    runs = results.drop_duplicates("run").set_index("run")
    missing = [key for key in tuned if f"cfg.{key}" not in runs.columns]
    if missing:
        raise ValueError(f"--tune {','.join(missing)}: no run has this config key (e.g. trainer.lr)")
    cfg = [c for c in runs.columns if c.startswith("cfg.") and c[4:] not in tuned]
    panel, method, baseline, baseline_panel = {}, {}, {}, {}
    for dataset, group in runs.groupby("dataset", dropna=False):
        multi = group["n_tasks"].max() > 1
        is_base = (group["n_tasks"] == 1) & multi
        panel_keys = _varying(group, [c for c in cfg if not c.startswith(NOT_PANEL)])
        for run, row in group.iterrows():
            parts = [f"{c[4:]}={row[c]}" for c in panel_keys if not pd.isna(row[c])]
            panel[run] = " ".join([str(dataset)] + parts)
            baseline[run] = bool(is_base[run])
        baseline_panel.update({run: panel[run] for run in group.index})
        mtl = group[~is_base]
        if "tasks" in mtl:
            task_sets = mtl["tasks"].map(lambda tasks: ",".join(sorted(str(tasks).split(","))))
            for base_panel, members in task_sets.groupby(mtl.index.map(panel.get)):
                if members.nunique() > 1:  # one comparison per task set
                    panel.update({run: f"{base_panel} tasks={tasks}" for run, tasks in members.items()})
        for (_, strategy), members in mtl.groupby([mtl.index.map(panel.get), method_names(mtl)]):
            keys = _varying(members, [c for c in cfg if c.startswith(VARIANT_PREFIXES)])
            for run, row in members.iterrows():
                extra = " ".join(f"{c.split('.', 2)[-1]}={row[c]}" for c in keys if not pd.isna(row[c]))
                method[run] = f"{strategy} {extra}".strip()
        for run in group[is_base].index:
            method[run] = "stl"
    out = results.copy(deep=False)  # new columns on a shallow copy leave ``results`` as it was
    out["panel"] = out["run"].map(panel)
    out["method"] = out["run"].map(method)
    out["is_baseline"] = out["run"].map(baseline).astype(bool)
    out["baseline_panel"] = out["run"].map(baseline_panel)
    return out
