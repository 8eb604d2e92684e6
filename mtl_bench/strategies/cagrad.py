"""CAGrad: conflict-averse gradient descent.

Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for Multi-task Learning",
NeurIPS 2021 (arXiv 2110.14048), eq. 3 and its dual (section 3.1 / Algorithm 1). With the mean
gradient ``g0 = (1/T) sum_i g_i`` and ``g_w = sum_i w_i g_i``:

    w* = argmin_{w in simplex}  g_w . g0 + sqrt(phi) ||g_w||,      phi = c^2 ||g0||^2
    d  = g0 + (sqrt(phi) / ||g_w*||) g_w*

All of it is a function of the Gramian: ``g_w.g0 = w^T G 1 / T``, ``||g_w||^2 = w^T G w``,
``||g0||^2 = 1^T G 1 / T^2``; so d is returned as weights on the raw gradients,
``d = sum_i (1/T + sqrt(phi) w*_i / ||g_w*||) g_i``. The dual is solved in float64 on the host
with scipy's SLSQP from the uniform start, as in the official code (1e-8 inside the square
roots, as there; we pass the analytic gradient of the objective), on the Gramian divided by its trace: the minimiser is unchanged (the objective
is homogeneous in G) but SLSQP's absolute stopping tolerance then no longer depends on the scale
of the gradients (on the raw Gramian of tiny gradients it stops at the uniform start). Then ``rescale``: 0 none, 1 ``d / (1 + c^2)`` (default), 2 ``d / (1 + c)``;
``multiply_by_tasks=True`` (default, the official code's "match the sum loss") multiplies by T
(LibMTL does not). c = 0.4, the value of the official NYUv2 scripts and of Nash-MTL's
re-runs (the CAGrad argparse default and LibMTL use 0.5). c = 0 gives the mean gradient.

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
from scipy.optimize import minimize

from .base import SolverWeighting
from .solvers import SolverError

log = logging.getLogger(__name__)


def cagrad_weights(G: np.ndarray, c: float, rescale: int = 1, multiply_by_tasks: bool = True, lambda_eps: float = 1e-4,
                   ) -> tuple[np.ndarray, bool, str]:
    """``(weights on the raw gradients, solver success, solver message)``."""
    T = G.shape[0]
    uniform = np.full(T, 1.0 / T)
    trace = np.trace(G)
    Gs = G / trace if trace > 0 else G
    mean_dots = Gs @ uniform
    radius_s = c * np.sqrt(max(Gs.mean(), 0.0) + 1e-8) + 1e-8

    def objective(w):
        return w @ mean_dots + radius_s * np.sqrt(max(w @ Gs @ w, 0.0) + 1e-8)

    def gradient(w):  # analytic, instead of SLSQP's T + 1 evaluations per finite-difference gradient
        return mean_dots + radius_s * (Gs @ w) / np.sqrt(max(w @ Gs @ w, 0.0) + 1e-8)

    result = minimize(objective, uniform, jac=gradient, method="SLSQP", bounds=[(0.0, 1.0)] * T,
                      constraints=({"type": "eq", "fun": lambda w: 1.0 - w.sum(), "jac": lambda w: -np.ones(T)},))
    w = np.clip(result.x, 0.0, 1.0)
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
    return weights, bool(result.success), str(result.message)


class CAGrad(SolverWeighting):
    paper = "Liu et al. NeurIPS 2021, arXiv 2110.14048, eq. 3 / Alg. 1"
    scale_heads = False

    def __init__(self, n_tasks: int, c: float = 0.4, rescale: int = 1, multiply_by_tasks: bool = True,
                 lambda_eps: float = 1e-4):
        super().__init__(n_tasks)
        if c < 0:
            raise ValueError(f"strategy.c must be >= 0, got {c}")
        if rescale not in (0, 1, 2):
            raise ValueError(f"strategy.rescale={rescale!r}: choose 0 (none), 1 (1/(1+c^2)) or 2 (1/(1+c))")
        self.c, self.rescale, self.multiply_by_tasks = float(c), int(rescale), bool(multiply_by_tasks)
        self.lambda_eps = float(lambda_eps)

    def weights(self, losses, gramian):
        G = gramian.detach().double().cpu().numpy()
        self.solver_calls += 1
        if not np.all(np.isfinite(G)):
            self.solver_failures += 1
            raise SolverError("CAGrad: the Gramian is not finite")
        w, success, message = cagrad_weights(G, self.c, self.rescale, self.multiply_by_tasks, self.lambda_eps)
        if not np.all(np.isfinite(w)):
            self.solver_failures += 1
            raise SolverError(f"CAGrad: SLSQP returned non-finite weights ({message})")
        if not success:
            self.solver_failures += 1
            log.warning("CAGrad: SLSQP did not converge (%s); using its last iterate (failure %d of %d calls)",
                        message, self.solver_failures, self.solver_calls)
        return torch.as_tensor(w, dtype=gramian.dtype, device=gramian.device)
