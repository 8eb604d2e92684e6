"""SLAW: scaled loss approximate weighting.

Crawshaw & Kosecka, "SLAW: Scaled Loss Approximate Weighting for Efficient Multi-Task Learning",
2021 (arXiv 2109.08218), eq. 6-8: weights inversely proportional to a running estimate of the
standard deviation of each task loss, which approximates GradNorm-style gradient balancing
without per-task gradients.

For each task a running mean ``a_i`` of L_i and ``b_i`` of L_i^2: plain averages over the first
``warmup`` (100) updates, then EMAs with ``beta`` (0.99). ``std_i = sqrt(b_i - a_i^2)``;
``w_i = T (1/max(std_i, eps)) / sum_j (1/max(std_j, eps))`` with eps = 1e-5. The statistics
are updated with the current losses before the weights are computed; w = 1 at the first update,
and a std that is NaN (rounding can make ``b_i - a_i^2`` slightly negative once a loss stops
moving) keeps the previous weights, as the official code does (github.com/mtcrawshaw/meta,
``meta/train/loss.py``: it recomputes only when no std is NaN). ``floor="variance"`` floors the
variance instead: ``1/sqrt(max(b_i - a_i^2, eps))``.
"""
from __future__ import annotations

import torch

from .base import LossWeighting


class SLAW(LossWeighting):
    paper = "Crawshaw & Kosecka 2021, arXiv 2109.08218, eq. 6-8"

    def __init__(self, n_tasks: int, beta: float = 0.99, warmup: int = 100, eps: float = 1e-5,
                 floor: str = "std"):
        super().__init__(n_tasks)
        if floor not in ("std", "variance"):
            raise ValueError(f"strategy.floor={floor!r}: choose 'std' or 'variance'")
        if not 0.0 < beta < 1.0:
            raise ValueError(f"strategy.beta must be in (0, 1), got {beta}")
        self.beta, self.warmup, self.eps, self.floor = float(beta), int(warmup), float(eps), floor
        self.register_buffer("mean", torch.zeros(n_tasks, dtype=torch.float64))
        self.register_buffer("mean_sq", torch.zeros(n_tasks, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("last", torch.ones(n_tasks, dtype=torch.float64))  # the weights of the last update
        self._register_load_state_dict_pre_hook(_ones_when_absent)

    def weights(self, losses, gramian=None):
        L = losses.detach().to(torch.float64)
        self.count.add_(1)
        rate = torch.where(self.count <= self.warmup, 1.0 / self.count.to(torch.float64), 1.0 - self.beta)
        self.mean.add_(rate * (L - self.mean))
        self.mean_sq.add_(rate * (L * L - self.mean_sq))
        var = self.mean_sq - self.mean**2
        if self.floor == "std":
            spread = var.sqrt()  # NaN when rounding makes var slightly negative
            inverse = 1.0 / spread.clamp_min(self.eps)
        else:
            spread = var
            inverse = 1.0 / var.clamp_min(self.eps).sqrt()
        w = self.n_tasks * inverse / inverse.sum()
        w = torch.where(torch.isnan(spread).any(), self.last, w)
        w = torch.where(self.count <= 1, torch.ones_like(w), w)
        self.last.copy_(w)
        return w.to(losses.dtype)


def _ones_when_absent(state_dict, prefix, *args) -> None:
    """A checkpoint written before ``last`` existed resumes with the first update's weights (1)."""
    key = prefix + "last"
    if key not in state_dict and prefix + "count" in state_dict:
        state_dict[key] = torch.ones_like(state_dict[prefix + "mean"])
