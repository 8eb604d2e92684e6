"""Dynamic task prioritisation (DTP), task-level focal weighting.

Guo, Haque, Huang, Yeung & Fei-Fei, "Dynamic Task Prioritization for Multitask Learning",
ECCV 2018, eq. 5 (task-level): ``w_i = -(1 - k_i)^gamma log k_i`` and ``L = sum_i w_i L_i``, where
``k_i`` is a moving average of task i's key performance indicator (KPI) in (0, 1): harder tasks
(low KPI) get larger weights. The paper's example-level focal loss is out of scope.

The trainer feeds one KPI per task and step (``needs_kpi``; computed on the device from the
batch predictions by the task's ``kpi``: batch accuracy for classification; ``exp(-MSE/scale)``
for regression, our choice since the paper only treats classification/detection KPIs).
``k <- ema k + (1 - ema) kpi``, initialised with the first batch's KPI; it is updated before the
step's weights are computed, clamped to [eps, 1 - eps] and detached.

Defaults (the paper does not state all of them; docs/strategies.md#dtp says which are ours): gamma = 1,
ema = 0.9 (weight of the history), eps = 1e-4.
"""
from __future__ import annotations

import torch

from .base import LossWeighting


class DynamicTaskPrioritization(LossWeighting):
    paper = "Guo et al. ECCV 2018, eq. 5 (task-level focal weighting)"
    needs_kpi = True

    def __init__(self, n_tasks: int, gamma: float = 1.0, ema: float = 0.9, eps: float = 1e-4):
        super().__init__(n_tasks)
        if gamma < 0:
            raise ValueError(f"strategy.gamma must be >= 0, got {gamma}")
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"strategy.ema must be in [0, 1), got {ema}")
        if not 0.0 < eps < 0.5:
            raise ValueError(f"strategy.eps must be in (0, 0.5), got {eps}")
        self.gamma, self.ema, self.eps = float(gamma), float(ema), float(eps)
        self.register_buffer("kpi", torch.full((n_tasks,), 0.5))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    def feed_kpi(self, kpis):
        kpis = kpis.detach().to(self.kpi.dtype)
        updated = self.ema * self.kpi + (1.0 - self.ema) * kpis
        self.kpi.copy_(torch.where(self.started, updated, kpis))
        self.started.fill_(True)

    def weights(self, losses, gramian=None):
        k = self.kpi.clamp(self.eps, 1.0 - self.eps)
        return (-(1.0 - k) ** self.gamma * torch.log(k)).to(losses.dtype)
