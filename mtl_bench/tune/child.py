"""``python -m mtl_bench.tune.child PARENT_PID ARGS``: ``mtl-bench ARGS`` that ends with its parent.

On Linux the child asks the kernel for SIGTERM when ``mtl-bench tune`` dies, even by SIGKILL
(prctl PR_SET_PDEATHSIG): a run interrupted that way marks itself ``interrupted`` after its last
finished epoch, and the restarted study resumes it in the same folder instead of racing an orphan.
"""
from __future__ import annotations

import os
import signal
import sys


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        raise SystemExit(143)


if __name__ == "__main__":
    _die_with_parent(int(sys.argv[1]))
    from mtl_bench.cli import main

    main(sys.argv[2:])
