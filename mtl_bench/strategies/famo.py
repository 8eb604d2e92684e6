"""FAMO: fast adaptive multitask optimisation.

Liu, Liu, Jin, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023
(arXiv 2306.03792), Algorithm 1 / eq. 9-11. Task logits ``xi`` (xi_0 = 0), ``z = softmax(xi)``,
``D_i = L_i - Lmin_i + 1e-8`` (Lmin = 0 unless ``min_losses`` is given). The model is trained on
the surrogate ``sum_i z_i log D_i / c`` with ``c = sum_i z_i / D_i`` (detached), i.e. effective
loss weights ``z_i / (c D_i)``, which sum to 1 (those are the logged weights).

After the model's optimiser step (``after_step``), the losses of the same batch are re-evaluated
without grad; ``delta_i = log D_i(old) - log D_i(new)``; the logits' gradient is
``z_i (delta_i - sum_j z_j delta_j)`` (the softmax Jacobian applied to delta), and ``xi`` takes one
step of Adam (lr 0.025) with coupled L2 weight decay ``gamma`` (torch.optim.Adam's
``weight_decay``, not AdamW): 1e-3 (NYUv2, CelebA, QM9), 1e-2 for Cityscapes.
``max_grad_norm`` clips the shared gradient (the official code's option, default off).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .base import LossWeighting


class FAMO(LossWeighting):
    paper = "Liu et al. NeurIPS 2023, arXiv 2306.03792, Alg. 1"

    def __init__(self, n_tasks: int, lr: float = 0.025, gamma: float = 1e-3,
                 min_losses: Sequence[float] | None = None, max_grad_norm: float | None = None):
        super().__init__(n_tasks)
        if lr <= 0:
            raise ValueError(f"strategy.lr must be positive, got {lr}")
        if gamma < 0:
            raise ValueError(f"strategy.gamma (weight decay of the logits) must be >= 0, got {gamma}")
        if min_losses is not None and len(min_losses) != n_tasks:
            raise ValueError(f"strategy.min_losses needs {n_tasks} values, got {len(min_losses)}")
        self.lr, self.gamma = float(lr), float(gamma)
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.xi = torch.nn.Parameter(torch.zeros(n_tasks), requires_grad=False)
        self.register_buffer("min_losses", torch.tensor([0.0] * n_tasks if min_losses is None else
                                                        [float(v) for v in min_losses]))
        self.optimizer = torch.optim.Adam([self.xi], lr=self.lr, weight_decay=self.gamma)

    def _gap(self, losses: torch.Tensor) -> torch.Tensor:
        return losses - self.min_losses.to(losses.dtype) + 1e-8

    def _parts(self, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z, D, c)``: task logits' softmax, loss gaps, and the normaliser ``sum z / D``."""
        z = torch.softmax(self.xi.detach(), dim=0).to(losses.dtype)
        D = self._gap(losses)
        return z, D, (z / D).sum().detach()

    def combine(self, losses):
        z, D, c = self._parts(losses)
        total = (z * torch.log(D)).sum() / c
        return total, (z / (c * D)).detach()

    def weights(self, losses, gramian=None):
        z, D, c = self._parts(losses)
        return (z / (c * D)).detach()

    def logit_gradient(self, old_losses: torch.Tensor, new_losses: torch.Tensor) -> torch.Tensor:
        """``z * (delta - z.delta)`` with ``delta = log D(old) - log D(new)``."""
        delta = torch.log(self._gap(old_losses.detach())) - torch.log(self._gap(new_losses.detach()))
        z = torch.softmax(self.xi.detach(), dim=0).to(delta.dtype)
        return (z * (delta - (z * delta).sum())).to(self.xi.dtype)

    def after_step(self, losses, reevaluate):
        new_losses = reevaluate()
        self.xi.grad = self.logit_gradient(losses, new_losses)
        with torch.enable_grad():
            self.optimizer.step()
        self.xi.grad = None

    def get_extra_state(self):
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state):
        self.optimizer.load_state_dict(state["optimizer"])
