"""Every strategy trains one epoch of the synthetic toy and of MultiMNIST on the CPU, in params
and (where it applies) representation space, through the real Hydra composition; a few through
the real CLI in a subprocess."""
from __future__ import annotations

import json
import math

import pytest
import torch

from mtl_bench.strategies import available_strategies, strategy_class
from mtl_bench.train import run_experiment

from conftest import cli, only_run_dir, read_jsonl

SYNTHETIC = ["dataset=synthetic", "dataset.num_samples=300", "dataset.num_val=100", "dataset.num_test=100",
             "trainer.batch_size=50", "trainer.epochs=1", "trainer.device=cpu", "trainer.progress=never"]


def multimnist(root) -> list[str]:
    return ["dataset=multimnist", f"dataset.root={root}", "dataset.val_size=50", "trainer.batch_size=64",
            "trainer.epochs=1", "model.dropout=standard", "trainer.device=cpu", "trainer.progress=never"]


def cases():
    for name in available_strategies():
        cls = strategy_class(name)
        if cls.level == "loss":
            yield name, None
            continue
        for space in ("params", "representation"):
            if space in cls.spaces:
                yield name, space
        if cls.default_space not in ("params", "representation"):
            yield name, cls.default_space


CASES = list(cases())
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared CPU: one intra-op thread avoids oversubscription (100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
IDS = [f"{n}-{s or 'loss'}" for n, s in CASES]


def check_run(summary: dict, run_dir, n_tasks: int, name: str) -> None:
    assert summary["status"] == "completed", summary.get("error")
    assert summary["identity"]["strategy"] == name
    assert summary["cost"]["seconds_per_step_median"] > 0
    records = read_jsonl(run_dir / "metrics.jsonl")
    weights = [r["value"] for r in records if r["split"] == "train" and r["metric"] == "weight"]
    losses = [r["value"] for r in records if r["split"] == "train" and r["metric"] == "loss"]
    assert len(weights) == len(losses) == n_tasks
    assert all(math.isfinite(v) for v in weights + losses)
    for split in ("val", "test"):
        assert summary["final"][split]


@pytest.mark.parametrize("name,space", CASES, ids=IDS)
def test_synthetic_one_epoch(compose, tmp_path, name, space):
    overrides = [*SYNTHETIC, f"strategy={name}"] + ([f"grad.space={space}"] if space else [])
    summary = run_experiment(compose(overrides), tmp_path)
    check_run(summary, tmp_path, 2, name)
    if space:
        assert summary["identity"]["grad_space"] == space


@pytest.mark.parametrize("name,space", CASES, ids=IDS)
def test_multimnist_one_epoch(compose, tmp_path, mnist_root, name, space):
    overrides = [*multimnist(mnist_root), f"strategy={name}"] + ([f"grad.space={space}"] if space else [])
    summary = run_experiment(compose(overrides), tmp_path)
    check_run(summary, tmp_path, 2, name)


@pytest.mark.parametrize("method,weighting", [("pcgrad", "uw"), ("mgda", "dwa"), ("cagrad", "famo"),
                                              ("graddrop", "dtp"), ("db_mtl", "slaw")])
def test_composition_trains(compose, tmp_path, method, weighting):
    summary = run_experiment(compose([*SYNTHETIC, f"strategy={method}", f"strategy.loss_weighting={weighting}"]),
                             tmp_path)
    check_run(summary, tmp_path, 2, method)
    assert summary["identity"]["loss_weighting"] == weighting


def test_composition_with_hyperparameters_trains_uw(compose, tmp_path):
    """UW's log-variances are trained when it is composed (they move away from their start)."""
    import torch

    cfg = compose([*SYNTHETIC, "strategy=pcgrad", "strategy.loss_weighting={name:uw,preset:nash}"])
    summary = run_experiment(cfg, tmp_path)
    assert summary["status"] == "completed"
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["strategy"]
    log_vars = state["weighting.log_vars"]
    assert not torch.allclose(log_vars, torch.zeros_like(log_vars))


def test_cli_synthetic_nash_counts_solver_calls(tmp_path):
    # two epochs: enough steps for grad.method=auto's timed trials (AUTO_TRIALS per path)
    result = cli("run", *SYNTHETIC, "strategy=nash", "trainer.epochs=2", cwd=tmp_path, env=ONE_THREAD, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((only_run_dir(tmp_path / "runs") / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["cost"]["solver_calls"] == summary["steps"] > 0
    assert summary["cost"]["solver_failures"] == 0
    # grad.method=auto timed both paths on the first steps of the batch shape and kept the faster
    auto = summary["cost"]["grad_method_auto"][0]
    assert auto["chosen"] in ("loop", "vmap") and auto["vmap_chunk"] == 2
    assert auto["loop_seconds"] > 0 and auto["vmap_seconds"] > 0
    assert (auto["chosen"] == "vmap") == (auto["vmap_seconds"] < 0.9 * auto["loop_seconds"])  # AUTO_MARGIN


@pytest.mark.parametrize("name", ["mgda", "cagrad", "upgrad"])
def test_solver_strategies_feed_the_cost_block(compose, tmp_path, name):
    summary = run_experiment(compose([*SYNTHETIC, f"strategy={name}"]), tmp_path)
    assert summary["cost"]["solver_calls"] == summary["steps"] > 0
    assert summary["cost"]["solver_failures"] == 0


def test_cli_multimnist_composed(tmp_path, mnist_root):
    result = cli("run", *multimnist(mnist_root), "strategy=imtl", "grad.space=representation",
                 cwd=tmp_path, env=ONE_THREAD, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((only_run_dir(tmp_path / "runs") / "summary.json").read_text())
    assert summary["status"] == "completed"


def test_list_strategies_shows_levels(capsys):
    from mtl_bench.cli import main

    main(["list", "strategies"])
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]
             if line.split() and line.split()[0] in available_strategies()}
    assert set(lines) == set(available_strategies())
    assert " hook " in lines["famo"] and " hook " in lines["dwa"] and " hook " in lines["dtp"]
    assert " gradient " in lines["pcgrad"] and " loss-only " in lines["si"]
    assert "c=0.4" in out and "loss_weighting=None" in out



@pytest.mark.parametrize("name", ["famo", "nash", "db_mtl", "gradvac", "slaw", "dwa"])
def test_resume_restores_the_strategy_state(compose, tmp_path, name):
    """A run stopped after epoch 2 and resumed to epoch 3 ends exactly where an uninterrupted run
    ends (DWA's epoch-3 weights need the two stored epoch means)."""
    def run(epochs, run_dir):
        return run_experiment(compose([*SYNTHETIC, f"strategy={name}", f"trainer.epochs={epochs}"]), run_dir)

    straight = run(3, tmp_path / "straight")
    run(2, tmp_path / "resumed")
    resumed = run(3, tmp_path / "resumed")
    assert resumed["final"] == straight["final"]
    assert resumed["cost"]["solver_calls"] == straight["cost"]["solver_calls"]
