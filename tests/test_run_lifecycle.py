"""Signals, divergence, refused resumes and provenance of a run (issue 11, items 4, 5, 6, 11)."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, only_run_dir, read_jsonl

SMALL = ["dataset.num_samples=300", "dataset.num_val=100", "dataset.num_test=100", "trainer.batch_size=50"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def files(run: Path) -> dict[str, bytes]:
    """Every file of a run folder but Hydra's job log (which records each attempt)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.suffix != ".log"}


def every_file(run: Path) -> dict[str, bytes]:
    """Every file of a run folder, its log included."""
    return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def start_and_wait_for_an_epoch(tmp_path, args) -> subprocess.Popen:
    """``mtl-bench run ARGS`` started in ``tmp_path``, returned once its first epoch is evaluated."""
    proc = subprocess.Popen([sys.executable, "-m", "mtl_bench", "run", *args], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and '"split": "test"' in metrics.read_text()):
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_marks_the_run_interrupted_and_says_how_to_resume(tmp_path, signum):
    args = ["strategy=ew", "trainer.epochs=60", "dataset.num_samples=2000", "trainer.batch_size=20", "hydra.run.dir=run"]
    proc = start_and_wait_for_an_epoch(tmp_path, args)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == signal.Signals(signum).name
    done = summary["epochs_completed"]
    assert 1 <= done < 60
    # the steps are those of the finished epochs, which a resume continues from (status's ETA uses them)
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert summary["steps"] == max(r["step"] for r in records if r["epoch"] == done and r["split"] == "train")
    # a checkpoint copy a kill left half-written is removed by the resume
    (tmp_path / "run" / ".checkpoint.pt.tmp999").write_bytes(b"half")
    (line,) = [l for l in stderr.splitlines() if l.startswith("mtl-bench:")]
    assert f"stopped by {signal.Signals(signum).name} after epoch {done}/60" in line
    command = line.split("Resume it with: ", 1)[1]
    assert command.startswith("mtl-bench run ") and "hydra.run.dir=" in command
    # the printed command resumes it (shortened here so the test stays quick)
    argv = shlex.split(command)[1:] + ["trainer.epochs=" + str(done + 1)]
    resumed = subprocess.run([sys.executable, "-m", "mtl_bench", *argv], cwd=tmp_path, env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == done + 1
    assert not (tmp_path / "run" / ".checkpoint.pt.tmp999").exists()


def test_a_signal_while_the_data_is_built_stops_the_run_without_a_trace(tmp_path):
    """SIGTERM before training (here from inside a user's data loader) ends the command with the
    signal's code and one line, and leaves no half-made run folder."""
    (tmp_path / "stopper.py").write_text(
        "import os, signal\n\n\ndef load_data(**keys):\n    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    raise AssertionError('the signal stops the run before this line')\n")
    (tmp_path / "conf" / "dataset").mkdir(parents=True)
    (tmp_path / "conf" / "dataset" / "stopper.yaml").write_text("_target_: stopper.load_data\nname: stopper\n"
                                                                "tasks: null\n")
    out = subprocess.run([sys.executable, "-m", "mtl_bench", "run", "dataset=stopper",
                          f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "hydra.run.dir=run"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300,
                         env={**ENV, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])})
    assert out.returncode == 128 + signal.SIGTERM, out.stderr
    assert out.stderr.strip().splitlines()[-1] == ("mtl-bench: stopped by SIGTERM before training started; nothing "
                                                   "to resume: start the run again")
    assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()


