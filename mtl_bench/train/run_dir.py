"""The run directory contract (README.md, "A short tour"): ``metrics.jsonl``, ``summary.json``, ``checkpoint.pt``.

``metrics.jsonl`` holds one JSON object per line with keys epoch, step, split, task, metric,
value. Task weights are logged as split=train, metric=weight; losses as metric=loss (epoch means);
every ``trainer.log_interval`` steps the step's own losses and weights are logged with
split=train_step. ``summary.json`` is rewritten atomically after every epoch.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Iterable

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
STATUSES = ("running", "completed", "interrupted", "diverged", "failed")
class RunDirBusy(ValueError):
    """The run directory is being trained by another process (two writers would duplicate records)."""


def _try_lock(run_dir: Path) -> tuple[int | None, bool | None]:
    """``(handle, taken)``: an exclusive, non-blocking ``flock`` on the directory itself. ``taken``
    is False when another process holds it, None where directories cannot be locked (Windows,
    some network file systems); the handle (None when the folder could not be opened) releases
    the lock when closed."""
    try:
        import fcntl
        handle = os.open(run_dir, os.O_RDONLY)
    except (ImportError, OSError):
        return None, None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return handle, False
    except OSError:  # no locks on this file system
        return handle, None
    return handle, True


@contextlib.contextmanager
def exclusive(run_dir: Path):
    """Hold ``run_dir`` for this process while it trains: a second process (a sweep started twice,
    a worker left over from a killed sweep) is refused with :class:`RunDirBusy` instead of training
    the same run beside it. An advisory ``flock`` on the directory itself (no file is added to the
    run), released by the OS when the process ends however it ends; where directories cannot be
    locked (Windows, some network file systems) the run trains unguarded."""
    handle, taken = _try_lock(run_dir)
    try:
        if taken is False:
            raise RunDirBusy(f"{run_dir} is being trained by another process: wait for it to finish or stop it, "
                             "then run the same command again (it resumes from the checkpoint)")
        yield
    finally:
        if handle is not None:
            os.close(handle)  # releases the lock


def is_trained_here(run_dir: Path) -> bool | None:
    """Whether a process on this machine holds ``run_dir`` (:func:`exclusive`) right now; None
    where that cannot be told (no directory locks; a process on another host of a shared file
    system may not show)."""
    handle, taken = _try_lock(run_dir)
    if handle is not None:
        os.close(handle)
    return None if taken is None else not taken


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


def has_ended(summary: dict | None, epochs: int, run_dir: Path) -> bool:
    """A run that a new start of it leaves as it is: diverged, or completed with ``epochs`` epochs
    (or with fewer but no checkpoint to continue from)."""
    status = summary.get("status") if summary else None
    return status == "diverged" or (status == "completed" and (summary.get("epochs_completed", 0) >= epochs
                                                              or not (Path(run_dir) / CHECKPOINT_FILE).exists()))


def record(epoch: int, step: int, split: str, task: str, metric: str, value: float) -> dict:
    return {"epoch": epoch, "step": step, "split": split, "task": task, "metric": metric, "value": value}


class MetricsLog:
    """Appends records to ``metrics.jsonl``; each call writes whole lines and flushes them.

    ``sinks`` (experiment trackers, :mod:`mtl_bench.train.trackers`) get the same records once
    they are in the file, where the history restarts on resume, and each summary written."""

    def __init__(self, run_dir: Path, sinks=None):
        self.path = Path(run_dir) / METRICS_FILE
        self.sinks = list(sinks or [])

    def append(self, records: Iterable[dict]) -> None:
        lines = "".join(json.dumps(_clean(r)) + "\n" for r in records)
        if not lines:
            return
        with open(self.path, "a") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        for sink in self.sinks:
            sink.log_records([_clean(r) for r in records])

    def summary(self, summary: dict) -> None:
        """Hand a summary just written to summary.json to the sinks."""
        for sink in self.sinks:
            sink.log_summary(_clean(summary))

    def truncate_after(self, epoch: int) -> None:
        """Drop records of epochs after ``epoch`` (work a killed run is about to redo)."""
        kept = [] if not self.path.exists() else [
            line for line in self.path.read_text().splitlines(keepends=True) if line.strip() and _epoch_of(line) <= epoch]
        if self.path.exists():
            atomic_write_text(self.path, "".join(kept))
        last_step = max((_step_of(line) for line in kept), default=0)
        for sink in self.sinks:  # the history goes on after the last kept record
            sink.resume(epoch, last_step)


def _epoch_of(line: str) -> int:
    try:
        return int(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # a torn last line is dropped with the unfinished epoch


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 0


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
