"""Strategy.stats(): the solver counters every strategy reports (empty without a solver), counted in
one place (SolverWeighting.solve) and kept in checkpoints under the keys committed runs carry."""
import numpy as np
import pytest
import torch

from mtl_bench.strategies import SolverWeighting, build_strategy
from mtl_bench.strategies.solvers import SolverError


def gramian(T=3, seed=0):
    J = torch.randn(T, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return J @ J.T


@pytest.mark.parametrize("name", ["ew", "uw", "pcgrad"])
def test_strategies_without_a_solver_report_nothing(name):
    assert build_strategy(name, 3).stats() == {}


@pytest.mark.parametrize("name", ["mgda", "cagrad", "nash", "upgrad", "imtl_g"])
def test_each_solver_call_is_counted(name):
    strategy = build_strategy(name, 3)
    for step in range(3):
        strategy.weights(losses=torch.ones(3, dtype=torch.float64), gramian=gramian(seed=step))
    assert strategy.stats() == {"solver_calls": 3, "solver_failures": 0}


def test_composition_reports_the_methods_counts():
    strategy = build_strategy("mgda", 3, loss_weighting="uw")
    losses = [torch.tensor(float(i + 1), requires_grad=True) for i in range(3)]
    strategy.transform_losses(losses)
    strategy.weights(losses=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), gramian=gramian())
    assert strategy.stats() == {"solver_calls": 1, "solver_failures": 0}
    assert build_strategy("imtl", 3).stats() == {"solver_calls": 0, "solver_failures": 0}


class Failing(SolverWeighting):
    def weights(self, losses, gramian):
        return self.solve(self.solver, gramian)

    @staticmethod
    def solver(gramian):
        if not torch.isfinite(gramian).all():
            raise SolverError("not finite")
        return torch.ones(gramian.shape[0])


def test_solve_counts_a_raised_solver_error_as_a_failure_and_raises_it_on():
    strategy = Failing(2)
    strategy.weights(None, torch.eye(2))
    with pytest.raises(SolverError, match="not finite"):
        strategy.weights(None, torch.full((2, 2), float("nan")))
    with pytest.raises(ZeroDivisionError):  # not a solver failure: raised, not counted as one
        strategy.solve(lambda: 1 / 0)
    assert strategy.stats() == {"solver_calls": 3, "solver_failures": 1}
    strategy.count_failure()
    assert strategy.stats()["solver_failures"] == 2


def test_cagrad_non_convergence_and_non_finite_gramian_are_failures():
    strategy = build_strategy("cagrad", 2)
    with pytest.raises(SolverError):
        strategy.weights(torch.ones(2), torch.full((2, 2), float("inf")))
    assert strategy.stats() == {"solver_calls": 1, "solver_failures": 1}


def test_counts_ride_in_checkpoints_under_the_committed_keys():
    strategy = build_strategy("mgda", 2)
    strategy.weights(losses=torch.ones(2, dtype=torch.float64), gramian=gramian(2))
    state = strategy.state_dict()
    assert state["_extra_state"] == {"solver_calls": 1, "solver_failures": 0}
    # a checkpoint written before stats() existed: the same two keys
    fresh = build_strategy("mgda", 2)
    fresh.load_state_dict({"_extra_state": {"solver_calls": 7, "solver_failures": 2}})
    assert fresh.stats() == {"solver_calls": 7, "solver_failures": 2}
    assert np.isfinite(fresh.weights(losses=torch.ones(2, dtype=torch.float64), gramian=gramian(2)).numpy()).all()
    assert fresh.stats() == {"solver_calls": 8, "solver_failures": 2}
