"""Optimisers and schedulers from ``_target_`` nodes (mtl_bench/train/optim.py): the names keep
building exactly what they built before, and a user's class is a config away."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mtl_bench.schemas import TrainerConfig
from mtl_bench.strategies import build_strategy
from mtl_bench.train.optim import build_optimizer, build_scheduler, optimizer_node


def groups(strategy=None):
    model = torch.nn.Linear(3, 2)
    extra = strategy.optimizer_groups() if strategy is not None else []
    return [{"params": list(model.parameters())}] + extra


@pytest.mark.parametrize("config, direct", [
    (TrainerConfig(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4),
     lambda g: torch.optim.SGD(g, lr=0.01, momentum=0.9, weight_decay=1e-4)),
    (TrainerConfig(optimizer="adam", lr=1e-4, momentum=0.9, weight_decay=1e-5),  # momentum: sgd only
     lambda g: torch.optim.Adam(g, lr=1e-4, weight_decay=1e-5)),
    (TrainerConfig(optimizer="adamw", lr=3e-4),
     lambda g: torch.optim.AdamW(g, lr=3e-4, weight_decay=0.0)),
])
def test_named_optimisers_build_what_they_built_before(config, direct):
    strategy = build_strategy("uw", 2, preset="nash")  # its own group at its own lr
    built = build_optimizer(config, groups(strategy))
    expected = direct(groups(build_strategy("uw", 2, preset="nash")))
    assert type(built) is type(expected)
    assert built.state_dict()["param_groups"] == expected.state_dict()["param_groups"]
    assert built.param_groups[1]["lr"] == 0.025 != config.lr


def test_named_schedulers_build_what_they_built_before():
    opt = torch.optim.SGD(groups(), lr=0.1)
    assert build_scheduler(TrainerConfig(scheduler="none"), opt) is None
    step = build_scheduler(TrainerConfig(scheduler="step", step_size=7, gamma=0.3), opt)
    assert isinstance(step, torch.optim.lr_scheduler.StepLR) and (step.step_size, step.gamma) == (7, 0.3)
    cosine = build_scheduler(TrainerConfig(scheduler="cosine", epochs=12), torch.optim.SGD(groups(), lr=0.1))
    assert isinstance(cosine, torch.optim.lr_scheduler.CosineAnnealingLR) and cosine.T_max == 12


def test_a_users_optimiser_and_scheduler_are_target_nodes():
    config = TrainerConfig(lr=0.05, optimizer={"_target_": "torch.optim.RMSprop", "alpha": 0.8},
                           scheduler={"_target_": "torch.optim.lr_scheduler.ExponentialLR", "gamma": 0.9})
    assert optimizer_node(config) == {"_target_": "torch.optim.RMSprop", "lr": 0.05, "alpha": 0.8, "_partial_": True}
    opt = build_optimizer(config, groups())
    assert isinstance(opt, torch.optim.RMSprop) and opt.defaults["lr"] == 0.05 and opt.defaults["alpha"] == 0.8
    scheduler = build_scheduler(config, opt)
    assert isinstance(scheduler, torch.optim.lr_scheduler.ExponentialLR) and scheduler.gamma == 0.9
    own_lr = TrainerConfig(lr=0.05, optimizer={"_target_": "torch.optim.SGD", "lr": 0.2})
    assert build_optimizer(own_lr, groups()).defaults["lr"] == 0.2  # the node's own lr wins


def test_a_target_that_cannot_be_built_is_one_line():
    config = TrainerConfig(optimizer={"_target_": "torch.optim.NoSuchOptimizer"})
    with pytest.raises(ValueError, match=r"^trainer.optimizer._target_=torch.optim.NoSuchOptimizer: module "
                                         r"'torch.optim' has no 'NoSuchOptimizer'$") as err:
        build_optimizer(config, groups())
    assert "\n" not in str(err.value)


def test_the_cli_trains_with_a_users_optimiser(run_cli, tmp_path):
    """examples/my_project/conf/trainer/rmsprop.yaml: a trainer config of the user's own folder."""
    conf = Path(__file__).resolve().parents[1] / "examples" / "my_project" / "conf"
    proc = run_cli("run", "trainer=rmsprop", f"hydra.searchpath=[file://{conf}]", "trainer.epochs=1",
                   "dataset.num_samples=200", "dataset.num_val=50", "dataset.num_test=50", "hydra.run.dir=run",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert "alpha" in state["optimizer"]["param_groups"][0]  # an RMSprop state
    assert state["scheduler"]["gamma"] == 0.5
