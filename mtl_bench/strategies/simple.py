"""Fixed weightings: equal weighting (EW) and static weights."""
from __future__ import annotations

from typing import Sequence

import torch

from .base import LossWeighting


class EqualWeighting(LossWeighting):
    """Equal weighting, or unitary scalarisation: ``L = sum_i L_i``.

    Kurin et al., "In Defense of the Unitary Scalarization for Deep Multi-Task Learning",
    NeurIPS 2022 (arXiv 2201.04122), eq. 1. ``reduction="mean"`` gives ``(1/T) sum_i L_i``, the
    "uniform scaling" baseline of Sener & Koltun 2018.
    """

    paper = "Kurin et al. 2022, arXiv 2201.04122"

    def __init__(self, n_tasks: int, reduction: str = "sum"):
        super().__init__(n_tasks)
        if reduction not in ("sum", "mean"):
            raise ValueError(f"strategy.reduction={reduction!r}: choose 'sum' or 'mean'")
        self.reduction = reduction

    def weights(self, losses, gramian=None):
        value = 1.0 if self.reduction == "sum" else 1.0 / self.n_tasks
        return torch.full((self.n_tasks,), value, device=losses.device, dtype=losses.dtype)


class StaticWeighting(LossWeighting):
    """Static weights given in the config: ``L = sum_i c_i L_i``.

    A grid of ``c`` over the simplex is the "static sweep" baseline of Xin et al., "Do Current
    Multi-Task Optimization Methods in Deep Learning Even Help?", NeurIPS 2022.
    """

    paper = "Xin et al. 2022 (static sweep)"

    def __init__(self, n_tasks: int, weights: Sequence[float] | None = None):
        super().__init__(n_tasks)
        if weights is None:
            weights = [1.0] * n_tasks
        if not isinstance(weights, (list, tuple)):
            raise ValueError(f"strategy.weights={weights!r} must be a list, one weight per task, "
                             f"e.g. strategy.weights=[{','.join(['1.0'] * n_tasks)}]")
        weights = [float(c) for c in weights]
        if len(weights) != n_tasks:
            raise ValueError(
                f"strategy.weights has {len(weights)} values but there are {n_tasks} tasks; "
                f"give one weight per task, e.g. strategy.weights=[{','.join(['1.0'] * n_tasks)}]"
            )
        if any(c < 0 for c in weights):
            raise ValueError(f"strategy.weights must be non-negative, got {weights}")
        self.register_buffer("c", torch.tensor(weights))

    def weights(self, losses, gramian=None):
        return self.c.to(losses.dtype)
