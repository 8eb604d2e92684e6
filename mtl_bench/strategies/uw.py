"""Uncertainty weighting (UW).

Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry
and Semantics", CVPR 2018 (arXiv 1705.07115), eq. 7 with ``s_i = log sigma_i^2``:

    L = sum_i ( exp(-s_i) L_i + s_i ) / 2                      (form="regression", default)
    L = sum_i   exp(-s_i) L_i + s_i / 2                        (form="classification", eq. 10;
                                                                unverified option)

Presets of the public code (docs/strategies.md#uw): ``"mtan"`` starts at s_0 = -0.5 and trains s
with the model's optimiser and learning rate; ``"nash"`` starts at s_0 = 0 and trains s in its own
parameter group at lr 0.025 (a group of the model's optimiser: Adam as in the Nash-MTL code when
the trainer's optimiser is Adam, as on NYUv2). ``init``/``lr`` override the preset. Logged weights are the
effective factors of L_i (exp(-s_i)/2 in the regression form).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import LossWeighting

PRESETS = {"mtan": {"init": -0.5, "lr": None}, "nash": {"init": 0.0, "lr": 0.025}}


class UncertaintyWeighting(LossWeighting):
    paper = "Kendall et al. CVPR 2018, arXiv 1705.07115, eq. 7"

    def __init__(self, n_tasks: int, preset: str = "mtan", init: float | None = None,
                 lr: float | None = None, form: str = "regression"):
        super().__init__(n_tasks)
        if preset not in PRESETS:
            raise ValueError(f"strategy.preset={preset!r}: choose one of {sorted(PRESETS)}")
        if form not in ("regression", "classification"):
            raise ValueError(f"strategy.form={form!r}: choose 'regression' or 'classification'")
        self.form = form
        self.lr = PRESETS[preset]["lr"] if lr is None else float(lr)
        init = PRESETS[preset]["init"] if init is None else float(init)
        self.log_vars = nn.Parameter(torch.full((n_tasks,), init))

    def _factor(self) -> torch.Tensor:
        """Each task loss's factor: ``exp(-s) / 2`` (regression form) or ``exp(-s)``."""
        s = self.log_vars
        return torch.exp(-s) / 2 if self.form == "regression" else torch.exp(-s)

    def combine(self, losses):
        factor = self._factor()
        total = (factor * losses + self.log_vars / 2).sum()
        return total, factor.detach()

    def weights(self, losses, gramian=None):
        return self._factor().detach()

    def optimizer_groups(self):
        group = {"params": [self.log_vars], "weight_decay": 0.0}
        if self.lr is not None:
            group["lr"] = self.lr
        return [group]
