"""``mtl-bench status DIR``: every run below a folder at a glance.

One line per run: its status (completed, running, interrupted, failed, diverged, damaged, not
started: a folder holding only its config), the epochs reached, and for unfinished runs an ETA from
the run's own median step time (steps per epoch as far as counted), so a sweep left overnight can
be judged in one look. A Hydra sweep folder's plans (its ``multirun.yaml`` and those of earlier
sweeps into it, :mod:`mtl_bench.report.plans`) tell which jobs the sweeps planned: those without a
run folder yet are counted as not started too. A completed run's files are cross-checked as
``collect`` checks them (:func:`.integrity.read_run`: its history against its summary, its config
present), so a run the tables would leave out as damaged is not shown completed; unfinished runs
are read from their summary.json only.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from .collect import find_run_dirs, status_and_reason
from .integrity import read_run
from ..train.run_dir import is_trained_here
from .plans import PLAN_FILE, unlaunched_jobs

UNFINISHED = ("running", "interrupted")


def remaining_seconds(summary: dict) -> float | None:
    """Seconds of training left: epochs to go x steps per epoch x median step time (else mean epoch time)."""
    cost = summary.get("cost") or {}
    total, done, steps = summary.get("epochs"), summary.get("epochs_completed") or 0, summary.get("steps") or 0
    if not isinstance(total, int) or not isinstance(done, int):
        return None
    step_time = cost.get("seconds_per_step_median")
    if done and steps and step_time:
        return (total - done) * steps / done * step_time
    epoch_time = cost.get("seconds_per_epoch_mean")
    return (total - done) * epoch_time if epoch_time else None


def run_status(run_dir: Path, root: Path, now: float) -> dict:
    run = read_run(run_dir)
    status, reason = status_and_reason(run)
    summary = run.summary or {}
    if status == "no summary":
        status = "not started" if not (Path(run_dir) / "metrics.jsonl").exists() else "damaged"
    updated = summary.get("updated_at")
    # max(0, ...): a summary written a moment after `now` was read (a run still writing) is 0 s old
    idle = max(0.0, now - updated) if isinstance(updated, (int, float)) else None
    orphaned = status == "running" and is_trained_here(run_dir) is False
    if status == "running" and idle is not None:
        reason = f"last update {_duration(idle)} ago"
    if orphaned:  # its summary says running, but no process here holds the folder: killed outright
        reason = (f"{reason}; " if reason else "") + ("no process on this machine trains it (killed?): "
                                                      "run its command again to resume it")
    return {"run": str(Path(run_dir).relative_to(root)) if Path(run_dir) != root else ".", "status": status,
            "epochs": f"{summary.get('epochs_completed', 0)}/{summary.get('epochs', '?')}" if run.summary else "",
            "eta_seconds": remaining_seconds(summary) if status in UNFINISHED and not orphaned else None,
            "note": reason}


def sweep_status(paths: Sequence[str | Path], now: float | None = None) -> pd.DataFrame:
    """One row per run below ``paths``: run, status, epochs (done/total), eta_seconds, note;
    ``attrs["unlaunched"]``: jobs that sweeps below ``paths`` plan but have no folder yet."""
    now = time.time() if now is None else now
    rows, unlaunched = [], 0
    for path in paths:
        root = Path(path)
        found = find_run_dirs([root])
        rows += [run_status(run_dir, root, now) for run_dir in found]
        for plan in sorted(root.rglob(PLAN_FILE)):
            unlaunched += unlaunched_jobs(plan.parent, found)
    frame = pd.DataFrame(rows, columns=["run", "status", "epochs", "eta_seconds", "note"])
    frame.attrs["unlaunched"] = unlaunched
    return frame


def _duration(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def describe_status(frame: pd.DataFrame) -> str:
    """The text ``mtl-bench status`` prints."""
    unlaunched = frame.attrs.get("unlaunched", 0)
    if frame.empty and not unlaunched:
        return "no runs found"
    counts = frame["status"].value_counts().to_dict()
    counts["not started"] = counts.get("not started", 0) + unlaunched
    counts = {status: n for status, n in counts.items() if n}
    order = ["completed", "running", "interrupted", "failed", "diverged", "damaged", "not started"]
    head = ", ".join(f"{counts[s]} {s}" for s in order + sorted(set(counts) - set(order)) if s in counts)
    total = f"{len(frame) + unlaunched} run(s)" + (f" ({unlaunched} planned by a sweep, no folder yet)" if unlaunched else "")
    width = max([len(r) for r in frame["run"]] + [3])
    lines = [f"{total}: {head}", f"{'status':<12} {'epochs':>7} {'ETA':>9}  {'run':<{width}}  note"]
    for row in frame.itertuples(index=False):
        lines.append(f"{row.status:<12} {row.epochs:>7} {_duration(row.eta_seconds):>9}  {row.run:<{width}}  {row.note}")
    left = frame["eta_seconds"].dropna()
    if len(left):
        lines.append(f"training left in running/interrupted runs: {_duration(left.sum())} run one after another, "
                     f"{_duration(left.max())} all at once (median step times of each run)")
    return "\n".join(lines)
