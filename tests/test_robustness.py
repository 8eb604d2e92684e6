"""Runs that survive anything: SIGKILL and resume, idempotent sweeps, launchers, bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

SMALL = ["dataset.num_samples=300", "dataset.num_val=100", "dataset.num_test=100", "trainer.batch_size=50"]


def summaries(parent):
    return {p.parent.name: json.loads(p.read_text()) for p in parent.rglob("summary.json")}


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(run_cli, tmp_path):
    args = ["strategy=gradnorm", "trainer.epochs=3", "trainer.deterministic=true", "dataset.num_samples=6000",
            "dataset.num_val=500", "trainer.batch_size=10", "trainer.log_interval=100"]
    whole = run_cli("run", *args, "hydra.run.dir=whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mtl_bench", "run", *args, "hydra.run.dir=killed"], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and '"split": "test"' in metrics.read_text()):
        time.sleep(0.02)
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert killed["status"] == "running" and killed["epochs_completed"] < 3  # it really died mid-run

    resumed = run_cli("run", *args, "hydra.run.dir=killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "whole" / "summary.json").read_text())
    b = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert b["status"] == "completed"
    assert b["final"] == a["final"]
    lines = lambda d: [json.loads(l) for l in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rs: [(r["epoch"], r["split"], r["task"], r["metric"], r["value"]) for r in rs]
    assert strip(lines("killed")) == strip(lines("whole"))


def test_rerunning_a_sweep_skips_completed_runs_and_resumes_the_rest(run_cli, tmp_path):
    sweep = ["run", "-m", "strategy=ew,dwa", "trainer.epochs=2", *SMALL, "hydra.sweep.dir=sweep"]
    assert run_cli(*sweep, cwd=tmp_path).returncode == 0
    first = summaries(tmp_path / "sweep")
    ew = next(k for k in first if "strategy=ew" in k)
    dwa = next(k for k in first if "strategy=dwa" in k)
    # make the DWA run look killed after its first epoch: the same run stopped after one epoch
    assert run_cli("run", "strategy=dwa", "trainer.epochs=1", *SMALL, "hydra.run.dir=one", cwd=tmp_path).returncode == 0
    (tmp_path / "sweep" / dwa / "checkpoint.pt").write_bytes((tmp_path / "one" / "checkpoint.pt").read_bytes())
    (tmp_path / "sweep" / dwa / "summary.json").write_text(json.dumps({**first[dwa], "status": "running"}))

    proc = run_cli(*sweep, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    second = summaries(tmp_path / "sweep")
    assert second[ew]["updated_at"] == first[ew]["updated_at"]  # skipped
    assert second[dwa]["status"] == "completed" and second[dwa]["final"] == first[dwa]["final"]
    assert not list((tmp_path / "sweep").glob("multirun.*.yaml"))  # the same command: its plan is not kept twice


def test_a_sweep_over_ended_runs_leaves_every_file_as_it_was_even_where_it_could_not_run(run_cli, tmp_path):
    """Started again on a machine where the runs could not even start (here a device it lacks; a
    missing dataset alike), a sweep reports its ended runs as they are: no file of theirs changes,
    none is marked failed. Other settings are still refused."""
    sweep = ["run", "-m", "strategy=ew,dwa", "trainer.epochs=1", *SMALL, "hydra.sweep.dir=sweep"]
    assert run_cli(*sweep, cwd=tmp_path).returncode == 0
    files = lambda: {p: p.read_bytes() for p in (tmp_path / "sweep").rglob("*")  # noqa: E731
                     if p.is_file() and not p.name.startswith("multirun.")}
    before, plan = files(), (tmp_path / "sweep" / "multirun.yaml").read_text()
    proc = run_cli(*sweep, "trainer.device=cuda:7", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "already completed" in proc.stdout + proc.stderr
    assert files() == before
    # the second command's plan replaced multirun.yaml; the first one's is kept beside it
    assert (tmp_path / "sweep" / "multirun.1.yaml").read_text() == plan
    assert "trainer.device=cuda:7" in (tmp_path / "sweep" / "multirun.yaml").read_text()
    ew = next(p.parent for p in (tmp_path / "sweep").rglob("summary.json") if "strategy=ew" in p.parent.name)
    refused = run_cli("run", "strategy=ew", "trainer.epochs=1", *SMALL, "trainer.lr=0.5", f"hydra.run.dir='{ew}'",
                      cwd=tmp_path)
    assert refused.returncode == 2 and "other settings" in refused.stderr and "trainer.lr" in refused.stderr
    assert files() == before


def test_joblib_launcher_runs_four_jobs(run_cli, tmp_path):
    proc = run_cli("run", "-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2", "strategy=ew,mgda", "seed=0,1",
                   "trainer.epochs=1", *SMALL, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = summaries(tmp_path / "sweep")
    assert len(found) == 4 and all(s["status"] == "completed" for s in found.values())
    assert {(s["identity"]["strategy"], s["identity"]["seed"]) for s in found.values()} == {
        ("ew", 0), ("ew", 1), ("mgda", 0), ("mgda", 1)}


def test_submitit_local_executor_runs_a_job(run_cli, tmp_path):
    proc = run_cli("run", "-m", "hydra/launcher=slurm_local", "strategy=uw", "trainer.epochs=1", *SMALL,
                   "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (found,) = summaries(tmp_path / "sweep").values()
    assert found["status"] == "completed" and found["identity"]["strategy"] == "uw"


def test_a_failing_run_does_not_stop_the_sweep(run_cli, tmp_path):
    proc = run_cli("run", "-m", "dataset.tasks=[task9],[task0]", "trainer.epochs=1", *SMALL, "hydra.sweep.dir=sweep",
                   cwd=tmp_path)
    assert proc.returncode == 1
    assert "1 run(s) of the sweep failed" in proc.stderr
    found = summaries(tmp_path / "sweep")
    statuses = sorted(s["status"] for s in found.values())
    assert statuses == ["completed", "failed"]
    failed = next(s for s in found.values() if s["status"] == "failed")
    assert "unknown task" in failed["error"]


@pytest.mark.parametrize("args, message", [
    (["strategy.name=nosuch"], "unknown strategy 'nosuch'"),
    (["dataset=nosuch"], "Could not find 'dataset/nosuch'"),
    (["trainer.epochs=ten"], "trainer.epochs=ten has the wrong type: an integer >= 1, e.g. trainer.epochs=20"),
    (["strategy=gradnorm", "strategy.alpha=high"], "strategy.alpha='high' has the wrong type: a number like the default"),
    (["trainer.lr=[1,2]"], "trainer.lr=[1,2] has the wrong type: a number > 0"),
    (["hydra.run.dir=afile/run"], "cannot write the output directory 'afile/run'"),
])
def test_bad_input_gives_a_clear_error(run_cli, tmp_path, args, message):
    (tmp_path / "afile").write_text("not a folder")
    proc = run_cli("run", "trainer.epochs=1", *SMALL, *args, cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_corrupted_checkpoint_gives_a_clear_error_and_keeps_history(run_cli, tmp_path):
    assert run_cli("run", "trainer.epochs=2", *SMALL, "hydra.run.dir=r", cwd=tmp_path).returncode == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    (tmp_path / "r" / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    (tmp_path / "r" / "checkpoint.pt").write_bytes(b"garbage")
    history = (tmp_path / "r" / "metrics.jsonl").read_text()
    proc = run_cli("run", "trainer.epochs=2", *SMALL, "hydra.run.dir=r", cwd=tmp_path)
    assert proc.returncode == 2
    assert "checkpoint" in proc.stderr and "unreadable" in proc.stderr and "Delete it" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == history


def _pids_running(pattern: str) -> list[int]:
    pids = []
    for proc_dir in os.listdir("/proc"):
        if proc_dir.isdigit():
            try:
                cmdline = open(f"/proc/{proc_dir}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if pattern in cmdline:
                pids.append(int(proc_dir))
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the job's process")
def test_submitit_requeues_a_preempted_job_which_resumes(run_cli, tmp_path):
    args = ["strategy=ew", "trainer.epochs=3", "trainer.deterministic=true", "dataset.num_samples=6000",
            "dataset.num_val=500", "trainer.batch_size=10", "trainer.log_interval=100"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sweep = subprocess.Popen([sys.executable, "-m", "mtl_bench", "run", "-m", "hydra/launcher=slurm_local", *args,
                              "hydra.sweep.dir=sweep"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    metrics = None
    while time.time() < deadline:
        found = list((tmp_path / "sweep").rglob("metrics.jsonl"))
        if found and '"split": "test"' in found[0].read_text():
            metrics = found[0]
            break
        time.sleep(0.05)
    assert metrics is not None, "the job never finished its first epoch"
    workers = _pids_running("submitit.core._submit")
    assert workers, "no submitit worker process found"
    for pid in workers:
        os.kill(pid, signal.SIGUSR2)  # what SLURM sends before preempting a job
    assert sweep.wait(timeout=300) == 0
    run_dir = metrics.parent
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3
    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*.out"))
    assert "Requeued job" in logs  # submitit checkpointed and restarted it

    reference = run_cli("run", *args, "hydra.run.dir=ref", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    assert summary["final"] == json.loads((tmp_path / "ref" / "summary.json").read_text())["final"]
