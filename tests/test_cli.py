"""The command line as a user runs it: subprocesses, real Hydra composition, real run dirs."""
import json

import pytest
import torch

from conftest import only_run_dir, read_jsonl

SMALL = ["dataset.num_samples=300", "dataset.num_val=100", "dataset.num_test=100", "trainer.batch_size=50"]


def test_default_run_writes_the_run_dir_contract(run_cli, tmp_path):
    proc = run_cli("run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(tmp_path / "runs")
    assert (run_dir / ".hydra" / "config.yaml").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["identity"]["dataset"] == "synthetic" and summary["identity"]["strategy"] == "ew"
    assert summary["identity"]["tasks"] == ["task0", "task1"] and summary["identity"]["seed"] == 0
    assert summary["epochs_completed"] == summary["epochs"] == 20
    for task in ("task0", "task1"):
        assert summary["final"]["test"][task]["normalized_loss"] > 0
    assert summary["selected"]["rule"] == "last" and summary["selected"]["epochs"] == [20]
    cost = summary["cost"]
    assert cost["seconds_per_step_median"] > 0 and cost["peak_memory_mb"] > 0
    assert cost["encoder_backward_passes_per_step"] == 1.0 and cost["solver_failures"] == 0
    assert set(summary["versions"]) >= {"mtl_bench", "torch", "hydra", "python"}

    records = read_jsonl(run_dir / "metrics.jsonl")
    assert all(set(r) == {"epoch", "step", "split", "task", "metric", "value"} for r in records)
    kinds = {(r["split"], r["metric"]) for r in records}
    assert {("train", "loss"), ("train", "weight"), ("val", "mse"), ("test", "normalized_loss"),
            ("train_step", "weight")} <= kinds
    assert sorted({r["epoch"] for r in records}) == list(range(1, 21))

    state = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert {"model", "optimizer", "strategy", "rng", "epoch", "train_loader"} <= set(state)
    assert state["epoch"] == 20


def test_multirun_gives_one_complete_run_dir_per_strategy(run_cli, tmp_path):
    proc = run_cli("run", "-m", "strategy=ew,uw,dwa,gradnorm,mgda", "trainer.epochs=2", *SMALL, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "multirun").rglob("summary.json")]
    assert sorted(s["identity"]["strategy"] for s in summaries) == ["dwa", "ew", "gradnorm", "mgda", "uw"]
    assert all(s["status"] == "completed" and s["epochs_completed"] == 2 for s in summaries)
    spaces = {s["identity"]["strategy"]: s["identity"]["grad_space"] for s in summaries}
    assert spaces["gradnorm"] == "last_shared_layer" and spaces["mgda"] == "representation"
    weights = {s["identity"]["strategy"]: s for s in summaries}
    assert weights["mgda"]["cost"]["solver_calls"] > 0