def test_divergence_names_the_task_and_the_step_and_keeps_the_step_records(run_cli, tmp_path):
    out = run_cli("run", "trainer.lr=1e12", "trainer.log_interval=5", "trainer.epochs=2", *SMALL,
                  "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged"
    step, tasks = summary["diverged_at_step"], summary["diverged_tasks"]
    assert tasks and set(tasks) <= {"task0", "task1"} and summary["diverged_epoch"] == 1
    assert f"the loss of task(s) {', '.join(tasks)} became NaN or infinite at step {step} (epoch 1)" in out.stdout + out.stderr
    records = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train_step"]
    at_step = {(r["task"], r["metric"]): r["value"] for r in records if r["step"] == step}
    assert all(at_step[(t, "loss")] is None for t in tasks)
    # every logged step before the divergence is kept
    assert {r["step"] for r in records} >= set(range(5, step, 5))


def test_a_resume_refuses_epochs_that_would_make_it_another_run(run_cli, tmp_path):
    """More epochs under a cosine schedule laid out over the old count, or fewer epochs than the
    run has trained, are refused in one line and leave the folder as it is; more epochs under
    a constant or step lr train on (test_a_signal_marks_the_run_interrupted_and_says_how_to_resume)."""
    assert run_cli("run", "trainer.epochs=2", "trainer.scheduler=cosine", *SMALL, "hydra.run.dir=run",
                   cwd=tmp_path).returncode == 0
    before = every_file(tmp_path / "run")
    longer = run_cli("run", "trainer.epochs=3", "trainer.scheduler=cosine", *SMALL, "hydra.run.dir=run", cwd=tmp_path)
    assert longer.returncode == 2 and "Traceback" not in longer.stderr
    (line,) = [l for l in longer.stderr.splitlines() if l.startswith("mtl-bench:")]
    assert "trainer.epochs 2 -> 3 changes the learning-rate schedule" in line and "trainer.epochs=2" in line
    assert every_file(tmp_path / "run") == before
    # killed after its last checkpoint, before the summary said completed: fewer epochs are refused
    summary_file = tmp_path / "run" / "summary.json"
    summary_file.write_text(summary_file.read_text().replace('"completed"', '"interrupted"'))
    fewer = run_cli("run", "trainer.epochs=1", "trainer.scheduler=cosine", *SMALL, "hydra.run.dir=run", cwd=tmp_path)
    assert fewer.returncode == 2, fewer.stderr
    assert "has trained 2 epochs; trainer.epochs=1 is fewer" in fewer.stderr


def test_a_refused_resume_changes_nothing_on_disk(run_cli, tmp_path):
    assert run_cli("run", "trainer.epochs=1", *SMALL, "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    before = every_file(tmp_path / "run")
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", "summary.json", "metrics.jsonl", "checkpoint.pt",
            "mtl-bench.log"} <= set(before)
    refused = run_cli("run", "strategy=uw", "trainer.epochs=2", *SMALL, "hydra.run.dir=run", cwd=tmp_path)
    assert refused.returncode == 2
    assert "holds a run with other settings" in refused.stderr and "strategy.name: 'ew' -> 'uw'" in refused.stderr
    assert every_file(tmp_path / "run") == before
    # a completed run is not passed off as the one asked for either
    same_epochs = run_cli("run", "strategy=uw", "trainer.epochs=1", *SMALL, "hydra.run.dir=run", cwd=tmp_path)
    assert same_epochs.returncode == 2 and "holds a run with other settings" in same_epochs.stderr
    assert every_file(tmp_path / "run") == before
    # in a sweep too: the refused run is logged, its folder left as it was
    sweep = ["run", "-m", "trainer.epochs=1", *SMALL, "hydra.sweep.dir=sweep", "hydra.sweep.subdir=one"]
    assert run_cli(*sweep, "strategy=ew", cwd=tmp_path).returncode == 0
    before = every_file(tmp_path / "sweep" / "one")
    again = run_cli(*sweep, "strategy=uw", cwd=tmp_path)
    assert again.returncode == 1 and "1 run(s) of the sweep refused" in again.stderr
    assert every_file(tmp_path / "sweep" / "one") == before
    # a run the sweep would resume (more epochs) but of other settings: refused, its log untouched too
    longer = [a.replace("trainer.epochs=1", "trainer.epochs=2") for a in sweep]
    again = run_cli(*longer, "strategy=uw", cwd=tmp_path)
    assert again.returncode == 1 and "1 run(s) of the sweep refused" in again.stderr
    assert "holds a run with other settings" in again.stderr
    assert every_file(tmp_path / "sweep" / "one") == before


def test_a_sweep_on_joblib_workers_reports_the_runs_it_refused(run_cli, tmp_path):
    """The joblib launcher (hydra/launcher=local) runs jobs in worker processes, where the sweep's
    callback sees nothing: a refusal is a line of the sweep folder's refused_runs.txt, reported at
    the end with exit 1, and a later sweep starts that list afresh."""
    sweep = ["run", "-m", *SMALL, "hydra.sweep.dir=sweep", "hydra.sweep.subdir=one", "hydra/launcher=local",
             "hydra.launcher.n_jobs=1"]
    assert run_cli(*sweep, "trainer.epochs=1", "strategy=ew", cwd=tmp_path).returncode == 0
    before = every_file(tmp_path / "sweep" / "one")
    again = run_cli(*sweep, "trainer.epochs=2", "strategy=uw", cwd=tmp_path)
    assert again.returncode == 1 and "1 run(s) of the sweep refused" in again.stderr
    notes = (tmp_path / "sweep" / "refused_runs.txt").read_text().splitlines()
    assert len(notes) == 1 and "holds a run with other settings" in notes[0] and "strategy.name: 'ew' -> 'uw'" in notes[0]
    assert every_file(tmp_path / "sweep" / "one") == before
    assert run_cli(*sweep, "trainer.epochs=1", "strategy=ew", cwd=tmp_path).returncode == 0
    assert not (tmp_path / "sweep" / "refused_runs.txt").exists()


@pytest.mark.parametrize("args", [["trainer.epochs=ten", "hydra.run.dir=new/run"], ["strategy.name=nosuch"],
                                  ["strategy.name=nosuch", "hydra.run.dir=ELSEWHERE"]])
def test_a_run_rejected_before_training_leaves_no_folder(run_cli, tmp_path, args):
    (tmp_path / "cwd").mkdir()
    elsewhere = tmp_path / "elsewhere"  # outside the working directory
    args = [a.replace("ELSEWHERE", str(elsewhere)) for a in args]
    out = run_cli("run", *SMALL, *args, cwd=tmp_path / "cwd")
    assert out.returncode == 2 and "error" in out.stderr
    assert list((tmp_path / "cwd").iterdir()) == [] and not elsewhere.exists()


def test_summary_records_provenance(run_cli, tmp_path):
    out = run_cli("run", "trainer.epochs=1", *SMALL, "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    prov = summary["provenance"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert prov["git"]["commit"] == head and isinstance(prov["git"]["dirty"], bool)
    assert prov["device_name"] and prov["cuda"] is None and prov["cudnn"] is None
    assert prov["torch_threads"] == 1 and prov["torch_interop_threads"] >= 1
    assert prov["libraries"]["numpy"] == np.__version__
    assert "hydra.run.dir=run" in prov["command"] and "trainer.epochs=1" in prov["command"]
    assert {"numpy", "scipy", "quadprog"} <= set(summary["versions"])


def test_git_state_is_null_outside_a_checkout_or_without_git(tmp_path, monkeypatch):
    from mtl_bench.train.provenance import git_state

    (tmp_path / "pkg").mkdir()
    assert git_state(tmp_path / "pkg") is None
    (tmp_path / ".git").mkdir()
    monkeypatch.setenv("PATH", "")
    assert git_state(tmp_path / "pkg") is None


def test_an_option_added_since_a_run_was_made_is_no_other_setting():
    from mtl_bench.train.checkpoint import settings_mismatch

    stored = {"strategy": {"name": "ew", "reduction": "sum"}, "trainer": {"lr": 0.01}}
    grown = {"strategy": {"name": "ew", "_target_": "mtl_bench.strategies.EqualWeighting", "reduction": "sum"},
             "trainer": {"lr": 0.01}, "dataset": {"cache_dir": "/tmp/cache"}}
    assert settings_mismatch(stored, grown) == []
    assert settings_mismatch(stored, {**grown, "trainer": {"lr": 0.02}}) == ["trainer.lr: 0.01 -> 0.02"]
    assert settings_mismatch(stored, {"strategy": {"name": "ew", "reduction": "sum"}}) == ["trainer.lr: 0.01 -> None"]
    # a stored null that is now a subtree (a loss weighting composed in on resume) is a change
    plain = {"strategy": {"name": "pcgrad", "loss_weighting": None}}
    composed = {"strategy": {"name": "pcgrad", "loss_weighting": {"name": "rlw"}}}
    assert settings_mismatch(plain, composed) == ["strategy.loss_weighting: None -> {'name': 'rlw'}"]
    assert settings_mismatch(composed, plain) == ["strategy.loss_weighting.name: 'rlw' -> None"]


def test_a_second_process_on_a_run_being_trained_is_refused_and_touches_nothing(tmp_path):
    """Two processes training one run folder (a sweep started twice, a worker left over from a
    killed sweep) would write every record twice: the second is refused in one line, exit 2, and
    the first trains on undisturbed to a history without duplicates."""
    args = ["strategy=ew", "trainer.epochs=100000", "dataset.num_samples=2000", "trainer.batch_size=20",
            "hydra.run.dir=run"]
    first = start_and_wait_for_an_epoch(tmp_path, args)
    second = subprocess.run([sys.executable, "-m", "mtl_bench", "run", *args[:-1], "trainer.epochs=2",
                             "hydra.run.dir=run"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=300)
    assert second.returncode == 2, second.stderr
    (line,) = [l for l in second.stderr.splitlines() if l.startswith("mtl-bench:")]
    assert "is being trained by another process" in line and "run the same command again" in line
    assert "Traceback" not in second.stderr
    records = [(r["epoch"], r["step"], r["split"], r["task"], r["metric"])
               for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert len(records) == len(set(records))  # one writer: no record twice
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs"] == 100000  # the first run's, not the refused one's


def test_a_resume_may_change_how_a_run_goes_but_not_what_it_computes():
    """Display, paths, gradient paths, the loader's workers and a preset's report metadata may change
    on resume; the lr may not."""
    from mtl_bench.train.checkpoint import settings_mismatch

    stored = {"trainer": {"lr": 0.01, "progress": "auto", "epochs": 10},
              "dataset": {"num_workers": 2, "eval_batch_size": 256}, "grad": {"method": "auto"}}
    neutral = {"trainer": {"lr": 0.01, "progress": "never", "epochs": 20},
               "dataset": {"num_workers": 2, "eval_batch_size": 1024}, "grad": {"method": "loop"},
               "logger": {"tensorboard": {"dir": "tb"}}}
    assert settings_mismatch(stored, neutral) == []
    assert settings_mismatch(stored, {**neutral, "dataset": {"num_workers": 0, "eval_batch_size": 256}}) == []
    # a preset's report settings (experiment.table.reference renamed since the run) change no number
    assert settings_mismatch({**stored, "experiment": {"table": {"reference": "ew"}}},
                             {**neutral, "experiment": {"table": {"reference": "uniform"}}}) == []
    assert settings_mismatch(stored, {**neutral, "trainer": {"lr": 0.1, "progress": "never", "epochs": 20}}) == [
        "trainer.lr: 0.01 -> 0.1"]


def test_random_states_load_back_on_the_host():
    """torch's, CUDA's and a loader generator's states are byte tensors their setters take on the
    CPU only: a checkpoint loaded onto a GPU is brought back (scripts/gpu_session.sh resumes one there)."""
    import torch

    from mtl_bench.train.checkpoint import on_host, rng_state, set_rng_state

    state = {"rng": rng_state(), "loader": {"generator": torch.Generator().get_state()}, "n": 3,
             "ranks": [(torch.zeros(2), torch.ones(1))]}
    moved = on_host(state)
    assert moved["n"] == 3 and isinstance(moved["ranks"][0], tuple)
    assert all(t.device.type == "cpu" for t in (moved["rng"]["torch"], moved["loader"]["generator"], *moved["ranks"][0]))
    set_rng_state(moved["rng"])
    torch.Generator().set_state(moved["loader"]["generator"])


def test_a_sweep_job_that_crashes_is_marked_failed_and_the_sweep_reports_it(run_cli, tmp_path):
    """Not a user error (LBFGS's step needs a closure: a TypeError, as a bug or an out-of-memory
    would be): the job is marked failed with its traceback in its log, the other job completes,
    and the sweep ends with its count and the list of failed runs, exit 1."""
    result = run_cli("run", "-m", "trainer.optimizer={_target_:torch.optim.LBFGS},adam", *SMALL,
                     "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "1 completed, 1 failed" in result.stderr + result.stdout
    assert "run(s) of the sweep failed" in result.stderr
    crashed = next((tmp_path / "sweep").glob("*LBFGS*"))
    summary = json.loads((crashed / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith("TypeError")
    assert "Traceback" in (crashed / "mtl-bench.log").read_text()
    other = next((tmp_path / "sweep").glob("*adam*"))
    assert json.loads((other / "summary.json").read_text())["status"] == "completed"
