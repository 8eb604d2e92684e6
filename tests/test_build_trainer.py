"""One builder of the whole run (mtl_bench.train.experiment.build_trainer) behind `mtl-bench run`,
the Python API and scripts/; the public step/epoch methods; the run's selection in protocol.py."""
import pytest
import torch

from mtl_bench.protocol import check_selection, run_selection
from mtl_bench.train.experiment import build_trainer, run_experiment, seed_everything

SMALL = ["dataset.num_samples=300", "dataset.num_val=100", "dataset.num_test=100", "trainer.batch_size=50"]


def test_a_built_trainer_driven_by_its_public_methods_is_the_run(compose, tmp_path):
    cfg = compose(["strategy=mgda", "trainer.epochs=2", "trainer.checkpoint=false", *SMALL])
    whole = run_experiment(cfg, tmp_path / "run")
    seed_everything(cfg.seed)
    (tmp_path / "built").mkdir()  # fit() makes the run folder; here the test drives the epochs itself
    trainer = build_trainer(cfg, tmp_path / "built", torch.device("cpu"))
    assert trainer.identity == whole["identity"]
    for _ in range(2):
        trainer.train_epoch()
        trainer.end_epoch()
    assert trainer.history[2]["test"] == whole["final"]["test"]
    assert trainer.strategy.stats()["solver_calls"] == whole["cost"]["solver_calls"] == whole["steps"]


def test_train_step_returns_the_task_losses_and_weights(compose, tmp_path):
    cfg = compose(["strategy=uw", *SMALL])
    trainer = build_trainer(cfg, tmp_path, torch.device("cpu"))
    x, targets = trainer.to_device(*next(iter(trainer.benchmark.train)))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    losses, weights = trainer.train_step(x, targets)
    assert losses.shape == weights.shape == (2,) and torch.isfinite(losses).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


DIRECTIONS = {"a": {"acc": True, "loss": False}, "b": {"acc": True, "loss": False}}
HISTORY = {1: {"train": {}, "val": {"a": {"acc": 0.5}, "b": {"acc": 0.7}}},
           2: {"train": {}, "val": {"a": {"acc": 0.8}, "b": {"acc": 0.6}}},
           3: {"train": {}, "val": {"a": {"acc": 0.6}, "b": {"acc": 0.6}}}}


def test_run_selection_picks_the_best_epoch_of_the_named_metric():
    best = run_selection({"rule": "best", "split": "val", "metric": "mean/acc"}, HISTORY, DIRECTIONS)
    assert best["epochs"] == [2] and best["metrics"]["val"]["a"]["acc"] == 0.8 and "train" not in best["metrics"]
    assert run_selection({"rule": "best", "split": "val", "metric": "b/acc"}, HISTORY, DIRECTIONS)["epochs"] == [1]
    assert run_selection({"rule": "last"}, HISTORY, DIRECTIONS)["epochs"] == [3]
    assert run_selection({"rule": "mean_last_k", "k": 2}, HISTORY, DIRECTIONS)["metrics"]["val"]["a"]["acc"] == 0.7
    assert run_selection({"rule": "delta_m"}, HISTORY, DIRECTIONS)["epochs"] == []


def test_check_selection_refuses_what_the_benchmark_cannot_give():
    check_selection({"rule": "best", "split": "val", "metric": "a/acc"}, ["val", "test"], DIRECTIONS)
    check_selection({"rule": "last", "split": "nosuch"}, ["test"], DIRECTIONS)  # only `best` names a split
    with pytest.raises(ValueError, match="protocol.selection.split='val'.*no 'val' split"):
        check_selection({"rule": "best", "split": "val", "metric": "a/acc"}, ["test"], DIRECTIONS)
    with pytest.raises(ValueError, match="protocol.selection.metric='c/acc'"):
        check_selection({"rule": "best", "split": "val", "metric": "c/acc"}, ["val"], DIRECTIONS)