def test_multimnist_run_and_single_task_baseline(run_cli, tmp_path, mnist_root):
    args = ["dataset=multimnist", f"dataset.root={mnist_root}", "dataset.val_size=50", "trainer.epochs=1",
            "trainer.batch_size=64"]
    proc = run_cli("run", *args, "strategy=mgda", "grad.space=params", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((only_run_dir(tmp_path / "runs") / "summary.json").read_text())
    assert set(summary["final"]["test"]) == {"left", "right"}
    assert summary["identity"]["grad_space"] == "params"
    assert summary["selected"]["rule"] == "best" and summary["selected"]["split"] == "val"
    assert summary["cost"]["encoder_backward_passes_per_step"] == 2.0

    proc = run_cli("run", *args, "dataset.tasks=[left]", "hydra.run.dir=stl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "stl" / "summary.json").read_text())
    assert list(summary["final"]["test"]) == ["left"] and summary["identity"]["tasks"] == ["left"]


@pytest.mark.parametrize("override, message", [
    ("trainer.epocs=3", "trainer.epocs is not a key of trainer: did you mean trainer.epochs?"),
    ("strategy=gradnorn", "Could not find 'strategy/gradnorn'"),
    ("grad.space=weights", "grad.space='weights'"),
    ("dataset.tasks=[task7]", "unknown task"),
])
def test_bad_overrides_give_a_clear_message_without_traceback(run_cli, tmp_path, override, message):
    proc = run_cli("run", override, "trainer.epochs=1", *SMALL, cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_dataset_names_expected_files(run_cli, tmp_path):
    proc = run_cli("run", "dataset=multimnist", f"dataset.root={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "train-images-idx3-ubyte" in proc.stderr and "dataset.download=true" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_sweep_without_its_data_is_refused_once_before_any_job(run_cli, tmp_path, mnist_root):
    """Every job of the sweep shares the missing MNIST: one error, exit 2, no job started and no
    sweep folder left; with the data there, the check lets the sweep through."""
    from omegaconf import OmegaConf

    from mtl_bench.data import missing_files

    proc = run_cli("run", "-m", "dataset=multimnist", "strategy=ew,uw", "seed=0,1",
                   f"dataset.root={tmp_path / 'nowhere'}", "hydra.sweep.dir=sweep/inner", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("MNIST not found") == 1 and "no job of the sweep was started" in proc.stderr
    assert "Launching" not in proc.stdout + proc.stderr and not (tmp_path / "sweep").exists()
    cfg = OmegaConf.create({"name": "multimnist", "root": str(mnist_root), "download": False})
    assert missing_files(cfg) == ""
    assert "MNIST not found" in missing_files(OmegaConf.merge(cfg, {"root": str(tmp_path / "nowhere")}))
    assert missing_files(OmegaConf.merge(cfg, {"root": str(tmp_path / "nowhere"), "download": True})) == ""


def test_only_a_sweep_whose_jobs_share_their_data_is_checked_before_it_starts():
    """Keys whose sweep may give jobs different data (the dataset, its root, an experiment) turn
    the check off; the others (seeds, strategies, a task subset) leave it on."""
    from omegaconf import OmegaConf

    from mtl_bench.cli import DATA_KEYS
    from mtl_bench.report.plans import swept_keys

    hydra = OmegaConf.create({"sweeper": {"params": {"seed": "0,1,2", "trainer.lr": "1e-3"}},
                              "overrides": {"task": ["strategy=ew,uw", "dataset.tasks=[left],[right]", "x=1"]}})
    assert swept_keys(hydra) == {"seed", "strategy", "dataset.tasks"} and not swept_keys(hydra) & set(DATA_KEYS)
    hydra.overrides.task.append("+experiment=a,b")
    assert swept_keys(hydra) & set(DATA_KEYS) == {"experiment"}


def test_a_slurm_sweep_is_not_refused_for_data_this_machine_lacks(tmp_path):
    """A cluster's nodes may mount data the submitting machine does not see."""
    from omegaconf import OmegaConf

    from mtl_bench.cli import _missing_sweep_data

    config = OmegaConf.create({
        "hydra": {"launcher": {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"},
                  "sweeper": {"params": None}, "overrides": {"task": ["seed=0,1"]}},
        "dataset": {"name": "multimnist", "root": str(tmp_path / "nowhere"), "download": False}})
    assert "MNIST not found" in _missing_sweep_data(config)
    config.hydra.launcher._target_ = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert _missing_sweep_data(config) == ""


def test_help_and_list(run_cli, tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0 and "run -m" in proc.stdout
    proc = run_cli("list", cwd=tmp_path)
    assert proc.returncode == 0
    for word in ("strategies", "mgda", "gradnorm", "Sener", "datasets", "multimnist", "models", "multilenet"):
        assert word in proc.stdout
    proc = run_cli("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "strategy:" in proc.stdout
    proc = run_cli("frobnicate", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown command" in proc.stderr


def test_installed_wheel_ships_its_configs(tmp_path):
    """Build the wheel, install it into a bare folder, and run from there (no clone on the path)."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    *map(str, wheels.glob("*.whl"))], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", "import mtl_bench.cli as c; print(c.config_dir())"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(site / "mtl_bench" / "configs")
    proc = subprocess.run([sys.executable, "-m", "mtl_bench", "run", "trainer.epochs=1", *SMALL], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert only_run_dir(tmp_path / "runs")
