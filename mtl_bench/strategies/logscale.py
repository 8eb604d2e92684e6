"""Scale-invariant and geometric-mean loss combinations (loss-only, one backward pass).

* ``si``: ``L = sum_i log L_i``, invariant to rescaling any task loss; the gradient is
  ``sum_i grad L_i / L_i``. Used as the "SI" baseline of Navon et al., "Multi-Task Learning as a
  Bargaining Game", ICML 2022 (arXiv 2202.01017), section 6.
* ``gls``: geometric loss strategy, ``L = (prod_i L_i)^(1/T)``; Chennupati et al., "MultiNet++:
  Multi-Stream Feature Aggregation and Geometric Loss Strategy for Multi-Task Learning", CVPR
  Workshops 2019 (arXiv 1904.08492), eq. 2. Its gradient is ``sum_i (L / (T L_i)) grad L_i``.

The logged weights are the effective factors ``dL/dL_i`` of each task loss (1/L_i and
L/(T L_i)). Neither has hyper-parameters; a zero loss makes the log infinite and the trainer
marks the run diverged, as the formulas dictate.
"""
from __future__ import annotations

import torch

from .base import LossWeighting


class ScaleInvariant(LossWeighting):
    paper = "Navon et al. ICML 2022 (SI baseline), arXiv 2202.01017"

    def combine(self, losses):
        return torch.log(losses).sum(), (1.0 / losses).detach()

    def weights(self, losses, gramian=None):
        return 1.0 / losses


class GeometricLoss(LossWeighting):
    paper = "Chennupati et al. CVPRW 2019, arXiv 1904.08492, eq. 2"

    def combine(self, losses):
        total = torch.exp(torch.log(losses).mean())
        return total, (total / (self.n_tasks * losses)).detach()

    def weights(self, losses, gramian=None):
        """``d total / d L_i = total / (T L_i)``, the gradient weight of each loss in ``combine``."""
        return (torch.exp(torch.log(losses).mean()) / (self.n_tasks * losses)).detach()
