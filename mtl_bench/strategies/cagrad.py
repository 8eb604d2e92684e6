"""CAGrad: conflict-averse gradient descent.

Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for Multi-task Learning",
NeurIPS 2021 (arXiv 2110.14048), eq. 3 and its dual (section 3.1 / Algorithm 1). With the mean
gradient ``g0 = (1/T) sum_i g_i`` and ``g_w = sum_i w_i g_i``:

    w* = argmin_{w in simplex}  g_w . g0 + sqrt(phi) ||g_w||,      phi = c^2 ||g0||^2
    d  = g0 + (sqrt(phi) / ||g_w*||) g_w*

All of it is a function of the Gramian: ``g_w.g0 = w^T G 1 / T``, ``||g_w||^2 = w^T G w``,
``||g0||^2 = 1^T G 1 / T^2``; so d is returned as weights on the raw gradients,
``d = sum_i (1/T + sqrt(phi) w*_i / (||g_w*|| + lambda_eps)) g_i``.

The dual is solved as the official code solves it (``cagrad()`` of its NYUv2 and Cityscapes
scripts): scipy's SLSQP from the uniform start with finite-difference gradients, on the raw
Gramian, 1e-8 inside the square roots, step guard ``lambda_eps = 1e-8`` (driven by
:func:`~mtl_bench.strategies.slsqp.slsqp_on_simplex`: minimize's iterates, without its per-call set-up). SLSQP's stopping
tolerance is absolute, so on the raw Gramian of small gradients it stops at (or near) the uniform
start: the official update depends on the gradients' scale. ``gramian_scaling="trace"`` solves
on ``G / trace(G)`` instead, to convergence (Newton steps on the simplex's faces with exact
derivatives, :mod:`~mtl_bench.strategies.simplex_newton`; SLSQP with the analytic gradient if
they fail): the minimiser of the dual itself, scale-free; an option of ours, not the paper's
(docs/strategies.md).
``lambda_eps = 1e-4`` is the official toy and MTRL code's guard. Then ``rescale``: 0 none,
1 ``d / (1 + c^2)`` (default), 2 ``d / (1 + c)``; ``multiply_by_tasks=True`` (default, the
official code's "match the sum loss") multiplies by T (LibMTL does not). c = 0.4, the value of
the official NYUv2 scripts and of Nash-MTL's re-runs (the CAGrad argparse default and LibMTL
use 0.5). c = 0 gives the mean gradient.

Solver calls and failures are counted (``solver_calls`` / ``solver_failures`` in summary.json).
A failed SLSQP run (``success`` false) is counted and logged with its message and its last
iterate is used - clipped to [0, 1] and renormalised, so the result is still CAGrad's formula
on a feasible w; a non-finite result raises :class:`SolverError`. Heads get their unscaled loss
gradient, as in the official code (``scale_heads=False``).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from .base import SolverWeighting
from .simplex_newton import newton_on_simplex
from .slsqp import slsqp_on_simplex
from .solvers import SolverError, one_blas_thread

log = logging.getLogger(__name__)


GRAMIAN_SCALINGS = ("none", "trace")


@one_blas_thread
def cagrad_weights(G: np.ndarray, c: float, rescale: int = 1, multiply_by_tasks: bool = True,
                   lambda_eps: float = 1e-8, gramian_scaling: str = "none") -> tuple[np.ndarray, bool, str]:
    """``(weights on the raw gradients, solver success, solver message)`` for the Gramian ``G``."""
    T = G.shape[0]
    uniform = np.full(T, 1.0 / T)
    trace = np.trace(G)
    A = G / trace if gramian_scaling == "trace" and trace > 0 else G  # the matrix the dual is solved on
    mean_dots = A @ uniform
    radius_A = c * np.sqrt(max(A.mean(), 0.0) + 1e-8) + 1e-8

    def objective(w):
        return w @ mean_dots + radius_A * np.sqrt(max(w @ A @ w, 0.0) + 1e-8)

    def gradient(w):
        return mean_dots + radius_A * (A @ w) / np.sqrt(max(w @ A @ w, 0.0) + 1e-8)

    def value_gradient_hessian(w):
        Aw = A @ w
        norm = np.sqrt(max(w @ Aw, 0.0) + 1e-8)
        return (w @ mean_dots + radius_A * norm, mean_dots + radius_A * Aw / norm,
                radius_A / norm * (A - np.outer(Aw, Aw) / norm**2))

    if gramian_scaling == "trace":  # ours: the minimiser itself, by Newton steps (SLSQP if they fail)
        x, success, message = newton_on_simplex(value_gradient_hessian, objective, uniform)
        if not success:
            x, success, message = slsqp_on_simplex(objective, uniform, gradient)
    else:  # the official code: SLSQP with finite differences, on the raw Gramian
        x, success, message = slsqp_on_simplex(objective, uniform)
    w = np.clip(x, 0.0, 1.0)
    w = w / w.sum() if w.sum() > 0 else uniform
    radius = c * np.sqrt(max(G.mean(), 0.0) + 1e-8) + 1e-8
    gw_norm = np.sqrt(max(w @ G @ w, 0.0))
    weights = uniform + radius / (gw_norm + lambda_eps) * w
    if rescale == 1:
        weights = weights / (1.0 + c**2)
    elif rescale == 2:
        weights = weights / (1.0 + c)
    if multiply_by_tasks:
        weights = weights * T
    return weights, success, message


def checked_cagrad_weights(G: np.ndarray, *args) -> tuple[np.ndarray, bool, str]:
    """:func:`cagrad_weights` that raises :class:`SolverError` on a non-finite Gramian or
    non-finite weights (a solve that did not converge is returned, with ``success=False``)."""
    if not np.all(np.isfinite(G)):
        raise SolverError("CAGrad: the Gramian is not finite")
    w, success, message = cagrad_weights(G, *args)
    if not np.all(np.isfinite(w)):
        raise SolverError(f"CAGrad: SLSQP returned non-finite weights ({message})")
    return w, success, message


class CAGrad(SolverWeighting):
    paper = "Liu et al. NeurIPS 2021, arXiv 2110.14048, eq. 3 / Alg. 1"
    scale_heads = False

    def __init__(self, n_tasks: int, c: float = 0.4, rescale: int = 1, multiply_by_tasks: bool = True,
                 lambda_eps: float = 1e-8, gramian_scaling: str = "none"):
        super().__init__(n_tasks)
        if c < 0:
            raise ValueError(f"strategy.c must be >= 0, got {c}")
        if rescale not in (0, 1, 2):
            raise ValueError(f"strategy.rescale={rescale!r}: choose 0 (none), 1 (1/(1+c^2)) or 2 (1/(1+c))")
        self.c, self.rescale, self.multiply_by_tasks = float(c), int(rescale), bool(multiply_by_tasks)
        if gramian_scaling not in GRAMIAN_SCALINGS:
            raise ValueError(f"strategy.gramian_scaling={gramian_scaling!r}: choose 'none' (the official code: the "
                             "raw Gramian) or 'trace' (the Gramian divided by its trace)")
        if lambda_eps < 0:
            raise ValueError(f"strategy.lambda_eps must be >= 0, got {lambda_eps}")
        self.lambda_eps, self.gramian_scaling = float(lambda_eps), gramian_scaling

    def weights(self, losses, gramian):
        G = gramian.detach().double().cpu().numpy()
        w, success, message = self.solve(checked_cagrad_weights, G, self.c, self.rescale, self.multiply_by_tasks,
                                         self.lambda_eps, self.gramian_scaling)
        if not success:
            self.count_failure()
            log.warning("CAGrad: SLSQP did not converge (%s); using its last iterate (failure %d of %d calls)",
                        message, self.solver_failures, self.solver_calls)
        return torch.as_tensor(w, dtype=gramian.dtype, device=gramian.device)
