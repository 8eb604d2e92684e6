"""Projection methods expressed as weights on the raw gradients: PCGrad and GradVac.

Both edit each task gradient ``g_i' `` by adding multiples of the other (original) gradients
``g_j``, so every edited vector stays a combination ``g_i' = sum_k C_ik g_k``. Tracking the
coefficient matrix C needs only dot products, i.e. the Gramian G: ``g_i'.g_j = (C G)_ij`` and
``||g_i'||^2 = (C G C^T)_ii``. The update ``sum_i g_i'`` is then ``sum_k w_k g_k`` with
``w = 1^T C``, so both work in every gradient space and never see the Jacobian. C is computed in
float64 on the host from one copy of the T x T Gramian, in T - 1 steps vectorised over the tasks
(each task's edits depend only on its own row of C); the visiting order of the other tasks is
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
from .solvers import one_blas_thread


def random_orders(T: int) -> np.ndarray:
    """[T, T-1]: row i visits the tasks j != i in a random order (torch's CPU generator)."""
    orders = np.empty((T, T - 1), dtype=np.int64)
    for i in range(T):
        perm = torch.randperm(T - 1).numpy()
        orders[i] = perm + (perm >= i)
    return orders


def _orders(T: int, orders) -> np.ndarray:
    orders = random_orders(T) if orders is None else np.asarray(orders, dtype=np.int64).reshape(T, T - 1)
    return orders


@one_blas_thread
def pcgrad_coefficients(G: np.ndarray, orders=None) -> np.ndarray:
    """C with ``g_i' = sum_k C_ik g_k`` after PCGrad's projections. ``orders[i]`` is the order in
    which the other tasks are visited for task i (random when None). The tasks i are independent
    of each other, so step k is done for all of them at once (T - 1 vectorised steps)."""
    T = G.shape[0]
    C = np.eye(T)
    if T == 1:
        return C
    rows = np.arange(T)
    for js in _orders(T, orders).T:          # js[i]: the task that task i visits at this step
        dots = np.einsum("ik,ki->i", C, G[:, js])   # g_i' . g_j
        conflict = dots < 0.0
        C[rows[conflict], js[conflict]] -= dots[conflict] / G[js[conflict], js[conflict]]
    return C


@one_blas_thread
def gradvac_coefficients(G: np.ndarray, phihat: np.ndarray, beta: float, orders=None,
                         eps: float = 1e-12) -> np.ndarray:
    """C of GradVac's corrections; updates ``phihat`` in place (vectorised over the tasks i)."""
    T = G.shape[0]
    C = np.eye(T)
    if T == 1:
        return C
    rows = np.arange(T)
    norms = np.sqrt(np.maximum(np.diag(G), 0.0))
    for js in _orders(T, orders).T:
        norm_i = np.sqrt(np.maximum(((C @ G) * C).sum(axis=1), 0.0))
        phi = np.clip(np.einsum("ik,ki->i", C, G[:, js]) / np.maximum(norm_i * norms[js], eps), -1.0, 1.0)
        target = phihat[rows, js]
        low = phi < target
        root = np.sqrt(np.maximum(1.0 - target**2, eps))  # phihat may reach 1 after aligned steps
        step = norm_i * (target * np.sqrt(1.0 - phi**2) - phi * root) / (np.maximum(norms[js], eps) * root)
        C[rows[low], js[low]] += step[low]
        phihat[rows, js] = (1.0 - beta) * target + beta * phi
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
