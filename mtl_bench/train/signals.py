"""Stopping a run by a signal: SIGTERM (``kill``, a scheduler) and SIGINT (Ctrl-C) end training
with an :class:`Interrupted` exception, so the trainer can mark the run ``interrupted`` with the
epoch reached and the command line can say how to resume, exiting with the shell's code for the
signal (128 + its number). Handlers that others installed (e.g. submitit's on a cluster) are left
in place."""
from __future__ import annotations

import contextlib
import signal
import threading


class Interrupted(KeyboardInterrupt):
    """Training stopped by ``signum``; ``exit_code`` is what a shell reports for it. ``how``
    replaces "stopped by SIGNAL" where the stop was not this process's own (a rank killed)."""

    def __init__(self, signum: int, how: str | None = None):
        self.signum = int(signum)
        self.name = signal.Signals(self.signum).name
        self.exit_code = 128 + self.signum
        self.how = how
        super().__init__(how or f"stopped by {self.name}")

    def __reduce__(self):  # rebuilt from the signal number (a rank hands it to the launching process)
        return type(self), (self.signum, self.how)


_state = {"holding": 0, "pending": None, "raised": None, "stop": None}


def note_stop(signum: int) -> None:
    """A stop signal that came while no run's handler was in place (a sweep's, while a job is set
    up): the next :func:`interrupt_on_signals` block raises it at once."""
    _state["stop"] = signum


def take_noted_stop() -> int | None:
    """The stop :func:`note_stop` kept (None: none), forgotten once taken (a new job of a sweep's
    worker forgets one that came before it: it is not its own)."""
    signum, _state["stop"] = _state["stop"], None
    return signum


def _raise_interrupted(signum, frame):
    if _state["raised"] is not None:  # already stopping (a signal sent twice, or to a whole process group)
        return
    if _state["holding"]:
        _state["pending"] = signum  # raised when the files being written are complete
        return
    _state["raised"] = signum
    raise Interrupted(signum)


@contextlib.contextmanager
def deferred_signals():
    """Hold an :class:`Interrupted` back until the block ends (an epoch's files written together)."""
    _state["holding"] += 1
    try:
        yield
    finally:
        _state["holding"] -= 1
        pending, _state["pending"] = _state["pending"], None
        if pending is not None and not _state["holding"]:
            _state["raised"] = pending
            raise Interrupted(pending)


@contextlib.contextmanager
def interrupt_on_signals(signums=(signal.SIGTERM, signal.SIGINT)):
    """Within the block, ``signums`` whose handler is Python's default raise :class:`Interrupted`
    (and a stop noted before it, :func:`note_stop`, is raised on entry)."""
    _state["raised"] = None
    with handling(_raise_interrupted, signums):
        noted = take_noted_stop()
        if noted is not None:
            _raise_interrupted(noted, None)
        yield


def replaceable(handler):
    """Mark ``handler`` as one that :func:`handling` may replace for a block, as Python's defaults
    (a sweep's handler, which a run training in the sweep's process takes over while it trains)."""
    handler.mtl_bench_replaceable = True
    return handler


@contextlib.contextmanager
def handling(handler, signums=(signal.SIGTERM, signal.SIGINT)):
    """``handler`` for those of ``signums`` whose handler is Python's default (or
    :func:`replaceable`), within the block (in the main thread; handlers that others installed,
    e.g. submitit's, are left in place)."""
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for signum in signums:
            current = signal.getsignal(signum)
            if current in (signal.SIG_DFL, signal.default_int_handler) or getattr(current, "mtl_bench_replaceable", False):
                installed[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, previous in installed.items():
            signal.signal(signum, previous)
