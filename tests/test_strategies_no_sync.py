"""The training step reads nothing back to the host: no .item()/int()/bool() of a tensor.

Each such read is an ``aten::_local_scalar_dense`` op in the profiler, on the CPU as on the GPU,
where it would stall the stream. Checked for every strategy in each space it runs in. Host solvers
copy the T x T Gramian once (a device-to-host copy, not a scalar read). Adam keeps its step counter
on the host by design, which reads no GPU tensor but shows up the same on the CPU: reads inside
``Optimizer.step`` are not counted.
"""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from mtl_bench.data import build_benchmark
from mtl_bench.models import build_model
from mtl_bench.strategies import available_strategies, build_strategy, strategy_class
from mtl_bench.train.cost import in_optimizer_step
from mtl_bench.train.gradients import GradientBackend
from mtl_bench.train.trainer import Trainer, TrainerConfig

HOST_READS = {"aten::_local_scalar_dense", "aten::item", "aten::is_nonzero"}


def cases():
    for name in available_strategies():
        cls = strategy_class(name)
        spaces = ["params"] if cls.level == "loss" else [s for s in ("params", "representation") if s in cls.spaces]
        for space in spaces:
            yield name, space, {}
    for distribution in ("uniform", "dirichlet", "bernoulli"):
        yield "rlw", "params", {"distribution": distribution}
    yield "dwa", "params", {"variant": "window", "window": 2}
    yield "gradnorm", "last_shared_layer", {}
    yield "pcgrad", "representation", {"loss_weighting": "uw"}
    yield "graddrop", "representation", {"loss_weighting": "dtp"}
    yield "mgda", "params", {"loss_weighting": "famo"}


CASES = list(cases())


@pytest.mark.parametrize("name, space, hparams", CASES, ids=[f"{n}-{s}-{'-'.join(map(str, h.values())) or 'default'}"
                                                            for n, s, h in CASES])
def test_zoo_training_steps_do_not_sync(compose, tmp_path, name, space, hparams):
    torch.set_num_threads(1)
    cfg = compose(["dataset.num_samples=120", "dataset.num_val=20", "dataset.num_test=20", "model.hidden=16"])
    benchmark = build_benchmark(cfg.dataset, batch_size=20, seed=0)
    model = build_model(cfg.model, benchmark)
    strategy = build_strategy(name, 2, **hparams)
    trainer = Trainer(model, benchmark, strategy, TrainerConfig(), tmp_path, torch.device("cpu"),
                      GradientBackend(space, "loop"))
    batches = list(benchmark.train)[:4]
    trainer.train_step(*batches[0])  # warm-up (first-step state)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for x, targets in batches[1:]:
            trainer.train_step(x, targets)
    reads = [e.name for e in prof.events() if e.name in HOST_READS and not in_optimizer_step(e)]
    assert reads == [], f"{name}: host reads in the training step: {reads}"
