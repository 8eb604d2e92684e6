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


def test_a_held_limit_covers_the_block_and_the_solvers_skip_their_own(monkeypatch):
    inside = []
    probe = solvers.one_blas_thread(lambda: inside.append(blas_threads()))
    with threadpool_limits(2, user_api="blas"):
        with solvers.one_blas_thread_held():
            assert blas_threads() == {1}
            calls = []
            real = solvers._blas_controller()
            monkeypatch.setattr(solvers, "_blas_controller", lambda: calls.append(1) or real)
            probe()
            assert calls == [] and inside == [{1}]  # no per-call limit set while the block holds one
            monkeypatch.undo()
        assert blas_threads() == {2}  # restored at the block's end
        probe()
        assert inside == [{1}, {1}]


def test_a_training_run_solves_inside_its_held_limit(compose, tmp_path, monkeypatch):
    from mtl_bench.strategies import mgda
    from mtl_bench.train import build_trainer

    seen = []
    solve = mgda.min_norm_weights

    def spy(*args):
        seen.append((solvers._held, blas_threads()))
        return solve(*args)

    monkeypatch.setattr(mgda, "min_norm_weights", spy)
    cfg = compose(["strategy=mgda", "trainer.epochs=1", "trainer.device=cpu", "trainer.progress=never"])
    with threadpool_limits(2, user_api="blas"):
        build_trainer(cfg, tmp_path / "run").fit()
        assert blas_threads() == {2}  # the run's limit ends with it
    assert seen and all(held == 1 and threads == {1} for held, threads in seen)


def test_overlapping_holds_keep_the_limit_until_the_last_one_ends():
    first, second = solvers.one_blas_thread_held(), solvers.one_blas_thread_held()
    with threadpool_limits(2, user_api="blas"):
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)   # out of order, as two threads' runs may end
        assert blas_threads() == {1} and solvers._held == 1
        second.__exit__(None, None, None)
        assert blas_threads() == {2} and solvers._held == 0


def test_the_solvers_limit_only_the_blas_libraries_outside_torch():
    import os

    torch_dir = os.path.dirname(os.path.realpath(torch.__file__))
    paths = [os.path.realpath(lib.filepath) for lib in solvers._blas_controller().lib_controllers]
    assert paths and not any(p.startswith(torch_dir) for p in paths)
