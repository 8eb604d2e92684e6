"""Stopping a sweep whose runs train in joblib's worker processes (``hydra/launcher=local``).

A SIGTERM or Ctrl-C stops the whole sweep in order, whichever of its processes gets it: the
sweep's own process (``kill PID``; a container's stop, which signals its first process only), its
whole process group (Ctrl-C in a terminal), or one worker:

- the sweep's process passes the signal on to every worker, and each run in progress is
  checkpointed and marked ``interrupted`` at its next step, as a single run is
  (:mod:`mtl_bench.train.signals`);
- the jobs not started yet are skipped: the sweep folder's ``sweep_stopped`` file, written by
  whichever process got the signal first, tells the workers;
- the sweep ends with the count of its runs, the command that continues it and the shell's exit
  code for the signal (128 + its number).

Before, a signal to the sweep's process ended it silently while its workers trained their runs
on as orphans, and the jobs not yet started never ran. Jobs that run in the sweep's own process
(the basic launcher, ``n_jobs=1``) stop the sweep as a single run stops (its run's handler
takes over while it trains).
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from .train.signals import handling, replaceable

STOP_FILE = "sweep_stopped"              # in a sweep's folder: the name of the signal that stopped it
NOT_STARTED_FILE = "not_started_runs.txt"  # in a sweep's folder: one line per job skipped after the stop

_state: dict = {"owner": None, "sweep_dir": None, "handlers": None, "told": False}


def watch(sweep_dir: Path) -> None:
    """In the sweep's process, before its jobs start: forget an earlier sweep's stop and take
    SIGTERM and SIGINT (where Python's defaults hold them) until :func:`release`."""
    release()
    for name in (STOP_FILE, NOT_STARTED_FILE):
        (sweep_dir / name).unlink(missing_ok=True)
    _state.update(owner=os.getpid(), sweep_dir=sweep_dir, told=False)
    _state["handlers"] = handling(_on_signal)
    _state["handlers"].__enter__()


def release() -> None:
    """The sweep's process gives SIGTERM and SIGINT back (its sweep ended, however)."""
    handlers, _state["handlers"] = _state["handlers"], None
    if handlers is not None:
        handlers.__exit__(None, None, None)
    _state.update(owner=None, sweep_dir=None)


def in_worker(hydra_cfg) -> bool:
    """This job runs in a joblib worker, not in the process that launched the sweep."""
    return "joblib" in str(hydra_cfg.launcher.get("_target_", "")) and os.getpid() != _state["owner"]


def guard_worker(sweep_dir: Path) -> None:
    """In a worker: a signal that comes between two runs stops the sweep instead of killing the
    worker (which would end the sweep in a broken-pool traceback). Held for the worker's life; a
    run's own handler takes over while it trains."""
    _state["sweep_dir"] = sweep_dir
    if _state["handlers"] is None:
        _state["handlers"] = handling(_on_signal)
        _state["handlers"].__enter__()


@replaceable
def _on_signal(signum, frame) -> None:
    mark_stopped(_state["sweep_dir"], signum)
    if os.getpid() != _state["owner"]:
        return
    if not _state["told"]:
        _state["told"] = True
        print(f"mtl-bench: {signal.Signals(signum).name}: stopping the sweep; the runs in progress are marked "
              "interrupted at their next step, the jobs not started are skipped", file=sys.stderr, flush=True)
    for pid in _worker_pids():
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _worker_pids() -> list[int]:
    """The processes of joblib's worker pool (loky's reusable executor), if it has started."""
    try:
        from joblib.externals.loky import reusable_executor
    except ImportError:  # pragma: no cover - joblib is a dependency of the launcher
        return []
    executor = getattr(reusable_executor, "_executor", None)
    return list(getattr(executor, "_processes", None) or {})


def mark_stopped(sweep_dir: Path | None, signum: int) -> None:
    """The sweep in ``sweep_dir`` is stopping: its jobs not started yet are to be skipped."""
    if sweep_dir is None:
        return
    stop = Path(sweep_dir) / STOP_FILE
    if not stop.exists():
        stop.write_text(signal.Signals(signum).name + "\n")


def stopped_by(sweep_dir: Path) -> str | None:
    """The name of the signal that stopped the sweep in ``sweep_dir``, or None."""
    stop = Path(sweep_dir) / STOP_FILE
    return (stop.read_text().strip() or "SIGTERM") if stop.exists() else None


def note_not_started(sweep_dir: Path, run_dir: Path) -> None:
    with open(Path(sweep_dir) / NOT_STARTED_FILE, "a") as f:
        f.write(f"{run_dir}\n")


def report(sweep_dir: Path, counts: str) -> int | None:
    """At a sweep's end: when it was stopped, say so with its counts and how to continue it, clear
    its stop files and return the exit code for the signal (None when it was not stopped)."""
    name = stopped_by(sweep_dir)
    if name is None:
        return None
    notes = Path(sweep_dir) / NOT_STARTED_FILE
    skipped = len(notes.read_text().splitlines()) if notes.exists() else 0
    print(f"mtl-bench: the sweep was stopped by {name}: {counts}, {skipped} job(s) not started. Continue it with the "
          f"same sweep command and hydra.sweep.dir={sweep_dir} (completed runs are skipped, interrupted ones resume)",
          file=sys.stderr)
    for path in (Path(sweep_dir) / STOP_FILE, notes):
        path.unlink(missing_ok=True)
    return 128 + signal.Signals[name].value
