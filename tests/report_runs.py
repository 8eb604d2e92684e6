"""Real run directories for the report tests, made once per test session by the real CLI.

Synthetic (GradNorm toy) runs, 3 epochs each, step-level records every step:
  mtl/     strategy=ew,uw,dwa x seed=0,1
  static/  strategy=static, weights [0.2,0.8], [0.5,0.5], [0.8,0.2], seed 0
  stl/     dataset.tasks=[task0],[task1], seed 0 (seed 1 of mtl has no matching baseline)
  diverged/ strategy=ew with lr 1e12 (a NaN loss: status diverged)
"""
from __future__ import annotations

from pathlib import Path

from conftest import cli

SMALL = ["trainer.epochs=3", "trainer.log_interval=1", "dataset.num_samples=300", "dataset.num_val=100",
         "dataset.num_test=100"]
_CACHE: dict[str, Path] = {}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # tiny models: threads only contend


def synthetic_runs(tmp_path_factory) -> Path:
    if "root" in _CACHE:
        return _CACHE["root"]
    root = tmp_path_factory.mktemp("report_runs")
    jobs = [
        ["run", "-m", "strategy=ew,uw,dwa", "seed=0,1", f"hydra.sweep.dir={root / 'mtl'}"],
        ["run", "-m", "strategy=static", "strategy.weights=[0.2,0.8],[0.5,0.5],[0.8,0.2]", "seed=0",
         f"hydra.sweep.dir={root / 'static'}"],
        ["run", "-m", "dataset.tasks=[task0],[task1]", "seed=0", f"hydra.sweep.dir={root / 'stl'}"],
        ["run", "strategy=ew", "trainer.lr=1e12", f"hydra.run.dir={root / 'diverged'}"],
    ]
    for args in jobs:
        result = cli(*args, *SMALL, cwd=root, env=ONE_THREAD)
        assert result.returncode == 0, result.stderr[-3000:]
    _CACHE["root"] = root
    return root
