"""Runs made today compute what the committed runs of results/gradnorm_toy computed: the first
epoch of a fixed-seed synthetic run equals the committed history (equal weighting, and GradNorm
through the gradient backend), so refactors cannot change what existing configs mean.

The tolerance is what float32 on another CPU allows: its kernels round differently and the
difference grows while training (measured between two machines with the same torch build: 5e-4
relative after one epoch, 6e-3 after three). A change of meaning moves the first epoch by far
more: 1% more learning rate moves it by 1e-2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "gradnorm_toy" / "runs" / "mtl"
EPOCHS = 1
TOLERANCE = 2e-3  # relative: 4x the drift between machines, a fifth of a 1% lr change


def history(run_dir: Path, epochs: int) -> dict:
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["split"] in ("val", "test") and r["epoch"] <= epochs:
            out[(r["epoch"], r["split"], r["task"], r["metric"])] = r["value"]
    return out


@pytest.mark.parametrize("strategy", ["ew", "gradnorm_toy"])
def test_a_run_today_repeats_the_committed_history(tmp_path, strategy):
    committed = COMMITTED / f"+experiment=gradnorm_toy,seed=0,strategy={strategy}"
    if not committed.exists():
        pytest.skip("results/gradnorm_toy/runs is not in this checkout")
    proc = cli("run", "+experiment=gradnorm_toy", f"strategy={strategy}", "seed=0", f"trainer.epochs={EPOCHS}",
               "hydra.run.dir=run", cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    then, now = history(committed, EPOCHS), history(tmp_path / "run", EPOCHS)
    assert set(now) == set(then) and len(now) > 0
    for key, value in then.items():
        assert now[key] == pytest.approx(value, rel=TOLERANCE), key
