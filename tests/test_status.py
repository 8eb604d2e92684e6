"""``mtl-bench status DIR``: a sweep folder at a glance (issue 11, item 12)."""
from __future__ import annotations

import json
import shutil
import time

import pandas as pd
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

    from mtl_bench.train.run_dir import exclusive

    training = exclusive(running)  # as the process training it holds it
    training.__enter__()
    frame = sweep_status([root]).set_index("run")
    assert frame.loc["mtl/seed=2,strategy=ew", "status"] == "running"
    assert frame.loc["mtl/seed=2,strategy=ew", "epochs"] == "2/10"
    assert frame.loc["mtl/seed=2,strategy=ew", "eta_seconds"] == pytest.approx(8 * 10 * 0.5)
    assert frame.loc["mtl/seed=3,strategy=ew", "status"] == "not started"
    assert frame.loc["diverged", "status"] == "diverged"

    out = cli("status", str(root), cwd=tmp_path, env=ONE_THREAD)
    training.__exit__(None, None, None)
    # killed outright (SIGKILL, a worker lost): its summary still says running, but no process holds it
    orphan = sweep_status([root]).set_index("run").loc["mtl/seed=2,strategy=ew"]
    assert orphan["status"] == "running" and pd.isna(orphan["eta_seconds"])
    assert "no process on this machine trains it (killed?): run its command again to resume it" in orphan["note"]
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
    from mtl_bench.train.run_dir import exclusive

    with exclusive(run):  # as the process training it holds it
        assert run_status(run, tmp_path, now)["note"] == "last update 0:00:00 ago"


def _rerun_plan(sweep, *overrides):
    """The sweep folder's multirun.yaml as a later command into it, with ``overrides`` in place of
    the strategy and seed sweeps, would have written it."""
    from omegaconf import OmegaConf

    plan = OmegaConf.load(sweep / "multirun.yaml")
    task = [o for o in plan.hydra.overrides.task if not o.startswith(("strategy=", "seed="))]
    plan.hydra.overrides.task = [*task, *overrides]
    OmegaConf.save(plan, sweep / "multirun.yaml")


def test_a_partial_rerun_into_a_sweep_folder_keeps_the_plan_of_the_whole_sweep(runs, tmp_path):
    """The sweep planned ew, uw, dwa x seeds 0, 1 and was stopped before DWA; a second command
    re-ran one seed of EW into the folder. Its plan replaces multirun.yaml, but the first plan
    is kept (multirun.1.yaml) and the two DWA jobs still count as not started."""
    from mtl_bench.report.plans import keep_previous_plan, kept_plans

    sweep = tmp_path / "mtl"
    shutil.copytree(runs / "mtl", sweep)
    for run in sorted(p for p in sweep.iterdir() if p.is_dir() and "strategy=dwa" in p.name):
        shutil.rmtree(run)
    first = (sweep / "multirun.yaml").read_text()
    assert keep_previous_plan(sweep, new_plan=first) is None   # the same command again: nothing to keep
    kept = keep_previous_plan(sweep)
    assert kept == sweep / "multirun.1.yaml" and kept.read_text() == first
    assert keep_previous_plan(sweep) is None and kept_plans(sweep) == [kept]   # kept once
    _rerun_plan(sweep, "strategy=ew", "seed=1")
    assert sweep_status([sweep]).attrs["unlaunched"] == 2
    kept.unlink()   # what the plan alone told before: nothing left to launch
    assert sweep_status([sweep]).attrs["unlaunched"] == 0


def test_a_job_counts_as_launched_by_its_overrides_whatever_its_folder_and_progress_setting(runs, tmp_path):
    """Runs are matched to the plan by their .hydra/overrides.yaml, not by count or folder name;
    keys that do not change a run (here trainer.progress) are left out of the match."""
    import yaml

    sweep = tmp_path / "mtl"
    shutil.copytree(runs / "mtl", sweep)
    runs_in = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "summary.json").exists())
    dwa = [p for p in runs_in if "strategy=dwa" in p.name]
    dwa[0].rename(sweep / "renamed")                       # still launched
    overrides = sweep / "renamed" / ".hydra" / "overrides.yaml"
    listed = [o for o in yaml.safe_load(overrides.read_text()) if not o.startswith("trainer.progress=")]
    overrides.write_text(yaml.safe_dump([*listed, "trainer.progress=bar"]))
    shutil.rmtree(dwa[1])                                  # not launched
    ew = next(p for p in runs_in if "strategy=ew" in p.name)
    shutil.copytree(ew, sweep / "extra")                   # a second copy of a job: not one of DWA's
    assert len(sweep_status([sweep])) == 6
    assert sweep_status([sweep]).attrs["unlaunched"] == 1
