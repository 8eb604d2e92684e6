"""The run directory contract (README.md, "A short tour"): ``metrics.jsonl``, ``summary.json``, ``checkpoint.pt``.

``metrics.jsonl`` holds one JSON object per line with keys epoch, step, split, task, metric,
value. Task weights are logged as split=train, metric=weight; losses as metric=loss (epoch means);
every ``trainer.log_interval`` steps the step's own losses and weights are logged with
split=train_step. ``summary.json`` is rewritten atomically after every epoch.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
STATUSES = ("running", "completed", "interrupted", "diverged", "failed")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _clean(value):
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_summary(run_dir: Path, summary: dict) -> None:
    atomic_write_text(Path(run_dir) / SUMMARY_FILE, json.dumps(_clean(summary), indent=2, sort_keys=True) + "\n")


def read_summary(run_dir: Path) -> dict | None:
    path = Path(run_dir) / SUMMARY_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is unreadable ({err}); move it away to restart the run's summary "
                         f"(its checkpoint and metrics.jsonl are kept), or choose another run folder") from None


def record(epoch: int, step: int, split: str, task: str, metric: str, value: float) -> dict:
    return {"epoch": epoch, "step": step, "split": split, "task": task, "metric": metric, "value": value}


class MetricsLog:
    """Appends records to ``metrics.jsonl``; each call writes whole lines and flushes them."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS_FILE

    def append(self, records: Iterable[dict]) -> None:
        lines = "".join(json.dumps(_clean(r)) + "\n" for r in records)
        if not lines:
            return
        with open(self.path, "a") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def truncate_after(self, epoch: int) -> None:
        """Drop records of epochs after ``epoch`` (work a killed run is about to redo)."""
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines(keepends=True)
                if line.strip() and _epoch_of(line) <= epoch]
        atomic_write_text(self.path, "".join(kept))


def _epoch_of(line: str) -> int:
    try:
        return int(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # a torn last line is dropped with the unfinished epoch


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a kill
    return out
