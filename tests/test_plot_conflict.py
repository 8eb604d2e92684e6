"""``mtl-bench plot --kind conflict``: the gradient diagnostics over training, per method."""
from __future__ import annotations

import pytest

from conftest import cli, read_jsonl
from mtl_bench.report import plots
from mtl_bench.report.pipeline import select_all

SMALL = ["trainer.epochs=2", "dataset.num_samples=300", "dataset.num_val=60", "dataset.num_test=60",
         "model.hidden=16", "trainer.batch_size=30", "trainer.progress=never", "diagnostics.every=4"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("conflict")
    proc = cli("run", "-m", "strategy=ew,mgda", "seed=0,1", f"hydra.sweep.dir={root / 'sweep'}", *SMALL, cwd=root,
               env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "sweep"


def test_conflict_plot_data_are_the_seed_means_of_the_logged_diagnostics(sweep, tmp_path):
    data = plots.conflict(select_all([sweep]).results, out=tmp_path)
    assert set(data["method"]) == {"ew", "mgda"} and set(data["metric"]) == set(plots.CONFLICT)
    assert (data["n"] == 2).all()  # two seeds at every diagnosed step
    logged = {}
    for path in sweep.rglob("metrics.jsonl"):
        strategy = "mgda" if "mgda" in str(path.parent) else "ew"
        for r in read_jsonl(path):
            if r["split"] == "diagnostics" and r["metric"] in plots.CONFLICT and r["value"] is not None:
                logged.setdefault((strategy, r["metric"], r["step"]), []).append(r["value"])
    assert {(m, k, s) for m, k, s in logged} == set(zip(data["method"], data["metric"], data["step"]))
    for row in data.itertuples():
        assert row.value == pytest.approx(sum(logged[(row.method, row.metric, row.step)]) / 2)
    assert sorted(data["step"].unique())[:2] == [4, 8]
    assert "seed" in data.attrs["note"] and "gradient space" in data.attrs["note"]
    fig = data.attrs["figure"]
    titles = [ax.get_title() for ax in fig.axes]
    assert any("conflicting task pairs" in t for t in titles) and any("condition" in ax.get_ylabel() for ax in fig.axes)
    assert [ax.get_yscale() for ax in fig.axes if "condition" in ax.get_ylabel()] == ["log"]


def test_cli_plot_conflict_writes_png_and_pdf(sweep, tmp_path):
    proc = cli("plot", str(sweep), "--kind", "conflict", "--out", str(tmp_path / "plots"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["conflict.pdf", "conflict.png"]


def test_runs_without_diagnostics_say_how_to_get_them(tmp_path):
    proc = cli("run", *SMALL[:-1], "trainer.epochs=1", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = cli("plot", str(tmp_path / "run"), "--kind", "conflict", "--out", str(tmp_path / "plots"), cwd=tmp_path)
    assert proc.returncode != 0 and "diagnostics.every=K" in proc.stderr
