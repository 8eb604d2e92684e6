"""Projection methods expressed as weights on the raw gradients: PCGrad and GradVac.

Both edit each task gradient ``g_i' `` by adding multiples of the other (original) gradients
``g_j``, so every edited vector stays a combination ``g_i' = sum_k C_ik g_k``. Tracking the
coefficient matrix C needs only dot products, i.e. the Gramian G: ``g_i'.g_j = (C G)_ij`` and
``||g_i'||^2 = (C G C^T)_ii``. The update ``sum_i g_i'`` is then ``sum_k w_k g_k`` with
``w = 1^T C``, so both work in every gradient space and never see the Jacobian. C is computed in
float64 on the host from one copy of the T x T Gramian; the visiting order of the other tasks is
drawn from torch's (seeded, checkpointed) CPU generator.

Heads: a head's parameters only receive their own task's gradient, which the projections never
touch (``C_ii = 1`` throughout), so heads get their unscaled loss gradient (``scale_heads=False``;
``reduction="mean"`` divides them by T like the shared update).

* PCGrad: Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for Multi-Task Learning",
  NeurIPS 2020 (arXiv 2001.06782), Algorithm 1: for each i, for j != i in random order, if
  ``g_i'.g_j < 0`` then ``g_i' -= (g_i'.g_j / ||g_j||^2) g_j``; update ``sum_i g_i'`` (the paper's
  sum; ``reduction="mean"`` is the average of some ports).
* GradVac: Wang, Tsvetkov, Firat & Cao, "Gradient Vaccine: Investigating and Improving
  Multi-task Optimization in Massively Multilingual Models", ICLR 2021, eq. 2-3 and Algorithm 2:
  for each i, for j != i in random order, ``phi = cos(g_i', g_j)``; if ``phi < phihat_ij``,
  ``g_i' += g_j ||g_i'|| (phihat sqrt(1 - phi^2) - phi sqrt(1 - phihat^2)) /
  (||g_j|| sqrt(1 - phihat^2))``; always ``phihat_ij <- (1 - beta) phihat_ij + beta phi`` with phi
  before the correction, phihat_0 = 0, beta = 0.5 (LibMTL, TorchJD). Whole-model granularity
  (the paper's per-layer granularity is not offered). ``phihat`` is a buffer (checkpointed).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import GradientWeighting


def _other_tasks(i: int, T: int) -> list[int]:
    order = torch.randperm(T - 1).tolist()
    return [j if j < i else j + 1 for j in order]


def pcgrad_coefficients(G: np.ndarray, orders: list[list[int]] | None = None) -> np.ndarray:
    """C with ``g_i' = sum_k C_ik g_k`` after PCGrad's projections. ``orders[i]`` is the order in
    which the other tasks are visited for task i (random when None)."""
    T = G.shape[0]
    C = np.eye(T)
    for i in range(T):
        for j in (orders[i] if orders is not None else _other_tasks(i, T)):
            dot = C[i] @ G[:, j]
            if dot < 0.0:
                C[i, j] -= dot / G[j, j]
    return C


def gradvac_coefficients(G: np.ndarray, phihat: np.ndarray, beta: float,
                         orders: list[list[int]] | None = None, eps: float = 1e-12) -> np.ndarray:
    """C of GradVac's corrections; updates ``phihat`` in place."""
    T = G.shape[0]
    C = np.eye(T)
    norms = np.sqrt(np.maximum(np.diag(G), 0.0))
    for i in range(T):
        for j in (orders[i] if orders is not None else _other_tasks(i, T)):
            norm_i = np.sqrt(max(C[i] @ G @ C[i], 0.0))
            phi = min(max((C[i] @ G[:, j]) / max(norm_i * norms[j], eps), -1.0), 1.0)
            target = phihat[i, j]
            if phi < target:
                C[i, j] += norm_i * (target * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - target**2)) / (
                    max(norms[j], eps) * np.sqrt(1 - target**2))
            phihat[i, j] = (1.0 - beta) * target + beta * phi
    return C


class _Projection(GradientWeighting):
    scale_heads = False

    def __init__(self, n_tasks: int, reduction: str = "sum"):
        super().__init__(n_tasks)
        if reduction not in ("sum", "mean"):
            raise ValueError(f"strategy.reduction={reduction!r}: choose 'sum' or 'mean'")
        self.reduction = reduction

    def _finish(self, C: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        w = C.sum(axis=0)
        if self.reduction == "mean":
            w = w / self.n_tasks
        return torch.as_tensor(w, dtype=like.dtype, device=like.device)

    def head_weights(self, weights):
        scale = 1.0 if self.reduction == "sum" else 1.0 / self.n_tasks
        return torch.full_like(weights, scale)


class PCGrad(_Projection):
    paper = "Yu et al. NeurIPS 2020, arXiv 2001.06782, Alg. 1"

    def weights(self, losses, gramian):
        G = gramian.detach().double().cpu().numpy()
        return self._finish(pcgrad_coefficients(G), gramian)


class GradVac(_Projection):
    paper = "Wang et al. ICLR 2021 (Gradient Vaccine), Alg. 2"

    def __init__(self, n_tasks: int, beta: float = 0.5, reduction: str = "sum"):
        super().__init__(n_tasks, reduction)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"strategy.beta must be in [0, 1], got {beta}")
        self.beta = float(beta)
        self.register_buffer("phihat", torch.zeros(n_tasks, n_tasks, dtype=torch.float64))

    def weights(self, losses, gramian):
        G = gramian.detach().double().cpu().numpy()
        phihat = self.phihat.cpu().numpy().copy()
        C = gradvac_coefficients(G, phihat, self.beta)
        self.phihat.copy_(torch.from_numpy(phihat))
        return self._finish(C, gramian)
