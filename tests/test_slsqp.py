"""slsqp_on_simplex: scipy.optimize.minimize(method="SLSQP")'s iterates, bit for bit, without its
per-call set-up (the CAGrad dual's solver; docs/strategies.md)."""
from __future__ import annotations

import numpy as np
import pytest

from mtl_bench.strategies import slsqp
from mtl_bench.strategies.cagrad import cagrad_weights

needs_compiled = pytest.mark.skipif(slsqp._compiled_iteration() is None, reason="scipy < 1.16 calls minimize itself")


def cagrad_dual(G: np.ndarray, c: float = 0.4):
    """CAGrad's dual on the raw Gramian: its objective and its analytic gradient."""
    T = G.shape[0]
    mean_dots = G @ np.full(T, 1.0 / T)
    radius = c * np.sqrt(max(G.mean(), 0.0) + 1e-8) + 1e-8

    def objective(w):
        return w @ mean_dots + radius * np.sqrt(max(w @ G @ w, 0.0) + 1e-8)

    def gradient(w):
        return mean_dots + radius * (G @ w) / np.sqrt(max(w @ G @ w, 0.0) + 1e-8)

    return objective, gradient


def random_gramian(rng, T: int, norm: float, shared: bool) -> np.ndarray:
    """Gradients of spread norms around ``norm`` (the scales at which the official solve stops
    early or not), with a common component when ``shared``."""
    J = rng.normal(size=(T, 64)) * rng.uniform(0.1, 3.0, size=(T, 1))
    if shared:
        J += rng.normal(size=64)
    J *= norm / np.linalg.norm(J, axis=1).mean()
    return J @ J.T


@needs_compiled
@pytest.mark.parametrize("T", [2, 3, 5, 10, 40])
@pytest.mark.parametrize("norm", [13.0, 0.13, 0.013])
@pytest.mark.parametrize("analytic", [False, True])
def test_iterates_are_minimizes_bit_for_bit(T, norm, analytic):
    rng = np.random.default_rng(T)
    for shared in (False, True):
        G = random_gramian(rng, T, norm, shared)
        objective, gradient = cagrad_dual(G)
        start = np.full(T, 1.0 / T)
        ours = slsqp.slsqp_on_simplex(objective, start, gradient if analytic else None)
        reference = slsqp._minimize(objective, start, gradient if analytic else None)
        np.testing.assert_array_equal(ours[0], reference[0])
        assert ours[1:] == reference[1:]


@needs_compiled
def test_an_iteration_limit_stops_both_alike():
    G = random_gramian(np.random.default_rng(0), 10, 13.0, True)
    objective, _ = cagrad_dual(G)
    start = np.full(10, 0.1)
    ours = slsqp.slsqp_on_simplex(objective, start, maxiter=2)
    reference = slsqp._minimize(objective, start, None, maxiter=2)
    np.testing.assert_array_equal(ours[0], reference[0])
    assert ours[1:] == reference[1:] == (False, "Iteration limit reached")


@needs_compiled
def test_a_vertex_solution_steps_backwards_at_the_upper_bound():
    """The optimum is the vertex w = (0, 1) (with c = 0 the objective is linear, and the second
    gradient opposes the mean): the finite differences near w_2 = 1 are taken backwards, as
    minimize takes them."""
    G = np.array([[1.0, -0.01], [-0.01, 1e-4]])
    objective, _ = cagrad_dual(G, c=0.0)
    start = np.array([0.5, 0.5])
    ours = slsqp.slsqp_on_simplex(objective, start)
    np.testing.assert_array_equal(ours[0], slsqp._minimize(objective, start, None)[0])
    assert ours[0][1] == pytest.approx(1.0, abs=1e-6)


def test_forward_differences_match_scipys():
    from scipy.optimize._numdiff import approx_derivative

    G = random_gramian(np.random.default_rng(1), 6, 1.0, True)
    objective, _ = cagrad_dual(G)
    for x in (np.full(6, 1 / 6), np.array([1.0, 0, 0, 0, 0, 0]), np.array([0.5, 0.5 - 1e-9, 1e-9, 0, 0, 0])):
        f0 = objective(x)
        expected = approx_derivative(objective, x, method="2-point",
                                     abs_step=slsqp.STEP, f0=f0, bounds=(0.0, 1.0))
        np.testing.assert_array_equal(slsqp._forward_differences(objective, x, f0), expected)


def test_cagrad_runs_on_the_driver(monkeypatch):
    """The official solve goes through slsqp_on_simplex with finite differences (the speed-up is
    not a copy beside it); the trace option through Newton steps, and SLSQP with the analytic
    gradient only when they fail."""
    from mtl_bench.strategies import simplex_newton

    calls = []
    real_slsqp, real_newton = slsqp.slsqp_on_simplex, simplex_newton.newton_on_simplex

    def counting_slsqp(*args, **kwargs):
        calls.append("slsqp, differences" if len(args) < 3 or args[2] is None else "slsqp, gradient")
        return real_slsqp(*args, **kwargs)

    def counting_newton(*args, **kwargs):
        calls.append("newton")
        return real_newton(*args, **kwargs) if not fail else (args[2], False, "made to fail")

    monkeypatch.setattr("mtl_bench.strategies.cagrad.slsqp_on_simplex", counting_slsqp)
    monkeypatch.setattr("mtl_bench.strategies.cagrad.newton_on_simplex", counting_newton)
    G = random_gramian(np.random.default_rng(2), 3, 1.0, True)
    fail = False
    cagrad_weights(G, 0.4)
    cagrad_weights(G, 0.4, 1, True, 1e-8, "trace")
    assert calls == ["slsqp, differences", "newton"]
    fail = True
    _, success, _ = cagrad_weights(G, 0.4, 1, True, 1e-8, "trace")
    assert calls[2:] == ["newton", "slsqp, gradient"] and success
