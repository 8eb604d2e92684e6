"""Stopping a sweep on joblib workers (mtl_bench/sweep_stop.py): a signal to the sweep's process
or its process group stops every run in order and skips the jobs not started; a signal to one
worker stops that worker's run alone; nothing of an earlier stop lingers into the next sweep."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, only_run_dir

SMALL = ["dataset.num_samples=300", "dataset.num_val=100", "dataset.num_test=100", "trainer.batch_size=50"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
# a sweep of runs that train until stopped, in folders by job number, on joblib workers
SWEEP = ["run", "-m", "dataset.num_samples=2000", "trainer.batch_size=20", "hydra.sweep.dir=sweep",
         "hydra.sweep.subdir=${hydra.job.num}", "hydra/launcher=local"]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@contextlib.contextmanager
def started(tmp_path: Path, *args: str):
    """``mtl-bench ARGS`` in its own process group, every process of which is gone afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "mtl_bench", *args], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def wait_for_test_records(proc: subprocess.Popen, runs: list[Path]) -> None:
    """Until each of ``runs`` has evaluated an epoch (it is training)."""
    deadline = time.time() + 300
    while not all((run / "metrics.jsonl").exists() and '"split": "test"' in (run / "metrics.jsonl").read_text()
                  for run in runs):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "the runs did not train"
        time.sleep(0.1)


def summaries(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}


def mtl_bench_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("mtl-bench:")]


