"""The training step reads nothing back to the host: no .item()/int()/bool() of a tensor.

Each such read is an ``aten::_local_scalar_dense`` op in the profiler, on the CPU as on the GPU,
where it would stall the stream. (Host solvers copy the T x T Gramian once; they are not checked.
Adam keeps its step counter on the host by design, which reads no GPU tensor but shows up the
same on the CPU: reads inside ``Optimizer.step`` are not counted.)
"""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from mtl_bench.data import build_benchmark
from mtl_bench.models import build_model
from mtl_bench.strategies import build_strategy
from mtl_bench.train.gradients import GradientBackend
from mtl_bench.train.trainer import Trainer, TrainerConfig

HOST_READS = {"aten::_local_scalar_dense", "aten::item", "aten::is_nonzero"}


def _inside_optimizer_step(event) -> bool:
    while event is not None:
        if event.name.startswith("Optimizer.step"):
            return True
        event = event.cpu_parent
    return False


@pytest.mark.parametrize("name, space, hparams", [
    ("ew", "params", {}),
    ("uw", "params", {}),
    ("dwa", "params", {"variant": "window", "window": 2}),
    ("gradnorm", "last_shared_layer", {}),
])
def test_training_steps_do_not_sync(compose, tmp_path, name, space, hparams):
    cfg = compose(["dataset.num_samples=300", "dataset.num_val=100", "dataset.num_test=100"])
    benchmark = build_benchmark(cfg.dataset, batch_size=20, seed=0)
    model = build_model(cfg.model, benchmark)
    strategy = build_strategy(name, 2, **hparams)
    trainer = Trainer(model, benchmark, strategy, TrainerConfig(), tmp_path, torch.device("cpu"),
                      GradientBackend(space, "loop"))
    batches = list(benchmark.train)[:8]
    trainer._train_step(*batches[0])  # warm-up (first-step state such as GradNorm's L(0))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for x, targets in batches[1:]:
            losses, weights = trainer._train_step(x, targets)
    reads = [e.name for e in prof.events() if e.name in HOST_READS and not _inside_optimizer_step(e)]
    assert reads == [], f"{name}: host reads in the training step: {reads}"
