"""Small exact solvers shared by gradient strategies. They run in float64 NumPy on the host:
the inputs are T x T Gramians, so one device-to-host copy per step is their whole cost.

Every host solver runs with one BLAS thread (:func:`one_blas_thread`): on T x T matrices a
multi-threaded BLAS spends its time waking and waiting for threads, 20-25 ms per call on a loaded
machine instead of 0.1-0.25 ms (README, Speed).
"""
from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np

_blas = None  # the threadpoolctl controller, built at the first solver call (BLAS libraries loaded)


def _blas_controller():
    """The BLAS libraries the solvers call (NumPy's and SciPy's), never one that torch loaded
    itself: limiting those would slow the model's own CPU matmuls for as long as it is held."""
    global _blas
    if _blas is None:
        from pathlib import Path

        import torch
        from threadpoolctl import ThreadpoolController

        torch_dir = str(Path(torch.__file__).resolve().parent)
        blas = ThreadpoolController().select(user_api="blas")
        _blas = blas.select(filepath=[lib.filepath for lib in blas.lib_controllers
                                      if not str(Path(lib.filepath).resolve()).startswith(torch_dir)])
    return _blas


_hold_lock = threading.Lock()
_held = 0        # holders of one_blas_thread_held() (threads of one process may overlap)
_restore = None  # the threadpoolctl limiter to restore when the last holder leaves


@contextlib.contextmanager
def one_blas_thread_held():
    """One BLAS thread for the whole block; the previous limits come back when the last block
    that holds it ends (blocks in several threads may overlap). A training run holds it
    (``Trainer.fit``): setting the limit costs 10 us on its own but 0.2-0.3 ms per call between
    the step's tensor operations (about 1% of a MultiLeNet step), so the solvers' own per-call
    limit is skipped while it is held."""
    global _held, _restore
    with _hold_lock:
        if _held == 0:
            _restore = _blas_controller().limit(limits=1)
        _held += 1
    try:
        yield
    finally:
        with _hold_lock:
            _held -= 1
            if _held == 0:
                _restore.restore_original_limits()
                _restore = None


def one_blas_thread(solver):
    """Decorator: run ``solver`` with one BLAS thread (threadpoolctl), the previous limits restored
    on return; nothing to set while :func:`one_blas_thread_held` holds the limit already."""
    @functools.wraps(solver)
    def limited(*args, **kwargs):
        if _held:
            return solver(*args, **kwargs)
        with _blas_controller().limit(limits=1):
            return solver(*args, **kwargs)

    limited.one_blas_thread = True
    return limited


class SolverError(RuntimeError):
    """A solver did not return a valid answer; strategies count these and surface them."""


def project_to_simplex(y: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``y`` onto the probability simplex (sort-based algorithm of
    Held, Wolfe & Crowder 1974; see Wang & Carreira-Perpinan 2013, arXiv 1309.1541, Alg. 1)."""
    u = np.sort(y)[::-1]
    cumulative = np.cumsum(u) - 1.0
    ranks = np.arange(1, len(y) + 1)
    rho = np.nonzero(u - cumulative / ranks > 0)[0][-1]
    theta = cumulative[rho] / (rho + 1.0)
    return np.maximum(y - theta, 0.0)


def min_norm_two(g11: float, g12: float, g22: float) -> tuple[float, float]:
    """Min-norm point of the segment between two vectors from their dot products, as in the
    official MGDA code: ``(gamma, squared norm)`` with gamma the weight of the first vector,
    ``(g22 - g12) / (g11 + g22 - 2 g12)``, set to 0.999 / 0.001 at the two ends."""
    if g12 >= g11:
        return 0.999, g11
    if g12 >= g22:
        return 0.001, g22
    gamma = (g22 - g12) / (g11 + g22 - 2.0 * g12)
    return gamma, g22 + gamma * (g12 - g22)


def best_pair(G: np.ndarray) -> tuple[int, int, float]:
    """``(i, j, gamma)`` of the pair ``i < j`` whose min-norm point (:func:`min_norm_two`) is
    shortest, the first such pair in row-major order as in the official double loop; all pairs
    at once, with the same floating-point operations as the scalar closed form (for a finite
    Gramian whose pair costs do not overflow; :func:`min_norm_weights` refuses non-finite ones)."""
    i, j = np.triu_indices(G.shape[0], k=1)
    g11, g12, g22 = G[i, i], G[i, j], G[j, j]
    with np.errstate(divide="ignore", invalid="ignore"):  # the ends' pairs are masked below
        gamma = (g22 - g12) / (g11 + g22 - 2.0 * g12)
        cost = g22 + gamma * (g12 - g22)
    first_end, second_end = g12 >= g11, (g12 < g11) & (g12 >= g22)
    gamma = np.where(first_end, 0.999, np.where(second_end, 0.001, gamma))
    cost = np.where(first_end, g11, np.where(second_end, g22, cost))
    k = int(np.argmin(cost))
    return int(i[k]), int(j[k]), float(gamma[k])


def _next_point(current: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Step from ``current`` along ``direction`` projected on the simplex's plane, up to the
    first face it reaches, then back onto the simplex."""
    proj = direction - direction.mean()
    neg, pos = proj < 0, proj > 0
    to_zero = -current[neg] / proj[neg]
    to_one = (1.0 - current[pos]) / proj[pos]
    to_zero, to_one = to_zero[to_zero > 1e-7], to_one[to_one > 1e-7]
    # as the official solver: the step to the first zero replaces t = 1 (it may exceed 1)
    t = to_zero.min() if len(to_zero) else 1.0
    if len(to_one):
        t = min(t, to_one.min())
    return project_to_simplex(proj * t + current)


@one_blas_thread
def min_norm_weights(gramian: np.ndarray, max_iter: int = 250, tol: float = 1e-5) -> np.ndarray:
    """Weights ``w`` on the simplex minimising ``|| sum_i w_i g_i ||^2 = w^T G w``.

    Sener & Koltun 2018 (arXiv 1810.04650), Algorithm 2 as in their ``min_norm_solvers.py``:
    start from the best pair of two-task closed forms, then Frank-Wolfe-like projected steps with an
    exact line search, stopping when ``sum |w_new - w_old| < tol`` or after ``max_iter`` steps.
    """
    G = np.asarray(gramian, dtype=np.float64)
    T = G.shape[0]
    if G.shape != (T, T) or not np.all(np.isfinite(G)):
        raise SolverError(f"min-norm solver needs a finite square Gramian, got shape {G.shape}")
    w = np.zeros(T)
    if T == 1:
        w[0] = 1.0
        return w
    if T == 2:  # the one pair's closed form, without the all-pairs machinery (the same numbers)
        w[0], _ = min_norm_two(G[0, 0], G[0, 1], G[1, 1])
        w[1] = 1.0 - w[0]
        return w
    i, j, gamma = best_pair(G)
    w[i], w[j] = gamma, 1.0 - gamma
    for _ in range(max_iter):
        new_point = _next_point(w, -G @ w)
        gamma, _ = min_norm_two(w @ G @ w, w @ G @ new_point, new_point @ G @ new_point)
        new_w = gamma * w + (1.0 - gamma) * new_point
        if np.abs(new_w - w).sum() < tol:
            return w
        w = new_w
    return w
