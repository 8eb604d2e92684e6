"""Newton steps on the simplex's faces (mtl_bench/strategies/simplex_newton.py): the projection,
minimisers known in closed form, and CAGrad's dual against SLSQP run to a tight tolerance and a
brute-force grid."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from mtl_bench.strategies.simplex_newton import newton_on_simplex, project_to_simplex
from mtl_bench.strategies.slsqp import _minimize


@pytest.mark.parametrize("y, expected", [([0.5, 0.5, 0.5], [1 / 3] * 3), ([2.0, 0.0], [1.0, 0.0]),
                                         ([0.6, 0.6], [0.5, 0.5]), ([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]),
                                         ([-1.0, 0.4, 0.8], [0.0, 0.3, 0.7])])
def test_projection_onto_the_simplex_by_hand(y, expected):
    np.testing.assert_allclose(project_to_simplex(np.array(y)), expected, atol=1e-15)


def test_projection_is_the_nearest_point_of_the_simplex():
    """Against the projection's optimality condition: <y - p, q - p> <= 0 for every vertex q."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        y = rng.normal(size=int(rng.integers(1, 12))) * 3
        p = project_to_simplex(y)
        assert p.min() >= 0 and p.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all((y - p) @ (np.eye(len(y)) - p).T <= 1e-12)


def quadratic(center: np.ndarray):
    """f(w) = |w - center|^2 / 2: its minimiser on the simplex is center's projection."""
    def fgh(w):
        return 0.5 * float((w - center) @ (w - center)), w - center, np.eye(len(w))

    return fgh, lambda w: fgh(w)[0]


@pytest.mark.parametrize("center", [[0.9, 0.4, -0.3, 0.1], [5.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [-1.0, -2.0]])
def test_the_minimiser_of_a_distance_is_the_projection(center):
    center = np.array(center)
    fgh, f = quadratic(center)
    w, ok, message = newton_on_simplex(fgh, f, np.full(len(center), 1 / len(center)))
    assert ok, message
    np.testing.assert_allclose(w, project_to_simplex(center), atol=1e-9)  # the ridge of 1e-10: w to about that


def cagrad_dual(G: np.ndarray, c: float = 0.4):
    """CAGrad's dual on G / trace(G) (mtl_bench/strategies/cagrad.py): value, gradient, Hessian."""
    T = len(G)
    A = G / np.trace(G)
    mean_dots = A @ np.full(T, 1 / T)
    radius = c * np.sqrt(A.mean() + 1e-8) + 1e-8

    def f(w):
        return w @ mean_dots + radius * np.sqrt(max(w @ A @ w, 0.0) + 1e-8)

    def gradient(w):
        return mean_dots + radius * (A @ w) / np.sqrt(max(w @ A @ w, 0.0) + 1e-8)

    def fgh(w):
        Aw = A @ w
        norm = np.sqrt(max(w @ Aw, 0.0) + 1e-8)
        return f(w), gradient(w), radius / norm * (A - np.outer(Aw, Aw) / norm**2)

    return fgh, f, gradient


def gramian(rng, T: int, P: int, conflicting: bool) -> np.ndarray:
    J = rng.normal(size=(T, P)) * rng.lognormal(0, 1, size=(T, 1))
    if conflicting:
        J[1] = -0.8 * J[0] + 0.2 * J[1]
    return J @ J.T


@pytest.mark.parametrize("seed", range(6))
def test_cagrad_dual_no_worse_than_slsqp_run_to_a_tight_tolerance(seed):
    """Random duals (2-40 tasks, conflicting or not, Gramians of full rank and of rank below T):
    Newton's minimum is never above SLSQP's at ftol 1e-15, and its KKT conditions hold."""
    rng = np.random.default_rng(seed)
    for T, P in [(2, 5), (3, 2), (5, 30), (10, 6), (40, 21), (40, 500)]:
        fgh, f, gradient = cagrad_dual(gramian(rng, T, P, conflicting=bool(seed % 2)), c=(0.1, 0.4, 0.9)[seed % 3])
        start = np.full(T, 1 / T)
        w, ok, message = newton_on_simplex(fgh, f, start)
        assert ok, (T, P, message)
        x, _, _ = _minimize(f, start, gradient, maxiter=1000, ftol=1e-15)
        x = np.clip(x, 0, None) / np.clip(x, 0, None).sum()
        assert f(w) <= f(x) + 1e-12 * (1 + abs(f(x))), (T, P, f(w) - f(x))
        g = gradient(w)
        mu = g[w > 0].mean()
        assert np.ptp(g[w > 0]) < 1e-6 * (1 + np.abs(g).max())       # stationary on its face
        assert np.all(g[w == 0] - mu >= -1e-9 * (1 + np.abs(g).max()))  # and no bound worth leaving
        assert w.min() >= 0 and w.sum() == pytest.approx(1.0, abs=1e-12)


def test_cagrad_dual_of_three_tasks_below_every_point_of_a_fine_grid():
    """Two conflicting gradients and a third: the minimum beats every point of a 1/200 grid."""
    J = np.array([[1.0, 0.2, 0.0], [-0.9, 0.3, 0.1], [0.1, -0.2, 1.0]])
    fgh, f, _ = cagrad_dual(J @ J.T)
    w, ok, _ = newton_on_simplex(fgh, f, np.full(3, 1 / 3))
    assert ok
    n = 200
    grid = min(f(np.array([i, j, n - i - j]) / n) for i, j in itertools.product(range(n + 1), repeat=2) if i + j <= n)
    assert f(w) <= grid + 1e-15
