"""SLSQP on the probability simplex, as ``scipy.optimize.minimize(method="SLSQP")`` runs it.

CAGrad's official code solves its dual with ``minimize(objective, uniform, bounds=[(0, 1)] * T,
constraints={"type": "eq", "fun": lambda w: 1 - sum(w)}, method="SLSQP")``: Kraft's SLSQP
(D. Kraft, "A software package for sequential quadratic programming", DFVLR-FB 88-28, 1988) with
forward-difference gradients of step 1.49e-8, ``ftol`` 1e-6, 100 iterations. Every call of
``minimize`` first builds its bookkeeping (bounds and constraint objects, a memoising function
wrapper, finite differences through ``approx_derivative``), which costs more than the solve
itself for a T x T dual: 0.5 ms of a CAGrad step on two tasks, 7 ms on forty (0.11 and 3.4 ms
here).

:func:`slsqp_on_simplex` drives the same compiled SLSQP iteration (scipy >= 1.16) with the same
inputs - the same finite-difference steps, taken backwards where a forward step would leave
[0, 1], the same evaluation points, one at a time, and the same arithmetic and workspace - so its
iterates are bit for bit those of ``minimize`` (tests/test_slsqp.py checks it on random duals at
three gradient scales). That iteration is a private module of scipy (1.16, the version this
package requires, and later); should a scipy release move it, the driver calls ``minimize`` itself.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


_NOT_LOADED = object()
_slsqp_iteration = _NOT_LOADED  # the compiled iteration, imported on the first solve


def _compiled_iteration() -> Callable | None:
    """The compiled iteration scipy's own driver calls (scipy >= 1.16); None when a scipy release
    moved it. Imported on the first solve: scipy.optimize takes 0.6 s to import, which a run of a
    strategy without SLSQP need not pay."""
    global _slsqp_iteration
    if _slsqp_iteration is _NOT_LOADED:
        try:
            from scipy.optimize._slsqplib import slsqp as _slsqp_iteration
        except ImportError:  # pragma: no cover - a scipy whose private module moved: minimize() itself
            _slsqp_iteration = None
    return _slsqp_iteration


STEP = float(np.sqrt(np.finfo(float).eps))  # minimize's default finite-difference step (``eps``)
EXIT_MODES = {
    0: "Optimization terminated successfully",
    2: "More equality constraints than independent variables",
    3: "More than 3*n iterations in LSQ subproblem",
    4: "Inequality constraints incompatible",
    5: "Singular matrix E in LSQ subproblem",
    6: "Singular matrix C in LSQ subproblem",
    7: "Rank-deficient equality constraint subproblem HFTI",
    8: "Positive directional derivative for linesearch",
    9: "Iteration limit reached",
}


def _forward_differences(fun: Callable, x: np.ndarray, f0: float) -> np.ndarray:
    """``approx_derivative(fun, x, "2-point", abs_step=STEP, bounds=(0, 1))`` on a point of [0, 1]:
    the step is taken backwards where ``x + STEP`` would pass 1, and each difference quotient
    divides by the step as represented (``(x_i + h_i) - x_i``). One evaluation per coordinate, as
    scipy makes them: evaluating the shifted points together (a matrix product) would round them
    differently and move the iterates."""
    h = np.where(x + STEP > 1.0, -STEP, STEP)
    grad = np.empty(len(x))
    for i in range(len(x)):
        shifted = x.copy()
        shifted[i] = x[i] + h[i]
        grad[i] = (fun(shifted) - f0) / ((x[i] + h[i]) - x[i])
    return grad


def _sums_to_one(w: np.ndarray) -> float:
    return 1.0 - w.sum()


def _minimize(objective, x0, gradient, maxiter: int = 100, ftol: float = 1e-6) -> tuple[np.ndarray, bool, str]:
    """``scipy.optimize.minimize`` itself (the reference the fast driver reproduces)."""
    from scipy.optimize import minimize

    constraint = {"type": "eq", "fun": _sums_to_one}
    if gradient is not None:
        constraint["jac"] = lambda w: -np.ones(len(w))
    result = minimize(objective, x0, jac=gradient, method="SLSQP",
                      bounds=[(0.0, 1.0)] * len(x0), constraints=(constraint,),
                      options={"maxiter": maxiter, "ftol": ftol})
    return result.x, bool(result.success), str(result.message)


def slsqp_on_simplex(objective: Callable[[np.ndarray], float], x0: np.ndarray,
                     gradient: Callable[[np.ndarray], np.ndarray] | None = None,
                     maxiter: int = 100, ftol: float = 1e-6) -> tuple[np.ndarray, bool, str]:
    """``(x, success, message)`` of ``minimize(objective, x0, jac=gradient, method="SLSQP",
    bounds=[(0, 1)] * n, constraints={"type": "eq", "fun": 1 - sum(w)})``: forward differences
    when ``gradient`` is None (the constraint's too, as minimize takes them), else the analytic
    gradient and the constraint's exact normal ``-1``."""
    iteration = _compiled_iteration()
    if iteration is None:  # pragma: no cover - scipy's private module moved
        return _minimize(objective, np.asarray(x0, dtype=np.float64), gradient, maxiter, ftol)
    x = np.clip(np.asarray(x0, dtype=np.float64).reshape(-1), 0.0, 1.0)
    n = len(x)
    m = meq = 1  # one equality constraint, no inequalities besides the bounds
    state = {"acc": ftol, "alpha": 0.0, "f0": 0.0, "gs": 0.0, "h1": 0.0, "h2": 0.0, "h3": 0.0,
             "h4": 0.0, "t": 0.0, "t0": 0.0, "tol": 10.0 * ftol, "exact": 0, "inconsistent": 0,
             "reset": 0, "iter": 0, "itermax": int(maxiter), "line": 0, "m": m, "meq": meq,
             "mode": 0, "n": n}
    indices = np.zeros(m + 2 * n + 2, dtype=np.int32)
    # scipy's worst-case workspace for these m, meq (no inequality constraints: topped up)
    size = n * (n + 1) // 2 + 3 * m * n - (m + 5 * n + 7) * meq + 9 * m + 8 * n * n + 35 * n + meq * meq + 28
    buffer = np.zeros(size + 2 * n * (n + 1), dtype=np.float64)
    lower, upper = np.zeros(n), np.ones(n)
    multipliers = np.zeros(m + 2 * n + 2, dtype=np.float64)
    normals = np.zeros((m, n), dtype=np.float64, order="F")
    residual = np.zeros(m, dtype=np.float64)

    def value(w):  # as minimize's wrapper: a point SLSQP left by an ulp is clipped back first
        return float(objective(np.clip(w, 0.0, 1.0)))

    def slopes(w, fw):
        w = np.clip(w, 0.0, 1.0)
        if gradient is not None:
            normals[0] = -1.0
            return np.asarray(gradient(w), dtype=np.float64)
        normals[0] = _forward_differences(_sums_to_one, w, _sums_to_one(w))
        return _forward_differences(objective, w, fw)

    fx = value(x)
    g = slopes(x, fx)
    residual[0] = _sums_to_one(x)
    while True:
        iteration(state, fx, g, normals, residual, x, multipliers, lower, upper, buffer, indices)
        mode = state["mode"]
        if mode == 1:     # the objective and the constraint at the new point
            fx = value(x)
            residual[0] = _sums_to_one(x)
        elif mode == -1:  # the gradients at the point just evaluated (SLSQP asks for them there)
            g = slopes(x, fx)
        if abs(mode) != 1:
            return x, mode == 0, EXIT_MODES.get(mode, f"SLSQP exit mode {mode}")
