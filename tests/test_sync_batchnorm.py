"""``trainer.distributed.sync_batchnorm``: SyncBatchNorm for encoders with batch norm (issue 14).

torch's SyncBatchNorm normalises CUDA inputs only, so these CPU tests check the conversion by
module types (no forward), the one-line refusal of a distributed CPU run asking for it, and that
without the option (or with one process) the model is left as it is.
"""
from __future__ import annotations

import torch
from torch import nn

from conftest import cli
from mtl_bench.models import MultiTaskModel
from mtl_bench.models.segnet import build_segnet
from mtl_bench.train import distributed

SYNTHETIC = ["dataset=synthetic", "dataset.num_samples=100", "dataset.num_val=20", "dataset.num_test=20",
             "trainer.batch_size=20", "trainer.epochs=1", "trainer.device=cpu", "trainer.progress=never"]


def batchnorm_model(benchmark, hidden: int = 8, layers: int = 1, activation: str = "relu") -> MultiTaskModel:
    """A model of the synthetic problem whose encoder has batch norm (``model._target_``; the
    mlp node's keys are passed too)."""
    width = 8
    encoder = nn.Sequential(nn.Linear(benchmark.info["input_dim"], width), nn.BatchNorm1d(width), nn.ReLU())
    outputs = benchmark.info.get("outputs") or {t: benchmark.info["output_dim"] for t in benchmark.task_names}
    return MultiTaskModel(encoder, {t: nn.Linear(width, outputs[t]) for t in benchmark.task_names})


def kinds(model: nn.Module) -> dict[str, type]:
    return {name: type(m) for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def test_the_batchnorm_layers_of_segnet_become_syncbatchnorm_with_the_same_tensors():
    model = build_segnet({"segmentation": 13, "depth": 1})
    before = kinds(model)
    params = dict(model.named_parameters())
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    assert before and all(kind is nn.BatchNorm2d for kind in before.values())
    converted = distributed.sync_batchnorm(model)
    after = kinds(converted)
    assert after.keys() == before.keys() and all(kind is nn.SyncBatchNorm for kind in after.values())
    # the very parameters an optimiser built before holds, and the same running statistics
    assert all(p is params[name] for name, p in converted.named_parameters())
    assert all(torch.equal(b, buffers[name]) for name, b in converted.named_buffers())
    layer = next(m for m in converted.modules() if isinstance(m, nn.SyncBatchNorm))
    assert layer.momentum == 0.1 and layer.eps == 1e-5 and layer.affine and layer.track_running_stats


def test_a_distributed_cpu_run_asking_for_it_is_refused_in_one_line(tmp_path):
    out = cli("run", *SYNTHETIC, "trainer.distributed.nproc=2", "trainer.distributed.sync_batchnorm=true",
              "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    (line,) = [l for l in out.stderr.splitlines() if l.startswith("mtl-bench: error:")]
    assert "trainer.distributed.sync_batchnorm=true needs CUDA" in line and "on cpu" in line
    assert "set trainer.distributed.sync_batchnorm=false" in line
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_the_refusal_covers_a_joined_group_and_only_a_distributed_cpu_run():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    for refused in [(True, cpu, 2, False), (True, cpu, 1, True)]:
        try:
            distributed.check_sync_batchnorm(*refused)
        except ValueError as err:
            assert "trainer.distributed.sync_batchnorm=true" in str(err)
        else:
            raise AssertionError(f"{refused} was accepted")
    for accepted in [(False, cpu, 2, False), (False, cpu, 1, True), (True, cpu, 1, False), (True, cuda, 2, False)]:
        distributed.check_sync_batchnorm(*accepted)


def _models_handed_to_the_trainer(monkeypatch, compose, tmp_path, overrides) -> list[nn.Module]:
    """The models run_experiment builds for a run of a 1-rank gloo group (no training: the
    Trainer is replaced by one that keeps the model; the CPU refusal is lifted to reach it)."""
    import torch.distributed as dist

    from mtl_bench.train import experiment

    seen = []

    class Keep:
        def __init__(self, model, *args, **kwargs):
            seen.append(model)

        def fit(self):
            return {"status": "kept"}

    monkeypatch.setattr(experiment, "Trainer", Keep)
    monkeypatch.setattr(distributed, "check_sync_batchnorm", lambda *args: None)
    cfg = compose([*SYNTHETIC, f"+model._target_={__name__}.batchnorm_model", *overrides])
    tmp_path.mkdir(parents=True)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        experiment.run_experiment(cfg, tmp_path / "run")
    finally:
        dist.destroy_process_group()
    return seen


def test_a_distributed_run_converts_only_with_the_option(monkeypatch, compose, tmp_path):
    (plain,) = _models_handed_to_the_trainer(monkeypatch, compose, tmp_path / "a", [])
    assert set(kinds(plain).values()) == {nn.BatchNorm1d}
    (synced,) = _models_handed_to_the_trainer(monkeypatch, compose, tmp_path / "b",
                                              ["trainer.distributed.sync_batchnorm=true"])
    assert set(kinds(synced).values()) == {nn.SyncBatchNorm}


def test_the_option_is_off_by_default(compose):
    assert compose([]).trainer.distributed.sync_batchnorm is False
