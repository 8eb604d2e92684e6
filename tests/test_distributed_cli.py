"""Distributed runs through the CLI equal one-process runs (issue 14).

``torchrun --nproc_per_node=2 -m mtl_bench run ...`` and ``trainer.distributed.nproc=2`` (CPU,
gloo) log the metrics of the one-process run of the same global batch: every record of
metrics.jsonl (training losses and weights, sharded evaluation reduced exactly) within 1e-4
relative (float32 training; the sums over two shards are added in another order). Only rank 0
writes the run folder, a distributed run resumes in any number of processes, and the SLURM path
(submitit, one task per GPU) forms one run from the job's tasks.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, cli, read_jsonl

RTOL, ATOL = 1e-4, 1e-6


def multimnist(root) -> list[str]:
    return ["dataset=multimnist", f"dataset.root={root}", "dataset.val_size=50", "trainer.batch_size=64",
            "trainer.epochs=2", "model.p=0.0", "trainer.device=cpu", "trainer.progress=never"]


SYNTHETIC = ["dataset=synthetic", "dataset.num_samples=300", "dataset.num_val=100", "dataset.num_test=100",
             "trainer.batch_size=50", "trainer.device=cpu", "trainer.progress=never", "model.hidden=32"]


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "mtl_bench"]
    return subprocess.run([*command, "run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def records(run: Path) -> dict[tuple, float]:
    out = {}
    for r in read_jsonl(run / "metrics.jsonl"):
        key = (r["epoch"], r["step"], r["split"], r["task"], r["metric"])
        assert key not in out, f"{key} written twice: only rank 0 writes"
        out[key] = r["value"]
    return out


def assert_same_run(one: Path, many: Path) -> None:
    a, b = records(one), records(many)
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert math.isclose(value, b[key], rel_tol=RTOL, abs_tol=ATOL), (key, value, b[key])
    sa, sb = (json.loads((run / "summary.json").read_text()) for run in (one, many))
    assert sa["status"] == sb["status"] == "completed"
    assert sa["identity"] == sb["identity"] and sa["steps"] == sb["steps"]  # its table row is any run's


def test_torchrun_multimnist_equals_one_process(tmp_path, mnist_root):
    args = [*multimnist(mnist_root), "strategy=mgda", "trainer.log_interval=2"]
    one = cli("run", *args, "hydra.run.dir=one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two = torchrun(*args, "hydra.run.dir=two", cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert_same_run(tmp_path / "one", tmp_path / "two")
    cost = json.loads((tmp_path / "two" / "summary.json").read_text())["cost"]["distributed"]
    assert cost["world_size"] == 2 and cost["bytes_communicated_per_step"] > 0
    assert (tmp_path / "two" / ".hydra" / "config.yaml").exists()


def test_nproc_switch_resumes_in_one_process(tmp_path):
    """A 2-process run of one epoch (launched by ``trainer.distributed.nproc``), resumed for a
    second epoch by one process, equals the one-process run of two epochs: the checkpoint holds
    what the ranks share (parameters, optimiser, strategy, generators)."""
    args = [*SYNTHETIC, "strategy=pcgrad", "trainer.log_interval=3"]  # random task orders, shared by seed
    one = cli("run", *args, "trainer.epochs=2", "hydra.run.dir=one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    first = cli("run", *args, "trainer.epochs=1", "trainer.distributed.nproc=2", "hydra.run.dir=two", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["cost"]["distributed"]["world_size"] == 2
    # rank 0 logs as one process does: its epoch lines reach the console and the run's log, once
    log = (tmp_path / "two" / "mtl-bench.log").read_text()
    assert log.count("epoch 1/1") == 1 and "epoch 1/1" in first.stdout + first.stderr
    resumed = cli("run", *args, "trainer.epochs=2", "hydra.run.dir=two", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path / "one", tmp_path / "two")


def test_nproc_reports_a_user_error_like_one_process(tmp_path):
    result = cli("run", *SYNTHETIC, "trainer.epochs=1", "strategy=db_mtl", "grad.space=representation",
                 "trainer.distributed.nproc=2", "hydra.run.dir=bad", cwd=tmp_path)
    assert result.returncode == 2
    assert "db_mtl" in result.stderr.lower() or "DBMTL" in result.stderr
    assert not (tmp_path / "bad").exists()


def test_submitit_tasks_form_one_run(tmp_path):
    """The SLURM path on this machine: submitit's local executor starts 2 tasks of the job
    (``hydra.launcher.tasks_per_node=2``); they join one process group through submitit's
    environment and train the one-process run's model into one folder."""
    args = [*SYNTHETIC, "strategy=nash", "trainer.epochs=1", "trainer.log_interval=1"]
    one = cli("run", *args, "hydra.run.dir=one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    sweep = cli("run", "-m", "hydra/launcher=slurm_local", "hydra.launcher.tasks_per_node=2", *args,
                "hydra.sweep.dir=sweep", "hydra.sweep.subdir=two", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    assert_same_run(tmp_path / "one", tmp_path / "sweep" / "two")
    summary = json.loads((tmp_path / "sweep" / "two" / "summary.json").read_text())
    assert summary["cost"]["distributed"]["world_size"] == 2
