"""``mtl-bench status DIR``: a sweep folder at a glance (issue 11, item 12)."""
from __future__ import annotations

import json
import shutil
import time

import pytest
from report_runs import ONE_THREAD, synthetic_runs

from conftest import cli
from mtl_bench.report.status import remaining_seconds, sweep_status


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return synthetic_runs(tmp_path_factory)


def test_status_counts_runs_epochs_and_eta(runs, tmp_path):
    root = tmp_path / "sweep"
    shutil.copytree(runs, root)
    done = sorted(p.parent for p in (root / "mtl").glob("*/summary.json"))[0]
    running = root / "mtl" / "seed=2,strategy=ew"
    shutil.copytree(done, running)
    summary = json.loads((running / "summary.json").read_text())
    summary.update(status="running", epochs=10, epochs_completed=2, steps=20, updated_at=time.time() - 90)
    summary["cost"]["seconds_per_step_median"] = 0.5
    (running / "summary.json").write_text(json.dumps(summary))
    (root / "mtl" / "seed=3,strategy=ew" / ".hydra").mkdir(parents=True)
    shutil.copy(done / ".hydra" / "config.yaml", root / "mtl" / "seed=3,strategy=ew" / ".hydra")

    frame = sweep_status([root]).set_index("run")
    assert frame.loc["mtl/seed=2,strategy=ew", "status"] == "running"
    assert frame.loc["mtl/seed=2,strategy=ew", "epochs"] == "2/10"
    assert frame.loc["mtl/seed=2,strategy=ew", "eta_seconds"] == pytest.approx(8 * 10 * 0.5)
    assert frame.loc["mtl/seed=3,strategy=ew", "status"] == "not started"
    assert frame.loc["diverged", "status"] == "diverged"

    out = cli("status", str(root), cwd=tmp_path, env=ONE_THREAD)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first == "14 run(s): 11 completed, 1 running, 1 diverged, 1 not started"
    line = next(l for l in out.stdout.splitlines() if "seed=2,strategy=ew" in l)
    assert line.split()[:3] == ["running", "2/10", "0:00:40"] and "last update 0:01:3" in line
    assert "training left in running/interrupted runs: 0:00:40" in out.stdout
    assert "status DIR" in cli("--help", cwd=tmp_path).stdout


def test_eta_falls_back_to_epoch_time_and_is_unknown_without_costs():
    assert remaining_seconds({"epochs": 5, "epochs_completed": 0, "cost": {"seconds_per_epoch_mean": None}}) is None
    assert remaining_seconds({"epochs": 5, "epochs_completed": 1, "steps": 0,
                              "cost": {"seconds_per_epoch_mean": 3.0}}) == 12.0


def test_jobs_a_sweep_plans_without_a_folder_yet_count_as_not_started(runs, tmp_path):
    sweep = tmp_path / "mtl"
    shutil.copytree(runs / "mtl", sweep)
    for run in sorted(p for p in sweep.iterdir() if p.is_dir() and "strategy=dwa" in p.name):
        shutil.rmtree(run)  # the sweep has not reached them yet
    frame = sweep_status([sweep])
    assert len(frame) == 4 and frame.attrs["unlaunched"] == 2
    out = cli("status", str(sweep), cwd=tmp_path, env=ONE_THREAD)
    assert out.stdout.splitlines()[0] == "6 run(s) (2 planned by a sweep, no folder yet): 4 completed, 2 not started"


def test_a_summary_written_after_the_clock_was_read_is_not_negative_time_ago(tmp_path):
    """A running run's summary.json updated a moment after ``now`` was taken reads 0:00:00 ago,
    never a negative duration."""
    from mtl_bench.report.status import run_status

    run = tmp_path / "run"
    run.mkdir()
    now = time.time()
    (run / "summary.json").write_text(json.dumps({"status": "running", "epochs": 5, "epochs_completed": 1,
                                                  "updated_at": now + 0.4, "cost": {}}))
    (run / "metrics.jsonl").write_text("")
    assert run_status(run, tmp_path, now)["note"] == "last update 0:00:00 ago"
