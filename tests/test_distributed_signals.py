"""A killed distributed run keeps its history and resumes (issue 14).

A 2-process CPU run launched by ``trainer.distributed.nproc=2`` is stopped mid-training: by
SIGTERM to the launching process (forwarded to every rank), or by SIGKILL of the launcher (the
ranks learn of it through the parent-death signal). Either way rank 0 marks the run
``interrupted`` with the epochs finished, metrics.jsonl holds exactly those epochs, the
checkpoint is there, and no process of the run is left behind. The printed resume command,
run again (two processes), ends with the metrics of the uninterrupted one-process run, within the
tolerance of tests/test_distributed_cli.py (1e-4 relative).
"""
from __future__ import annotations

import json
import os
import pickle
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, cli, read_jsonl
from test_distributed_cli import assert_same_run

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
# 50 steps an epoch: slow enough to be stopped inside an epoch, fast enough for a test
ARGS = ["dataset=synthetic", "dataset.num_samples=1000", "dataset.num_val=100", "dataset.num_test=100",
        "trainer.batch_size=20", "trainer.device=cpu", "trainer.progress=never", "model.hidden=16",
        "strategy=pcgrad", "trainer.log_interval=50"]
EPOCHS = 40


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["sigterm", "ctrl_c", "sigkill_launcher"])
def test_a_killed_distributed_run_resumes_and_equals_one_process(tmp_path, how):
    """``ctrl_c``: SIGINT to the whole process group, as a terminal sends it (every rank gets it
    twice: from the terminal and from the launcher)."""
    command = [sys.executable, "-m", "mtl_bench", "run", *ARGS, f"trainer.epochs={EPOCHS}",
               "trainer.distributed.nproc=2", "hydra.run.dir=run"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    run = tmp_path / "run"
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and '"split": "test"' in metrics.read_text()):
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)
    ranks = descendants(proc.pid)
    assert len(ranks) >= 2
    signum = signal.SIGINT if how == "ctrl_c" else signal.SIGTERM
    if how in ("sigterm", "ctrl_c"):
        if how == "ctrl_c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signum, stderr
        assert "Traceback" not in stderr, stderr
        (line,) = [l for l in stderr.splitlines() if l.startswith("mtl-bench:")]
        resume = shlex.split(line.split("Resume it with: ", 1)[1])[1:]
    else:
        proc.kill()
        proc.communicate(timeout=60)
        resume = ["run", *ARGS, f"trainer.epochs={EPOCHS}", "trainer.distributed.nproc=2", "hydra.run.dir=run"]
    deadline = time.time() + 60
    while time.time() < deadline and any(alive(pid) for pid in ranks):
        time.sleep(0.05)
    assert not [pid for pid in ranks if alive(pid)], "processes of the run outlived it"

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == signal.Signals(signum).name
    done = summary["epochs_completed"]
    assert 1 <= done < EPOCHS
    assert {r["epoch"] for r in read_jsonl(metrics)} == set(range(1, done + 1))
    assert (run / "checkpoint.pt").exists()
    assert "trainer.distributed.nproc=2" in resume

    # resumed (shortened to one more epoch so the test stays quick): the uninterrupted run's metrics
    resumed = subprocess.run([sys.executable, "-m", "mtl_bench", *resume, f"trainer.epochs={done + 1}"],
                             cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    one = cli("run", *ARGS, f"trainer.epochs={done + 1}", "hydra.run.dir=one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert_same_run(tmp_path / "one", run)


def test_a_stop_crosses_from_a_rank_to_the_launcher_intact():
    """A rank hands its :class:`Interrupted` to the launching process through a queue (pickle)."""
    from mtl_bench.train.signals import Interrupted

    stop = pickle.loads(pickle.dumps(Interrupted(signal.SIGTERM)))
    assert isinstance(stop, Interrupted) and stop.signum == signal.SIGTERM and stop.exit_code == 143
    assert str(stop) == "stopped by SIGTERM"


def test_a_signal_repeated_while_stopping_is_ignored():
    """Ctrl-C reaches a rank twice (terminal and launcher): the second must not break the first's
    writing of the interrupted summary."""
    from mtl_bench.train.signals import Interrupted, interrupt_on_signals

    written = []
    with pytest.raises(Interrupted) as stop:
        with interrupt_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # the handler raises before this ends
            except Interrupted:
                os.kill(os.getpid(), signal.SIGINT)  # while "writing the summary"
                time.sleep(0.05)
                written.append(True)
                raise
    assert stop.value.signum == signal.SIGINT and written == [True]


def start_and_wait_for_an_epoch(command: list[str], tmp_path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    summary = tmp_path / "run" / "summary.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (summary.exists() and '"epochs_completed": 1' in summary.read_text()):
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)
    return proc


def ranks_of(pid: int) -> list[int]:
    """The rank processes below ``pid`` (torch.multiprocessing's spawned interpreters), rank 0 first."""
    return sorted(p for p in descendants(pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("rank", [0, 1])
def test_a_rank_killed_outright_is_named_and_the_run_is_marked_interrupted(tmp_path, rank):
    """SIGKILL of one rank (the out-of-memory killer): torch ends the survivors with SIGTERM. Before,
    that read as an orderly SIGTERM stop (rank 1 killed), or said "marked interrupted" while
    summary.json still said running (rank 0 killed)."""
    command = [sys.executable, "-m", "mtl_bench", "run", *ARGS, f"trainer.epochs={EPOCHS}",
               "trainer.distributed.nproc=2", "hydra.run.dir=run"]
    proc = start_and_wait_for_an_epoch(command, tmp_path)
    os.kill(ranks_of(proc.pid)[rank], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGKILL, stderr
    (line,) = [l for l in stderr.splitlines() if l.startswith("mtl-bench:")]
    assert line.startswith(f"mtl-bench: rank {rank} was killed by SIGKILL") and "marked interrupted" in line, line
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGKILL"
    assert summary["stopped_by"].startswith(f"rank {rank} was killed") and summary["epochs_completed"] >= 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_stopped_torchrun_run_is_told_once_with_the_command_that_resumes_it(tmp_path):
    """Under torchrun every rank runs the command line: only rank 0 tells of the stop, and the
    resume is torchrun's own command (which mtl-bench cannot rebuild), with the run's folder."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "mtl_bench",
               "run", *ARGS, f"trainer.epochs={EPOCHS}", "hydra.run.dir=run"]
    proc = start_and_wait_for_an_epoch(command, tmp_path)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to its workers
    _, stderr = proc.communicate(timeout=120)
    lines = [l for l in stderr.splitlines() if l.startswith("mtl-bench:")]
    assert len(lines) == 1, stderr
    assert "the run is marked interrupted. Resume it with: the same torchrun command with hydra.run.dir=" in lines[0]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "interrupted"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_rank_that_crashes_fails_the_run_and_is_not_taken_for_a_stop(tmp_path):
    """A rank that dies of SIGSEGV (a crash in native code) or SIGABRT fails the run: before, any
    signal read as a kill and the run was marked interrupted, to be resumed into the same crash."""
    command = [sys.executable, "-m", "mtl_bench", "run", *ARGS, f"trainer.epochs={EPOCHS}",
               "trainer.distributed.nproc=2", "hydra.run.dir=run"]
    proc = start_and_wait_for_an_epoch(command, tmp_path)
    os.kill(ranks_of(proc.pid)[1], signal.SIGSEGV)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert "RankCrashed: rank 1 of the local distributed run died of SIGSEGV" in stderr, stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "signal" not in summary and "SIGSEGV" in summary["error"]
