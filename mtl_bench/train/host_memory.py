"""Host memory: keep freed blocks in the process's heap for the next step.

glibc's malloc serves a block above its mmap threshold (128 KiB at start, raised as blocks are
freed, up to 32 MiB) with a fresh ``mmap`` and returns it with ``munmap`` when it is freed, and
trims free memory off the top of the heap. A training step allocates and frees the same large
temporaries (activations, their gradients, the T task-gradient rows) every step, so each step then
touches fresh pages: the kernel zeroes and maps every one of them. On the 40-task conv
benchmark at 64 x 64 (scripts/bench_strategies.py) that is about 500,000 page faults per step,
and the step takes 1.5 or 2.5 s depending on where the thresholds happen to stand; on MultiLeNet
3,700 faults per step, 35 ms instead of 30 ms (README.md, "Sweeps, resuming and speed").

``trainer.host_memory=heap`` (the default) fixes the mmap threshold at glibc's largest
(32 MiB) and the trim threshold at 2 GiB, so freed blocks up to 32 MiB stay in the heap and are
reused, as PyTorch's caching allocator does for GPU memory (larger ones are still mapped afresh
each time). Nothing computed changes; the process keeps what it freed (up to 2 GiB free per
malloc arena) until it ends. ``system`` leaves malloc as it is; it cannot undo ``heap`` in a
process where a run with ``heap`` came first (a notebook, an in-process sweep). Where the C
library is not glibc (macOS, musl) there is nothing to set and nothing is changed. summary.json's
``provenance.host_memory`` records the setting and whether it was set.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's largest on 64-bit systems (4 * 1024 * 1024 * sizeof(long))
TRIM_THRESHOLD = 2**31 - 1       # mallopt takes an int
CHOICES = ("heap", "system")


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (module docstring); False, with nothing changed, where
    the C library has no ``mallopt``. Takes effect for every later allocation of the process."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


def apply(choice: str) -> bool:
    """``trainer.host_memory``: ``heap`` keeps freed memory (:func:`keep_freed_memory`), ``system``
    leaves malloc alone. Returns whether the thresholds were set."""
    if choice not in CHOICES:
        raise ValueError(f"trainer.host_memory={choice!r}: choose heap or system")
    return keep_freed_memory() if choice == "heap" else False
