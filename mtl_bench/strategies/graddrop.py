"""GradDrop: gradient sign dropout.

Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov, "Just Pick a Sign: Optimizing Deep
Multitask Models with Gradient Sign Dropout", NeurIPS 2020 (arXiv 2010.06808), eq. 1-3 and
Algorithm 1. Representation mode (the paper's, default): with ``grad_z L_i`` the B x ... gradient
w.r.t. the batch of representations z,

    G_i = sum over the batch of sign(z) * grad_z L_i            (one value per feature element)
    P   = 0.5 (1 + sum_i G_i / sum_i |G_i|)                     (positive-sign purity)
    M_i = [P > U][G_i > 0] + [P < U][G_i < 0],  U ~ Uniform(0, 1) per feature, shared by tasks
    grad_z = sum_i (leak + (1 - leak) M_i) grad_z L_i           (masks broadcast over the batch)

with leak = 0. ``grad.space=params`` applies the same P and masks to the flattened parameter
gradients (``G_i = g_i``, no batch, no sign(z)). GradDrop needs the gradient vectors themselves
(a :class:`GradientAggregator`). Heads get their unscaled loss gradient (weights 1). A feature
element where every G_i is 0 has P = 0.5 (0/0 read as 0). U is drawn from torch's global
generator on the device (seeded, no host sync).
"""
from __future__ import annotations

import torch

from .base import GradientAggregator


def graddrop_update(grads: torch.Tensor, u: torch.Tensor, signs: torch.Tensor | None = None,
                    leak: float = 0.0) -> torch.Tensor:
    """``grads``: [T, B, ...] (with ``signs`` = sign(z) of shape [B, ...]) or [T, N] (no signs);
    ``u``: uniform draws shaped like one task's G_i ([...] or [N]). Returns the combined gradient
    shaped like one task's gradient. Task by task, so that the temporaries are the size of one
    task's gradient, never of all T (the params space's T x N Jacobian is the big input)."""
    G = [(signs * g).sum(dim=0) if signs is not None else g for g in grads]  # G_i, eq. 1
    total = torch.zeros_like(G[0])
    magnitude = torch.zeros_like(G[0])
    for g in G:
        total += g
        magnitude += g.abs()
    P = 0.5 * (1.0 + torch.where(magnitude > 0, total / magnitude.clamp_min(torch.finfo(total.dtype).tiny),
                                 torch.zeros_like(total)))  # eq. 2
    update = torch.zeros_like(grads[0])
    for g, grad in zip(G, grads):
        mask = ((P > u) & (g > 0)) | ((P < u) & (g < 0))  # eq. 3
        factor = leak + (1.0 - leak) * mask.to(grads.dtype)
        update += (factor if signs is None else factor.unsqueeze(0)) * grad  # broadcast over the batch
    return update


class GradDrop(GradientAggregator):
    paper = "Chen et al. NeurIPS 2020, arXiv 2010.06808, Alg. 1"
    default_space = "representation"
    spaces = ("params", "representation")

    def __init__(self, n_tasks: int, leak: float = 0.0):
        super().__init__(n_tasks)
        if not 0.0 <= leak <= 1.0:
            raise ValueError(f"strategy.leak must be in [0, 1], got {leak}")
        self.leak = float(leak)

    def aggregate(self, jacobian, losses, representation=None):
        ones = torch.ones(self.n_tasks, device=jacobian.device, dtype=jacobian.dtype)
        if representation is None:
            u = torch.rand(jacobian.shape[1], device=jacobian.device, dtype=jacobian.dtype)
            return graddrop_update(jacobian, u, None, self.leak), ones
        grads = jacobian.reshape(self.n_tasks, *representation.shape)
        u = torch.rand(representation.shape[1:], device=jacobian.device, dtype=jacobian.dtype)
        update = graddrop_update(grads, u, torch.sign(representation).to(grads.dtype), self.leak)
        return update.reshape(-1), ones
