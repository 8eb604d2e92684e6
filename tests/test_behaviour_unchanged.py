"""Runs made today compute what the committed runs of results/gradnorm_toy computed: the first
epochs of a fixed-seed synthetic run equal the committed history (equal weighting, and GradNorm
through the gradient backend), so refactors cannot change what existing configs mean."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "gradnorm_toy" / "runs" / "mtl"
EPOCHS = 3


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
        assert now[key] == pytest.approx(value, rel=1e-5), key
