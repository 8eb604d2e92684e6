"""Loss weightings: ``weights`` is computed on its own (never through ``combine``), and it equals the
weights ``combine`` logs for the same state and losses."""
import pytest
import torch

from mtl_bench.strategies import LossWeighting, available_strategies, build_strategy, strategy_class

LOSS_WEIGHTINGS = [n for n in available_strategies() if issubclass(strategy_class(n), LossWeighting)]


def test_there_are_loss_weightings_to_check():
    assert {"uw", "famo", "gls", "si", "dwa", "ew"} <= set(LOSS_WEIGHTINGS)


@pytest.mark.parametrize("name", LOSS_WEIGHTINGS)
def test_weights_never_call_combine_and_agree_with_it(name):
    losses = torch.tensor([0.7, 1.9, 0.4])
    torch.manual_seed(0)
    combined = build_strategy(name, 3)
    _, logged = combined.combine(losses.clone().requires_grad_())
    torch.manual_seed(0)
    alone = build_strategy(name, 3)

    def no_combine(_losses):
        raise AssertionError(f"{name}.weights called combine")
    alone.combine = no_combine
    w = alone.weights(losses)
    assert not w.requires_grad
    torch.testing.assert_close(w, logged)
