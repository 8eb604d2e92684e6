"""Cost accounting: step times without a host sync per step, and peak memory."""
from __future__ import annotations

import resource
import statistics
import time

import torch


class StepTimer:
    """Times training steps. On CUDA it records events (no sync) and reads them at ``collect``;
    on the CPU it uses ``perf_counter``."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._pending: list = []
        self.seconds: list[float] = []

    def start(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def stop(self, started) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._pending.append((started, end))
        else:
            self.seconds.append(time.perf_counter() - started)

    def collect(self) -> None:
        """Read pending CUDA events (call once per epoch, after a sync)."""
        if self._pending:
            torch.cuda.synchronize()
            self.seconds.extend(a.elapsed_time(b) / 1000.0 for a, b in self._pending)
            self._pending.clear()

    def median(self) -> float | None:
        self.collect()
        return statistics.median(self.seconds) if self.seconds else None


def warm_epoch_seconds(seconds: list[float]) -> float | None:
    """An epoch's time without the run's one-off costs: the median over the epochs after the first
    (the first carries lazy imports such as scipy's SLSQP, ``grad.method=auto``'s timing of both
    paths and the allocator's warm-up); a one-epoch run's only epoch; None before any epoch. The
    median also leaves out a resumed process's own first epoch once a run has a few."""
    warm = seconds[1:] or seconds
    return statistics.median(warm) if warm else None


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by tensors on CUDA; peak resident set size of the process on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def in_optimizer_step(event) -> bool:
    """Whether a torch profiler event ran inside an optimiser's ``step`` (the model's or a
    strategy's). Host reads there are not the training step's: torch's Adam keeps its step
    counter on the host and reads it, no device tensor (scripts/profile_step.py and the no-sync
    tests leave them out)."""
    while event is not None:
        if event.name.startswith("Optimizer.step"):
            return True
        event = event.cpu_parent
    return False
