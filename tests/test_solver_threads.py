"""Host T x T solvers run with one BLAS thread, scoped to the call (threadpoolctl)."""
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from mtl_bench.strategies import aligned, build_strategy, cagrad, imtl, nash, projection, solvers, upgrad


def blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_the_limit_holds_inside_the_call_and_is_lifted_after():
    inside = []
    probe = solvers.one_blas_thread(lambda: inside.append(blas_threads()))
    with threadpool_limits(2, user_api="blas"):
        probe()
        assert blas_threads() == {2}
    assert inside == [{1}]


@pytest.mark.parametrize("solver", [solvers.min_norm_weights, cagrad.cagrad_weights, nash.solve_nash,
                                    upgrad.upgrad_weights, aligned.alignment_matrix, imtl.imtl_g_weights,
                                    projection.pcgrad_coefficients, projection.gradvac_coefficients])
def test_every_host_solver_is_limited(solver):
    assert getattr(solver, "one_blas_thread", False), solver.__qualname__


def test_a_strategy_solves_with_one_blas_thread(monkeypatch):
    seen = []
    eigh = np.linalg.eigh

    def spy(a):
        seen.append(blas_threads())
        return eigh(a)

    monkeypatch.setattr(aligned.np.linalg, "eigh", spy)
    J = torch.randn(3, 50, dtype=torch.float64)
    with threadpool_limits(2, user_api="blas"):
        build_strategy("aligned", 3).weights(losses=torch.ones(3), gramian=J @ J.T)
    assert seen == [{1}]
