"""GradNorm: gradient normalisation for adaptive loss balancing.

Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018 (arXiv 1711.02257), eq. 1-2 and Algorithm 1.
With ``n_i = ||grad_W L_i||`` at the last shared layer W (``grad.space=last_shared_layer``: the
Gramian's diagonal), ``G_i = w_i n_i``, ``Gbar = mean_j G_j``, ``r_i = Ltilde_i / mean_j Ltilde_j``
with ``Ltilde_i = L_i / L_i(0)`` (L_i(0): the loss at the first step):

    L_grad = sum_i | G_i - [Gbar * r_i^alpha] |       (bracket detached, grad w.r.t. w only)

Algorithm 1's order: this step's update uses the current w(t); then w takes one Adam step on
L_grad and is renormalised to sum to T, giving w(t+1). alpha = 1.5 (0.12 for the synthetic toy),
weight lr 0.025 (Crawshaw & Kosecka's setting; the paper's lr is not stated).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import GradientWeighting


class GradNorm(GradientWeighting):
    paper = "Chen et al. ICML 2018, arXiv 1711.02257, eq. 2 / Alg. 1"
    default_space = "last_shared_layer"

    def __init__(self, n_tasks: int, alpha: float = 1.5, lr: float = 0.025):
        super().__init__(n_tasks)
        self.alpha = float(alpha)
        self.lr = float(lr)
        self.task_weights = nn.Parameter(torch.ones(n_tasks))
        self.register_buffer("initial_losses", torch.zeros(n_tasks))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))
        self.optimizer = torch.optim.Adam([self.task_weights], lr=self.lr)

    def weights(self, losses, gramian):
        losses = losses.detach()
        current = self.task_weights.detach().clone()
        self.initial_losses.copy_(torch.where(self.started, self.initial_losses, losses))
        self.started.fill_(True)
        norms = gramian.detach().diagonal().clamp_min(0).sqrt()
        ratios = losses / self.initial_losses.clamp_min(1e-12)
        inverse_rate = ratios / ratios.mean()
        with torch.enable_grad():
            weighted_norms = self.task_weights * norms.to(self.task_weights.dtype)
            target = (weighted_norms.mean() * inverse_rate**self.alpha).detach()
            loss_grad = (weighted_norms - target).abs().sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss_grad.backward(inputs=[self.task_weights])
        self.optimizer.step()
        with torch.no_grad():
            self.task_weights.mul_(self.n_tasks / self.task_weights.sum())
        return current.to(gramian.dtype)

    def get_extra_state(self):
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state):
        self.optimizer.load_state_dict(state["optimizer"])
