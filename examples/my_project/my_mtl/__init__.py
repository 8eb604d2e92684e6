"""A user's own multi-task pieces, outside mtl-bench: two strategies, a model and a data loader.

Each is named by its dotted path in a config of this project's conf/ folder (``_target_``), so
``mtl-bench run strategy=softmax_loss hydra.searchpath=[file://conf]`` runs it beside the zoo.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mtl_bench.data import Benchmark, TensorBatches
from mtl_bench.data.tasks import classification_task, regression_task
from mtl_bench.models import MultiTaskModel
from mtl_bench.strategies import GradientWeighting, LossWeighting


class SoftmaxLossWeighting(LossWeighting):
    """Loss-only: weights T * softmax(L_i / temperature) on the detached losses, so the task that
    is behind gets more weight (a toy rule for this example)."""

    paper = "example: softmax of the losses"

    def __init__(self, n_tasks: int, temperature: float = 1.0):
        super().__init__(n_tasks)
        if temperature <= 0:
            raise ValueError(f"strategy.temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def weights(self, losses, gramian=None):
        return self.n_tasks * torch.softmax(losses.detach() / self.temperature, dim=0)


class UnitGradientWeighting(GradientWeighting):
    """From the Gramian: every task gradient scaled to unit norm, w_i = 1 / ||g_i|| (times
    ``scale``), so no task dominates the shared update by the size of its gradient."""

    paper = "example: normalised gradients"
    default_space = "representation"

    def __init__(self, n_tasks: int, scale: float = 1.0):
        super().__init__(n_tasks)
        self.scale = float(scale)

    def weights(self, losses, gramian):
        return self.scale / gramian.diagonal().clamp_min(1e-12).sqrt()


def build_small_mlp(benchmark, hidden: int = 64, depth: int = 2) -> MultiTaskModel:
    """An MLP encoder on the flattened input, one linear head per task with the task's output size."""
    sizes = benchmark.info["outputs"]
    layers, width = [nn.Flatten()], benchmark.info["input_dim"]
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    encoder = nn.Sequential(*layers)
    heads = {task: nn.Linear(hidden, sizes[task]) for task in benchmark.task_names}
    return MultiTaskModel(encoder, heads, last_shared_layer=layers[-2])


def load_npz(path: str, batch_size: int, seed: int, val_fraction: float = 0.2) -> Benchmark:
    """``path``: an .npz with ``x`` (inputs), ``digit`` (class labels), ``size`` (a real number) and
    ``test`` (a boolean mask of test rows); validation rows are carved from the rest with ``seed``."""
    data = np.load(path)
    x = torch.as_tensor(data["x"], dtype=torch.float32)
    targets = {"digit": torch.as_tensor(data["digit"], dtype=torch.long),
               "size": torch.as_tensor(data["size"], dtype=torch.float32).reshape(-1, 1)}
    test = torch.as_tensor(data["test"], dtype=torch.bool)
    rest = torch.nonzero(~test).flatten()
    rest = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed))]
    n_val = int(round(val_fraction * len(rest)))
    parts = {"val": rest[:n_val], "train": rest[n_val:], "test": torch.nonzero(test).flatten()}

    def batches(split):
        index = parts[split]
        return TensorBatches(x[index], {k: v[index] for k, v in targets.items()}, batch_size,
                             shuffle=split == "train", seed=seed)

    tasks = [classification_task("digit"), regression_task("size")]
    return Benchmark("toy_npz", tasks, batches("train"), batches("val"), batches("test"),
                     info={"input_dim": x.shape[1], "outputs": {"digit": int(targets["digit"].max()) + 1, "size": 1}})
