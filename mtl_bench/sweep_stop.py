"""Stopping a sweep whose runs train in joblib's worker processes (``hydra/launcher=local``).

A SIGTERM or Ctrl-C to the sweep's own process (``kill PID``; a container's stop, which signals
its first process only), or to its whole process group (Ctrl-C in a terminal), stops the sweep in
order:

- the sweep's process passes the signal on to every worker, and each run in progress is
  checkpointed and marked ``interrupted`` at its next step, as a single run is
  (:mod:`mtl_bench.train.signals`); a run still being set up stops as soon as it can;
- the jobs not started yet are skipped: the sweep folder's ``sweep_stopped`` file tells the
  workers;
- the sweep ends with the count of its runs, the command that continues it and the shell's exit
  code for the signal (128 + its number).

A signal to one worker stops that worker's run only (the sweep goes on, and ends by naming it).
While the sweep runs, joblib's ``loky`` backend (the one Hydra's joblib launcher always uses)
starts its workers with :func:`start_worker`, so that a worker waiting for a job survives a
signal to the process group (a plain loky worker dies of it, which breaks joblib's pool and ends
the sweep in a traceback). Jobs that run in the sweep's own process (the basic launcher,
``n_jobs=1``) stop the sweep as a single run stops. SLURM jobs (submitit) are left to the
cluster's signals.

Before, a signal to the sweep's process ended it silently while its workers trained their runs
on as orphans, and the jobs not yet started never ran.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path

from .train.signals import handling, note_stop, replaceable

STOP_FILE = "sweep_stopped"                 # in a sweep's folder: the name of the signal that stopped it
NOT_STARTED_FILE = "not_started_runs.txt"   # in a sweep's folder: one line per job skipped after the stop

_state: dict = {"owner": None, "sweep_dir": None, "handlers": None, "told": False}


def watches(launcher_cfg) -> bool:
    """Whether sweeps of this launcher are stopped here (all but SLURM's, whose jobs the cluster
    signals)."""
    return "submitit" not in str(launcher_cfg.get("_target_", ""))


def watch(sweep_dir: Path) -> None:
    """In the sweep's process, before its jobs start: take SIGTERM and SIGINT (where Python's
    defaults hold them), and start joblib's workers with :func:`start_worker`, until :func:`release`."""
    release()
    _loky_workers(start_worker)
    _state.update(owner=os.getpid(), sweep_dir=sweep_dir, told=False)
    _state["handlers"] = handling(_on_signal)
    _state["handlers"].__enter__()


def clear(sweep_dir: Path) -> None:
    """Forget an earlier sweep's stop (a new sweep into the folder, whatever its launcher)."""
    for name in (STOP_FILE, NOT_STARTED_FILE):
        (sweep_dir / name).unlink(missing_ok=True)


def release() -> None:
    """The sweep's process gives SIGTERM and SIGINT back, and joblib's loky workers start as joblib
    starts them (its sweep ended, however)."""
    handlers, _state["handlers"] = _state["handlers"], None
    if handlers is not None:
        handlers.__exit__(None, None, None)
        _loky_workers(None)
    _state.update(owner=None, sweep_dir=None)


def in_worker(hydra_cfg) -> bool:
    """This job runs in a joblib worker, not in the process that launched the sweep."""
    return "joblib" in str(hydra_cfg.launcher.get("_target_", "")) and os.getpid() != _state["owner"]


def start_worker() -> None:
    """A joblib worker's initializer (:func:`watch`): SIGTERM and SIGINT no longer
    kill it while it waits for a job; one that comes while a run is set up stops that run as soon
    as its handler is in place. A run's own handler takes over while it trains."""
    if _state["handlers"] is None:
        _state["handlers"] = handling(_on_signal)
        _state["handlers"].__enter__()


@replaceable
def _on_signal(signum, frame) -> None:
    note_stop(signum)  # a run being set up in this process stops once its own handler is in place
    if os.getpid() != _state["owner"]:
        return  # a worker: its run alone
    try:
        mark_stopped(_state["sweep_dir"], signum)
        if not _state["told"]:
            _state["told"] = True
            os.write(2, f"mtl-bench: {signal.Signals(signum).name}: stopping the sweep; the runs in progress are "
                        "marked interrupted at their next step, the jobs not started are skipped\n".encode())
    except OSError:  # a full disk or a closed stderr must not turn a stop into a traceback
        pass
    for pid in _worker_pids():
        try:
            os.kill(pid, signum)
        except OSError:
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


def report(sweep_dir: Path, counts: str, interrupted: list[str]) -> int | None:
    """At a sweep's end: say how to continue it when a signal stopped it (exit code 128 + the
    signal's number) or stopped some of its runs alone (``interrupted``: their folders; exit code
    1), and clear its stop files. None: nothing was stopped."""
    name = stopped_by(sweep_dir)
    notes = Path(sweep_dir) / NOT_STARTED_FILE
    skipped = notes.read_text().splitlines() if notes.exists() else []
    clear(Path(sweep_dir))
    resume = (f"the same sweep command and hydra.sweep.dir={sweep_dir} (completed runs are skipped, interrupted ones "
              "resume)")
    if name is not None:
        print(f"mtl-bench: the sweep was stopped by {name}: {counts}, {len(skipped)} job(s) not started. Continue it "
              f"with {resume}", file=sys.stderr)
        return 128 + signal.Signals[name].value
    if interrupted or skipped:
        print(f"mtl-bench: {len(interrupted)} run(s) of the sweep interrupted and {len(skipped)} stopped before "
              "training (a signal to their process, or a rank killed):\n  " + "\n  ".join(interrupted + skipped)
              + f"\nContinue them with {resume}", file=sys.stderr)
        return 1
    return None


def _loky_workers(initializer) -> None:
    """joblib's ``loky`` backend, in this process, starts its workers with ``initializer`` (None:
    as joblib does). Hydra's joblib launcher names that backend whatever its config says."""
    try:
        from joblib import register_parallel_backend
        from joblib._parallel_backends import LokyBackend
    except ImportError:  # pragma: no cover - joblib is a dependency of the launcher
        return
    backend = LokyBackend if initializer is None else functools.partial(LokyBackend, initializer=initializer)
    register_parallel_backend("loky", backend)
