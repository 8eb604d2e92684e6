"""mtl-bench: a benchmark harness for multi-task learning strategies.

From Python: ``mtl_bench.run("strategy=mgda", run_dir=...)`` trains one run as ``mtl-bench run``
does; ``mtl_bench.load_runs(["runs/"])`` loads completed runs as the tidy results DataFrame.
"""
__version__ = "0.1.0"


def run(*overrides: str, run_dir=None) -> dict:
    """Train one run from Hydra overrides; returns its summary (see :func:`mtl_bench.api.run`)."""
    from .api import run as _run

    return _run(*overrides, run_dir=run_dir)


def load_runs(dirs):
    """Completed runs below ``dirs`` as one tidy DataFrame (see :func:`mtl_bench.api.load_runs`)."""
    from .api import load_runs as _load_runs

    return _load_runs(dirs)
