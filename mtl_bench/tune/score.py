"""The score of one tuning trial: its runs' validation selection metric, mean over seeds.

Each seed's run is selected by its own protocol (mtl_bench/protocol.py, as ``mtl-bench table``
does), and the tuned metric is read on val at the selected epoch(s) - the same number
:func:`mtl_bench.report.selection.tune` ranks configurations by, so the trial Optuna calls best is
the one ``mtl-bench table --tune`` keeps. A ``delta_m`` protocol needs the single-task runs, which
a trial does not have: its runs are scored at the best val epoch of the tuned metric. Test is
never read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..report.collect import collect
from ..report.selection import TUNE_SPLIT, _tune_score, selected_values


@dataclass
class TrialScore:
    value: float | None          # mean over seeds; None when a run did not complete
    statuses: dict[str, str]     # run folder -> status
    reason: str = ""


def score_trial(trial_dir: Path, metric: str, n_runs: int) -> TrialScore:
    """Score the ``n_runs`` runs below ``trial_dir`` on val ``metric`` (``task/metric`` or ``mean/metric``)."""
    found = collect([trial_dir]) if trial_dir.exists() else None
    if found is None or found.runs.empty:
        return TrialScore(None, {}, "no run folder written")
    statuses = dict(zip(found.runs["run"].astype(str), found.runs["status"].astype(str)))
    if len(statuses) < n_runs or any(s != "completed" for s in statuses.values()):
        bad = {r: s for r, s in statuses.items() if s != "completed"}
        reason = (", ".join(f"{Path(r).name}: {s}" for r, s in bad.items()) if bad
                  else f"{len(statuses)} of {n_runs} runs written")
        return TrialScore(None, statuses, reason)
    results = found.results
    if (results["sel_rule"] == "delta_m").any():
        selected = selected_values(results, rule="best", split=TUNE_SPLIT, metric=metric)
    else:
        selected = selected_values(results, split=TUNE_SPLIT)  # each run's rule, its epochs chosen on val
    val = selected[selected["split"] == TUNE_SPLIT]
    if val.empty:
        return TrialScore(None, statuses, f"no {TUNE_SPLIT} split to score on (tuning never reads test)")
    per_seed = {}
    for run, rows in val.groupby("run"):
        per_seed.setdefault(rows["seed"].iloc[0], []).append(_tune_score(rows, metric, int(rows["n_tasks"].iloc[0]) == 1))
    scores = [sum(v) / len(v) for v in per_seed.values()]
    value = sum(scores) / len(scores)
    if math.isnan(value):
        return TrialScore(None, statuses, f"val {metric} is NaN")
    return TrialScore(value, statuses)
