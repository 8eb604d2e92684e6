"""UPGrad: unconflicting projection of gradients.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (arXiv 2406.16232),
section 5 / Proposition 2. Each gradient g_i is projected onto the dual cone of the gradients
``{x : g_j . x >= 0 for all j}`` and the projections are averaged; in weight space, with the
normalised Gramian ``Gt = G / trace(G)`` (all zeros if trace < 1e-4) plus 1e-4 I, for each i

    v^(i) = argmin_v  v^T Gt v    subject to  v >= e_i / T   (element-wise)

and ``weights = sum_i v^(i)``, applied to the raw Jacobian. The update then has a non-negative
dot product with every task gradient (``G w >= 0``, up to the ``reg_eps`` regularisation). Each QP is solved by ``quadprog`` (the
Goldfarb-Idnani dual method, float64, on the host from one copy of G); a QP failure is an error
(:class:`SolverError`), counted in ``solver_failures``. Heads get their unscaled loss gradient,
as in TorchJD's ``mtl_backward`` (``scale_heads=False``).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import SolverWeighting
from .solvers import SolverError, one_blas_thread


def _quadprog():
    """quadprog, imported when UPGrad first solves (so the package imports without it)."""
    try:
        import quadprog
    except ImportError as err:  # pragma: no cover - a dependency of mtl-bench
        raise ImportError("UPGrad needs quadprog: pip install quadprog") from err
    return quadprog


@one_blas_thread
def upgrad_weights(G: np.ndarray, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> np.ndarray:
    G = np.asarray(G, dtype=np.float64)
    if not np.all(np.isfinite(G)):
        raise SolverError("UPGrad: the Gramian is not finite")
    T = G.shape[0]
    trace = np.trace(G)
    Gt = G / trace if trace >= norm_eps else np.zeros_like(G)
    Gt = 0.5 * (Gt + Gt.T) + reg_eps * np.eye(T)
    weights = np.zeros(T)
    for i in range(T):
        lower = np.zeros(T)
        lower[i] = 1.0 / T
        try:
            v = _quadprog().solve_qp(Gt, np.zeros(T), np.eye(T), lower, 0)[0]
        except ValueError as err:
            raise SolverError(f"UPGrad: quadprog failed on the QP of task {i}: {err}") from None
        if not np.all(np.isfinite(v)):
            raise SolverError(f"UPGrad: quadprog returned a non-finite solution for task {i}")
        weights += v
    return weights


class UPGrad(SolverWeighting):
    paper = "Quinton & Rey 2024, arXiv 2406.16232, Prop. 2"
    scale_heads = False

    def __init__(self, n_tasks: int, norm_eps: float = 1e-4, reg_eps: float = 1e-4):
        super().__init__(n_tasks)
        self.norm_eps, self.reg_eps = float(norm_eps), float(reg_eps)

    def weights(self, losses, gramian):
        G = gramian.detach().double().cpu().numpy()
        w = self.solve(upgrad_weights, G, self.norm_eps, self.reg_eps)
        return torch.as_tensor(w, dtype=gramian.dtype, device=gramian.device)
