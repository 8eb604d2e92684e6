"""Minimise a smooth convex function over the probability simplex by Newton steps on faces.

A primal active-set method (Nocedal & Wright, "Numerical Optimization", 2nd ed., section 16.5,
with the quadratic model of Newton's method in place of a fixed QP): on the current face
``{w : w_i = 0 for i not in F, sum(w) = 1}`` take the Newton step of the equality-constrained
quadratic model, with a backtracking (Armijo) line search that tries the projected arc first
(Bertsekas, "Projected Newton methods for optimization problems with simple constraints", SIAM
J. Control Optim. 20(2), 1982: several indices may leave F in one step), then the ray to the
first bound it meets; once the step is negligible, the KKT multipliers of the bounds,
``lambda_i = g_i - mu`` (``mu`` the multiplier of the sum), say whether an index outside F would
lower f, and the most negative one joins F. Convex f: the point where no multiplier is negative
is the minimiser. Each step is one (|F|+1)-square linear solve: a solve of CAGrad's dual at 40
tasks takes about six of them on random Gramians, and about 45 on the last shared layer's Gramian
of bench_strategies.py's 40-task workload (the first arc step leaves 5 weights non-zero, the
minimiser has 14, and the rest join one at a time, 2-3 steps each): about 2.6 ms, a quarter of
the official SLSQP solve there (results/bench/README.md).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

ValueGradHess = Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]


def newton_on_simplex(fgh: ValueGradHess, f: Callable[[np.ndarray], float], w0: np.ndarray,
                      tol: float = 1e-13, maxiter: int = 200) -> tuple[np.ndarray, bool, str]:
    """``(w, converged, message)``: the minimiser over the simplex of the convex function whose
    value, gradient and Hessian ``fgh(w)`` gives (``f(w)``: the value alone, for the line search),
    from the feasible ``w0``. Converged: the Newton decrement on the face is below ``tol`` times
    ``1 + |f|`` and no bound multiplier is below ``-sqrt(tol)`` times the gradient's size."""
    w = np.asarray(w0, dtype=np.float64).copy()
    free = w > 0
    for _ in range(maxiter):
        value, g, H = fgh(w)
        d, mu = _face_step(g, H, free)
        decrement = -float(g @ d)
        if decrement > tol * (1.0 + abs(value)):
            moved = _arc_search(f, w, value, g, d)
            if moved is not None:
                w = np.where(moved > 1e-15, moved, 0.0)  # a coordinate at rounding level is on its bound
                w /= w.sum()
                free = w > 0
                continue
        # stationary on the face (or no further decrease there, to rounding): the bounds' multipliers
        multipliers = np.where(free, 0.0, g - mu)
        worst = int(np.argmin(multipliers))
        if multipliers[worst] >= -100 * tol * (1.0 + np.abs(g).max()):
            return w, True, "converged"
        if free[worst]:  # pragma: no cover - a free index has multiplier 0
            break
        free[worst] = True  # lowering f needs this index off its bound
    return w, False, f"no convergence in {maxiter} Newton steps"


def _arc_search(f, w: np.ndarray, value: float, g: np.ndarray, d: np.ndarray) -> np.ndarray | None:
    """A step along ``d`` with enough decrease (Armijo): first the projected arc ``P(w + step d)``
    at a step that moves no coordinate by more than 1 (it may put several indices on their bounds
    at once), then the ray to the first bound it meets (that index exactly 0), then halvings of
    the ray short of it. None when no step lowers f (to rounding)."""
    blocking = d < 0
    ratios = np.where(blocking, w / np.where(blocking, -d, 1.0), np.inf)
    first = int(np.argmin(ratios))
    reach = float(ratios[first])
    step = min(1.0, 1.0 / float(np.abs(d).max()))
    if step > reach:
        trial = project_to_simplex(w + step * d)
        if _decreases(f, value, g, w, trial):
            return trial
        step = reach
    while step > 1e-12 * reach if np.isfinite(reach) else step > 1e-12:
        trial = np.maximum(w + step * d, 0.0)
        if step == reach:
            trial[first] = 0.0
        trial /= trial.sum()
        if _decreases(f, value, g, w, trial):
            return trial
        step *= 0.5
    return None


def _decreases(f, value: float, g: np.ndarray, w: np.ndarray, trial: np.ndarray) -> bool:
    slope = float(g @ (trial - w))
    return slope < 0 and f(trial) <= value + 1e-4 * slope


def project_to_simplex(y: np.ndarray) -> np.ndarray:
    """The Euclidean projection of ``y`` onto the probability simplex: ``max(y - tau, 0)`` with the
    threshold ``tau`` that makes it sum to one (Duchi, Shalev-Shwartz, Singer & Chandra, ICML 2008,
    Fig. 1)."""
    u = np.sort(y)[::-1]
    cumulative = np.cumsum(u) - 1.0
    k = np.flatnonzero(u - cumulative / np.arange(1, len(y) + 1) > 0)[-1]
    return np.maximum(y - cumulative[k] / (k + 1), 0.0)


def _face_step(g: np.ndarray, H: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, float]:
    """The Newton step on the face of ``free`` and the sum's multiplier: ``H_F d_F + g_F = mu 1``,
    ``sum(d_F) = 0``, ``d = 0`` off the face (a tiny ridge keeps a singular H solvable)."""
    index = np.flatnonzero(free)
    n = len(index)
    K = np.zeros((n + 1, n + 1))
    HF = H[np.ix_(index, index)]
    K[:n, :n] = HF + 1e-10 * max(float(np.trace(HF)) / n, 1e-300) * np.eye(n)
    K[:n, n] = K[n, :n] = -1.0
    rhs = np.concatenate([-g[index], [0.0]])
    try:
        solution = np.linalg.solve(K, rhs)
    except np.linalg.LinAlgError:
        solution = np.linalg.lstsq(K, rhs, rcond=None)[0]
    d = np.zeros_like(g)
    d[index] = solution[:n]
    return d, float(solution[n])
