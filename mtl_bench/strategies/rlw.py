"""Random loss weighting (RLW).

Lin, Ye, Xu, Shi & Zhang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
Multi-Task Learning", TMLR 2022 (arXiv 2111.10603), eq. 3: each step draws fresh weights
``lambda = f(lambda_tilde)`` that sum to 1, and ``L = sum_i lambda_i L_i``.

``distribution`` (the paper's section 3 variants):

* ``normal`` (default): ``softmax(eps)``, ``eps ~ N(0, I)``;
* ``uniform``: ``softmax(eps)``, ``eps ~ U(0, 1)^T``;
* ``dirichlet``: ``lambda ~ Dirichlet(alpha 1)`` (``alpha = 1``: uniform on the simplex);
* ``bernoulli``: ``b_i ~ Bernoulli(1/2)``, ``lambda = b / sum b``; a draw of all zeros is
  replaced by one task chosen uniformly (the "constrained Bernoulli" of the paper: at least one
  task is trained every step).

Draws use torch's global generator on the loss's device (seeded by ``seed``, restored on
resume), so they are reproducible and need no host sync.
"""
from __future__ import annotations

import torch

from .base import LossWeighting

DISTRIBUTIONS = ("normal", "uniform", "dirichlet", "bernoulli")


class RandomLossWeighting(LossWeighting):
    paper = "Lin et al. TMLR 2022, arXiv 2111.10603, eq. 3"

    def __init__(self, n_tasks: int, distribution: str = "normal", alpha: float = 1.0):
        super().__init__(n_tasks)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"strategy.distribution={distribution!r}: choose one of {', '.join(DISTRIBUTIONS)}")
        if alpha <= 0:
            raise ValueError(f"strategy.alpha (Dirichlet concentration) must be positive, got {alpha}")
        self.distribution = distribution
        self.alpha = float(alpha)

    def weights(self, losses, gramian=None):
        T, device, dtype = self.n_tasks, losses.device, losses.dtype
        if self.distribution == "normal":
            return torch.softmax(torch.randn(T, device=device, dtype=dtype), dim=0)
        if self.distribution == "uniform":
            return torch.softmax(torch.rand(T, device=device, dtype=dtype), dim=0)
        if self.distribution == "dirichlet":
            concentration = torch.full((T,), self.alpha, device=device, dtype=dtype)
            # validate_args=False: the argument check would read a tensor back to the host
            return torch.distributions.Dirichlet(concentration, validate_args=False).sample()
        b = torch.bernoulli(torch.full((T,), 0.5, device=device, dtype=dtype))
        fallback = torch.zeros(T, device=device, dtype=dtype)
        fallback[torch.randint(T, (1,), device=device)] = 1.0
        b = torch.where(b.sum() > 0, b, fallback)
        return b / b.sum()
