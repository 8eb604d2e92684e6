"""Trainer behaviour: resume after a crash, divergence, completed runs, selection, a stop's record."""
import json
import os
import signal

import pytest
import torch

from mtl_bench.train import run_experiment
from mtl_bench.train.signals import Interrupted
from mtl_bench.train.trainer import Trainer

SMALL = ["dataset.num_samples=300", "dataset.num_val=100", "dataset.num_test=100", "trainer.batch_size=50",
         "trainer.log_interval=2"]


def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize("strategy", ["ew", "gradnorm", "dwa"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(compose, tmp_path, monkeypatch, strategy):
    cfg = compose([f"strategy={strategy}", "trainer.epochs=3", *SMALL])
    whole = run_experiment(cfg, tmp_path / "whole")

    original = Trainer.end_epoch
    def crash_after_second_epoch(self):
        original(self)
        if self.epoch == 2:
            raise RuntimeError("killed")
    monkeypatch.setattr(Trainer, "end_epoch", crash_after_second_epoch)
    with pytest.raises(RuntimeError, match="killed"):
        run_experiment(cfg, tmp_path / "resumed")
    assert summary(tmp_path / "resumed")["status"] == "failed"
    monkeypatch.setattr(Trainer, "end_epoch", original)
    resumed = run_experiment(cfg, tmp_path / "resumed")

    assert resumed["status"] == "completed" and resumed["epochs_completed"] == 3
    assert resumed["final"] == whole["final"]
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((tmp_path / "whole" / "metrics.jsonl").read_text().splitlines())


def test_metrics_of_an_unfinished_epoch_are_dropped_on_resume(compose, tmp_path):
    cfg = compose(["trainer.epochs=2", *SMALL])
    run_experiment(cfg, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    # pretend the run was killed while writing epoch 2: the checkpoint still says epoch 1
    state.update(epoch=1, history={1: state["history"][1]})
    torch.save(state, tmp_path / "checkpoint.pt")
    data = summary(tmp_path)
    data["status"] = "running"
    (tmp_path / "summary.json").write_text(json.dumps(data))
    result = run_experiment(cfg, tmp_path)
    epochs = [json.loads(l)["epoch"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert result["status"] == "completed" and epochs.count(2) == epochs.count(1)


def test_completed_run_is_not_trained_again(compose, tmp_path):
    cfg = compose(["trainer.epochs=1", *SMALL])
    first = run_experiment(cfg, tmp_path)
    second = run_experiment(cfg, tmp_path)
    assert second["updated_at"] == first["updated_at"]


def test_nan_loss_marks_the_run_diverged_and_keeps_history(compose, tmp_path, monkeypatch):
    cfg = compose(["trainer.epochs=3", *SMALL])
    original = Trainer.train_step
    def poisoned(self, x, targets):
        losses, weights = original(self, x, targets)
        if self.epoch == 1 and self.step >= 6:  # 4 steps per epoch: steps 7 and 8
            losses = losses * float("nan")
        return losses, weights
    monkeypatch.setattr(Trainer, "train_step", poisoned)
    result = run_experiment(cfg, tmp_path)
    assert result["status"] == "diverged" and result["diverged_at_step"] == 7
    assert result["epochs_completed"] == 1
    records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r["epoch"] == 1 and r["split"] == "test" for r in records)


def test_best_epoch_selection_uses_validation(compose, tmp_path, mnist_root):
    cfg = compose(["dataset=multimnist", f"dataset.root={mnist_root}", "dataset.val_size=50",
                   "trainer.epochs=2", "trainer.batch_size=64"])
    result = run_experiment(cfg, tmp_path)
    sel = result["selected"]
    assert sel["split"] == "val" and sel["metric"] == "mean/accuracy" and len(sel["epochs"]) == 1
    history = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    def val_mean(epoch):
        vals = [r["value"] for r in history if r["epoch"] == epoch and r["split"] == "val" and r["metric"] == "accuracy"]
        return sum(vals) / len(vals)
    best = max([1, 2], key=lambda e: (val_mean(e), -e))
    assert sel["epochs"] == [best]


def test_resuming_with_other_settings_is_refused(compose, tmp_path):
    from mtl_bench.train.checkpoint import CheckpointError

    run_experiment(compose(["trainer.epochs=1", *SMALL]), tmp_path)
    with pytest.raises(CheckpointError, match=r"trainer.lr: 0.001 -> 0.5"):
        run_experiment(compose(["trainer.epochs=2", "trainer.lr=0.5", *SMALL]), tmp_path)


def test_a_completed_run_can_be_extended(compose, tmp_path):
    whole = run_experiment(compose(["trainer.epochs=3", *SMALL]), tmp_path / "whole")
    run_experiment(compose(["trainer.epochs=2", *SMALL]), tmp_path / "extended")
    extended = run_experiment(compose(["trainer.epochs=3", *SMALL]), tmp_path / "extended")
    assert extended["epochs_completed"] == 3 and extended["final"] == whole["final"]


def test_best_selection_without_a_validation_split_is_refused_before_training(compose, tmp_path, mnist_root):
    cfg = compose(["dataset=multimnist", f"dataset.root={mnist_root}", "dataset.val_size=0", "trainer.epochs=1",
                   "trainer.batch_size=64"])
    with pytest.raises(ValueError, match="no 'val' split"):
        run_experiment(cfg, tmp_path)
    cfg = compose(["trainer.epochs=1", *SMALL, "protocol=best_val_accuracy"])
    with pytest.raises(ValueError, match="protocol.selection.metric='mean/accuracy'"):
        run_experiment(cfg, tmp_path)


def _stop_after_the_first_epoch(monkeypatch, then):
    """Epoch 1 ends with ``then(self)`` (a signal or an error); ``Trainer._write_summary`` is wrapped
    to record what it is asked to write."""
    original_end, original_write = Trainer.end_epoch, Trainer._write_summary
    asked = []

    def end_epoch(self):
        original_end(self)
        if self.epoch == 1:
            then(self)

    def write_summary(self, status, **extra):
        asked.append(status)
        if status in ("interrupted", "failed"):  # a signal arrives while the outcome is being written
            os.kill(os.getpid(), signal.SIGINT)
        return original_write(self, status, **extra)

    monkeypatch.setattr(Trainer, "end_epoch", end_epoch)
    monkeypatch.setattr(Trainer, "_write_summary", write_summary)
    return asked


def test_a_stop_signal_repeated_while_the_stop_is_written_is_ignored(compose, tmp_path, monkeypatch):
    """Ctrl-C reaches a rank of a distributed run twice (terminal and launcher): the second one
    must not cut the writing of the interrupted summary short (it stayed ``running``)."""
    _stop_after_the_first_epoch(monkeypatch, lambda self: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt) as stop:
        run_experiment(compose(["trainer.epochs=3", *SMALL]), tmp_path)
    assert type(stop.value) is Interrupted and stop.value.signum == signal.SIGINT
    assert summary(tmp_path)["status"] == "interrupted" and summary(tmp_path)["signal"] == "SIGINT"
    assert summary(tmp_path)["epochs_completed"] == 1


def test_an_error_overtaken_by_a_stop_signal_marks_the_run_interrupted(compose, tmp_path, monkeypatch):
    """A rank's collective fails because its peer stopped first, and the rank's own stop signal is
    handled only while the failure is being written: the run stopped, so it is marked interrupted."""
    def peer_gone(self):
        raise RuntimeError("Connection closed by peer")

    asked = _stop_after_the_first_epoch(monkeypatch, peer_gone)
    with pytest.raises(KeyboardInterrupt) as stop:
        run_experiment(compose(["trainer.epochs=3", *SMALL]), tmp_path)
    assert type(stop.value) is Interrupted and stop.value.signum == signal.SIGINT
    assert asked[-2:] == ["failed", "interrupted"]
    assert summary(tmp_path)["status"] == "interrupted" and "error" not in summary(tmp_path)