def process_writing(root: int, folder: Path) -> int:
    """The process below ``root`` that holds a file of ``folder`` open (the worker training its run)."""
    folder = str(folder.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == root:
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(int(entry.name)) != root:
                continue
            if any(os.readlink(fd).startswith(folder + "/") for fd in (entry / "fd").iterdir()):
                return int(entry.name)
    raise AssertionError(f"no process of the sweep writes {folder}")


def test_a_signal_to_a_joblib_sweep_stops_its_runs_skips_the_rest_and_says_how_to_continue(tmp_path):
    """SIGTERM to the sweep's process alone (``kill PID``; a container's stop): before, it died
    silently while its workers trained on as orphans and the jobs not started never ran. Now each
    worker's run is marked interrupted, the jobs not started are skipped, the sweep reports both
    and exits 143; the same sweep command then resumes the interrupted runs and starts the rest."""
    sweep = [*SWEEP, "strategy=ew,uw,dwa,rlw", "hydra.launcher.n_jobs=2"]
    with started(tmp_path, *sweep, "trainer.epochs=100000") as proc:
        wait_for_test_records(proc, [tmp_path / "sweep" / "0", tmp_path / "sweep" / "1"])
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    found = summaries(tmp_path / "sweep")
    assert [s["status"] for s in found.values()] == ["interrupted"] * 2 and len(list((tmp_path / "sweep").iterdir())) == 3
    (report,) = [line for line in mtl_bench_lines(stderr) if "the sweep was stopped" in line]
    assert report.startswith("mtl-bench: the sweep was stopped by SIGTERM: 2 interrupted, 2 job(s) not started.")
    assert "hydra.sweep.dir=sweep" in report and not (tmp_path / "sweep" / "sweep_stopped").exists()
    done = max(s["epochs_completed"] for s in found.values())
    again = subprocess.run([sys.executable, "-m", "mtl_bench", *sweep, f"trainer.epochs={done + 1}"], cwd=tmp_path,
                           env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    found = summaries(tmp_path / "sweep")
    assert len(found) == 4 and {s["status"] for s in found.values()} == {"completed"}
    assert {s["epochs_completed"] for s in found.values()} == {done + 1}


@linux_only
def test_ctrl_c_to_a_sweep_with_idle_workers_stops_it_in_order(tmp_path):
    """Ctrl-C reaches every process of the group, the workers that never got a job included (more
    workers than jobs). Under joblib's plain loky backend such a worker died of it and the sweep
    ended in a broken pool's traceback; during a sweep the workers take the signal from their start."""
    with started(tmp_path, *SWEEP, "strategy=ew,uw", "hydra.launcher.n_jobs=3", "trainer.epochs=100000") as proc:
        wait_for_test_records(proc, [tmp_path / "sweep" / "0", tmp_path / "sweep" / "1"])
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr and "TerminatedWorkerError" not in stderr, stderr
    assert [s["status"] for s in summaries(tmp_path / "sweep").values()] == ["interrupted"] * 2
    (report,) = [line for line in mtl_bench_lines(stderr) if "the sweep was stopped" in line]
    assert report.startswith("mtl-bench: the sweep was stopped by SIGINT: 2 interrupted, 0 job(s) not started.")


@linux_only
def test_a_signal_to_one_worker_stops_its_run_alone_and_the_sweep_names_it(tmp_path):
    """``kill`` of the worker training one run (a user stopping that run): the run is marked
    interrupted, the sweep's other run completes, and the sweep ends with exit code 1 and the
    command that continues the stopped run."""
    with started(tmp_path, *SWEEP, "strategy=ew", "trainer.epochs=100000,3", "hydra.launcher.n_jobs=2") as proc:
        endless = tmp_path / "sweep" / "0"
        wait_for_test_records(proc, [endless])
        os.kill(process_writing(proc.pid, endless), signal.SIGTERM)
        _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    found = summaries(tmp_path / "sweep")
    assert (found["0"]["status"], found["0"]["signal"], found["1"]["status"]) == ("interrupted", "SIGTERM", "completed")
    (report,) = [line for line in mtl_bench_lines(stderr) if "run(s) of the sweep interrupted" in line]
    assert report == "mtl-bench: 1 run(s) of the sweep interrupted and 0 stopped before training (a signal to their " \
                     "process, or a rank killed):"
    assert f"hydra.sweep.dir=sweep" in stderr.split(report, 1)[1]


def test_the_sweep_signal_handlers_are_released_when_a_sweep_ends(tmp_path, monkeypatch):
    """A sweep run through the Python entry point gives SIGTERM and SIGINT back when it ends."""
    from mtl_bench import cli

    monkeypatch.chdir(tmp_path)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    cli.run(["-m", "strategy=ew", *SMALL, "trainer.epochs=1", "hydra.sweep.dir=sweep"])
    assert json.loads(only_run_dir(tmp_path / "sweep").joinpath("summary.json").read_text())["status"] == "completed"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_an_earlier_sweeps_stop_does_not_skip_a_new_sweep(tmp_path, monkeypatch):
    """A stop file left in the folder (a sweep killed before its end could clear it) is forgotten
    when the next sweep into the folder starts: its jobs run."""
    from mtl_bench import cli, sweep_stop

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / sweep_stop.STOP_FILE).write_text("SIGTERM\n")
    (tmp_path / "sweep" / sweep_stop.NOT_STARTED_FILE).write_text("sweep/0\n")
    cli.run(["-m", "strategy=ew", *SMALL, "trainer.epochs=1", "hydra.sweep.dir=sweep"])
    assert json.loads(only_run_dir(tmp_path / "sweep").joinpath("summary.json").read_text())["status"] == "completed"
    assert not (tmp_path / "sweep" / sweep_stop.STOP_FILE).exists()
    assert not (tmp_path / "sweep" / sweep_stop.NOT_STARTED_FILE).exists()


def test_a_stop_that_comes_while_a_run_is_set_up_stops_it_when_training_would_start():
    """A worker's handler (a run being set up: its data and model built) only notes the signal; the
    run's own handler raises it as soon as it is in place, instead of the run training on."""
    from mtl_bench import sweep_stop
    from mtl_bench.train.signals import Interrupted, interrupt_on_signals, take_noted_stop

    sweep_stop._on_signal(signal.SIGTERM, None)  # not the sweep's own process: no stop file is written
    with pytest.raises(Interrupted) as stop:
        with interrupt_on_signals():
            pytest.fail("the noted stop was not raised")
    assert stop.value.signum == signal.SIGTERM
    with interrupt_on_signals():  # taken once
        pass
    sweep_stop._on_signal(signal.SIGINT, None)
    take_noted_stop()  # the next job of the worker starts: a stop that came between two jobs is not its own
    with interrupt_on_signals():
        pass


def test_the_sweeps_own_process_marks_the_sweep_stopped_and_tells_once(tmp_path, capfd):
    from mtl_bench import sweep_stop
    from mtl_bench.train.signals import take_noted_stop

    sweep_stop.watch(tmp_path)
    try:
        sweep_stop._on_signal(signal.SIGTERM, None)
        sweep_stop._on_signal(signal.SIGINT, None)
    finally:
        sweep_stop.release()
        take_noted_stop()
    assert sweep_stop.stopped_by(tmp_path) == "SIGTERM"  # the first signal's name
    assert capfd.readouterr().err.count("stopping the sweep") == 1
    assert sweep_stop.report(tmp_path, "1 interrupted", []) == 128 + signal.SIGTERM
    assert sweep_stop.stopped_by(tmp_path) is None


def test_slurm_sweeps_are_left_to_the_clusters_signals():
    from omegaconf import OmegaConf

    from mtl_bench import sweep_stop

    slurm = OmegaConf.create({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"})
    local = OmegaConf.create({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"})
    assert not sweep_stop.watches(slurm) and sweep_stop.watches(local)
