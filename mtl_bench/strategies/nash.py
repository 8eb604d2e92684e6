"""Nash-MTL: the Nash bargaining solution of the task gradients.

Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, "Multi-Task Learning as a
Bargaining Game", ICML 2022 (arXiv 2202.01017), Theorem 5.1 / eq. 4: weights ``alpha > 0`` with

    alpha_i (G alpha)_i = 1    for every i      (G alpha = 1 / alpha)

for the raw Gramian G; the model is trained on ``sum_i alpha_i L_i`` (heads scaled by alpha too)
and the shared gradient norm is clipped at ``max_norm`` = 1.0.

Solver (our own, exact): the equations are the stationarity conditions of the strictly convex
``f(a) = a^T G a / 2 - sum_i log a_i`` on a > 0, solved by damped Newton steps (Hessian
``G + diag(1/a^2)``, backtracking that keeps a > 0) in float64 on the host. As in the official
code, G is first divided by its Frobenius norm for conditioning and the solution is rescaled
(``alpha = alpha_n / sqrt(||G||_F)``) so that it solves the raw equations; the iteration is
warm-started from the previous alpha (ones at the first step), runs at most ``max_iter`` = 20
steps and stops when ``||delta alpha|| < tol`` = 1e-6 (the official code's limits for its
convex-concave procedure), or before a step when half the squared Newton decrement is below
``tol**2`` (Boyd & Vandenberghe 2004, Algorithm 9.5): a warm start at the solution stays there
instead of taking a step of rounding-level size whose line search rounding decides.
``update_weights_every`` = k reuses alpha for k steps (the official option; 1 = solve every step).

Failure policy: a solve fails when the Gramian is not finite, when no positive solution exists
(e.g. a zero gradient, or gradients with a non-negative combination equal to zero, where f is
unbounded below), or when after ``max_iter`` steps the residual ``max_i |alpha_i (G alpha)_i - 1|``
exceeds ``residual_tol``. Every failure is counted (``solver_failures``, in summary.json next to
``solver_calls``) and logged as a warning. ``on_failure="previous"`` (default) then uses the
previous alpha (ones before the first success) - the official behaviour, made visible;
``on_failure="raise"`` raises :class:`SolverError` and the run is marked failed.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from .base import SolverWeighting
from .solvers import SolverError, one_blas_thread

log = logging.getLogger(__name__)


def nash_objective(G: np.ndarray, a: np.ndarray) -> float:
    return 0.5 * a @ G @ a - np.log(a).sum()


@one_blas_thread
def solve_nash(G: np.ndarray, start: np.ndarray | None, max_iter: int = 20, tol: float = 1e-6,
               residual_tol: float = 1e-4) -> np.ndarray:
    """alpha > 0 with ``alpha * (G @ alpha) = 1``, by damped Newton on ``f``; raises SolverError."""
    G = np.asarray(G, dtype=np.float64)
    if not np.all(np.isfinite(G)):
        raise SolverError("Nash-MTL: the Gramian is not finite")
    scale = np.linalg.norm(G)
    if not scale > 0:
        raise SolverError("Nash-MTL: all task gradients are zero")
    Gn = G / scale
    a = np.ones(len(G)) if start is None else np.asarray(start, dtype=np.float64) * np.sqrt(scale)
    if not (np.all(np.isfinite(a)) and np.all(a > 0)):
        a = np.ones(len(G))
    for _ in range(max_iter):
        grad = Gn @ a - 1.0 / a
        hessian = Gn + np.diag(1.0 / a**2)
        try:
            step = -np.linalg.solve(hessian, grad)
        except np.linalg.LinAlgError as err:
            raise SolverError(f"Nash-MTL: singular Newton system ({err})") from None
        slope = grad @ step  # minus the squared Newton decrement
        if -slope / 2 <= tol**2:  # converged already (Boyd & Vandenberghe 2004, Alg. 9.5)
            break
        value, t = nash_objective(Gn, a), 1.0
        while True:
            trial = a + t * step
            if np.all(trial > 0) and nash_objective(Gn, trial) <= value + 0.25 * t * slope:
                break
            t *= 0.5
            if t < 1e-12:
                raise SolverError("Nash-MTL: line search failed (no positive solution?)")
        a = trial
        if np.linalg.norm(t * step) < tol:
            break
    residual = np.abs(a * (Gn @ a) - 1.0).max()
    if not np.isfinite(residual) or residual > residual_tol:
        raise SolverError(f"Nash-MTL: no solution within {max_iter} steps (residual {residual:.3g})")
    return a / np.sqrt(scale)


class NashMTL(SolverWeighting):
    paper = "Navon et al. ICML 2022, arXiv 2202.01017, eq. 4"

    def __init__(self, n_tasks: int, max_norm: float | None = 1.0, max_iter: int = 20, tol: float = 1e-6,
                 residual_tol: float = 1e-4, update_weights_every: int = 1, on_failure: str = "previous"):
        super().__init__(n_tasks)
        if on_failure not in ("previous", "raise"):
            raise ValueError(f"strategy.on_failure={on_failure!r}: choose 'previous' or 'raise'")
        if update_weights_every < 1:
            raise ValueError(f"strategy.update_weights_every must be >= 1, got {update_weights_every}")
        self.max_grad_norm = None if max_norm is None else float(max_norm)
        self.max_iter, self.tol, self.residual_tol = int(max_iter), float(tol), float(residual_tol)
        self.update_weights_every = int(update_weights_every)
        self.on_failure = on_failure
        self.register_buffer("alpha", torch.ones(n_tasks, dtype=torch.float64))
        self.steps = 0  # a host counter (reading a device counter would sync every step)
        self._alpha_host: np.ndarray | None = None

    def weights(self, losses, gramian):
        step = self.steps
        self.steps += 1
        if step % self.update_weights_every == 0:
            previous = self._alpha_host if self._alpha_host is not None else self.alpha.cpu().numpy()
            # before any successful solve, start from ones in the solver's normalised units
            start = previous if self.solver_calls > self.solver_failures else None
            G = gramian.detach().double().cpu().numpy()
            try:
                alpha = self.solve(solve_nash, G, start, self.max_iter, self.tol, self.residual_tol)
            except SolverError as err:
                if self.on_failure == "raise":
                    raise
                log.warning("%s; keeping the previous alpha (failure %d of %d solves)",
                            err, self.solver_failures, self.solver_calls)
                alpha = previous
            self._alpha_host = np.array(alpha, dtype=np.float64)
            self.alpha.copy_(torch.from_numpy(self._alpha_host))
        return self.alpha.to(device=gramian.device, dtype=gramian.dtype, copy=True)

    def get_extra_state(self):
        return {**super().get_extra_state(), "steps": self.steps}

    def set_extra_state(self, state):
        super().set_extra_state(state)
        self.steps = state["steps"]
        self._alpha_host = None
