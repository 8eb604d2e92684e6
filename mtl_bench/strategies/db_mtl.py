"""DB-MTL: dual-balancing multi-task learning.

Lin, Ye, Xu, Shi & Zhang, "Dual-Balancing for Multi-Task Learning", 2023 (arXiv 2308.12029),
eq. 2-5. Loss-scale balancing: every task is differentiated through ``log(L_i + 1e-8)``
(``transform_losses``). Gradient-magnitude balancing: an EMA buffer of each task's gradient,
``ghat_i <- beta_t ghat_i + (1 - beta_t) g_i`` with ``beta_t = beta / t^sigma`` (t = 1, 2, ...;
beta = 0.9, sigma = 0; the buffer starts at 0, no bias correction), then

    alpha_i = max_j ||ghat_j|| / (||ghat_i|| + 1e-8),        update = sum_i alpha_i ghat_i

Parameter space only (the EMA of vectors needs the Jacobian of the shared parameters). Heads get
the gradient of their own ``log(L_i + 1e-8)`` (weights 1). The buffer (T x #shared parameters)
and t ride in the checkpoint through ``get_extra_state``. Logged weights are alpha.
"""
from __future__ import annotations

import torch

from .base import GradientAggregator


class DBMTL(GradientAggregator):
    paper = "Lin et al. 2023, arXiv 2308.12029, eq. 2-5"
    spaces = ("params",)

    def __init__(self, n_tasks: int, beta: float = 0.9, sigma: float = 0.0, eps: float = 1e-8):
        super().__init__(n_tasks)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"strategy.beta must be in [0, 1), got {beta}")
        self.beta, self.sigma, self.eps = float(beta), float(sigma), float(eps)
        self.ghat: torch.Tensor | None = None
        self.t = 0

    def transform_losses(self, losses):
        return [torch.log(loss + self.eps) for loss in losses]

    def aggregate(self, jacobian, losses, representation=None):
        if representation is not None:
            raise ValueError("db_mtl runs in grad.space=params only")
        self.t += 1
        beta_t = self.beta / self.t**self.sigma
        if self.ghat is None or self.ghat.shape != jacobian.shape:
            self.ghat = torch.zeros_like(jacobian)
        self.ghat = self.ghat.to(jacobian)
        self.ghat.mul_(beta_t).add_(jacobian.detach(), alpha=1.0 - beta_t)  # in place: no T x P temporaries
        norms = self.ghat.norm(dim=1)
        alpha = norms.max() / (norms + 1e-8)
        self.last_alpha = alpha
        return alpha @ self.ghat, torch.ones_like(alpha)

    def logged_weights(self, weights):
        return getattr(self, "last_alpha", weights)

    def get_extra_state(self):
        return {"ghat": self.ghat, "t": self.t}

    def set_extra_state(self, state):
        self.ghat, self.t = state["ghat"], state["t"]
