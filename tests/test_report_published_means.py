"""A published table that prints only the mean over tasks (Sener & Koltun's CelebA mean error)
is a Delta_m baseline for the runs' task-averaged metric."""
import pandas as pd
import pytest

from mtl_bench.report.baselines import Baselines
from mtl_bench.report.papers import load_published
from mtl_bench.report.tables import score_table


def test_delta_m_against_a_published_task_mean():
    rows = []
    for seed in (0, 1):
        for task, value in (("Smiling", 8.0), ("Male", 10.0)):
            rows.append(dict(run=f"r{seed}", seed=seed, split="test", task=task, metric="error", value=value + seed,
                             higher_is_better=False, panel="celeba", method="ew", is_baseline=False, strategy="ew",
                             seconds_per_epoch=1.0, selection="best"))
    baselines = Baselines.from_published(load_published("sener_koltun_celeba"))  # stl mean error 8.77
    table = score_table(pd.DataFrame(rows), baselines, split="test", columns=["mean/error"], metrics=["error"])
    # seed 0: mean error 9 -> +2.623 %; seed 1: 10 -> +14.025 %; lower error is better, so Delta_m > 0
    expected = ((9 - 8.77) / 8.77 * 100 + (10 - 8.77) / 8.77 * 100) / 2
    assert table.frame["delta_m"].iloc[0] == pytest.approx(expected, abs=1e-6)
    assert any("task means" in note for note in table.notes)
