"""The spine's strategies on hand-computed cases (ew, static, uw, dwa, gradnorm, mgda)."""
import math

import numpy as np
import pytest
import torch

from mtl_bench.strategies import available_strategies, build_strategy, hyperparameters
from mtl_bench.strategies.mgda import normalize_gramian
from mtl_bench.strategies.solvers import best_pair, min_norm_two, min_norm_weights, project_to_simplex


def test_registry_and_unknown_names():
    assert {"ew", "static", "uw", "dwa", "gradnorm", "mgda"} <= set(available_strategies())
    with pytest.raises(ValueError, match="unknown strategy 'foo'"):
        build_strategy("foo", 2)
    with pytest.raises(ValueError, match="no hyper-parameter"):
        build_strategy("mgda", 2, alpha=1.0)


def test_ew_sum_and_mean():
    losses = torch.tensor([1.0, 3.0])
    total, w = build_strategy("ew", 2).combine(losses)
    assert total.item() == 4.0 and w.tolist() == [1.0, 1.0]
    total, _ = build_strategy("ew", 2, reduction="mean").combine(losses)
    assert total.item() == 2.0


def test_static_weights_and_errors():
    total, w = build_strategy("static", 2, weights=[0.25, 2.0]).combine(torch.tensor([4.0, 1.0]))
    assert total.item() == 3.0
    with pytest.raises(ValueError, match="one weight per task"):
        build_strategy("static", 3, weights=[1.0, 2.0])


def test_uw_value_gradient_and_presets():
    uw = build_strategy("uw", 2)  # mtan preset: s0 = -0.5
    assert uw.log_vars.tolist() == [-0.5, -0.5]
    losses = torch.tensor([2.0, 0.5])
    total, w = uw.combine(losses)
    expected = sum((math.exp(0.5) * l + -0.5) / 2 for l in (2.0, 0.5))
    assert total.item() == pytest.approx(expected)
    assert w.tolist() == pytest.approx([math.exp(0.5) / 2] * 2)
    total.backward()
    # dL/ds_i = (-e^{-s} L_i + 1) / 2
    assert uw.log_vars.grad.tolist() == pytest.approx([(-math.exp(0.5) * l + 1) / 2 for l in (2.0, 0.5)])
    assert uw.optimizer_groups()[0].get("lr") is None
    nash = build_strategy("uw", 2, preset="nash")
    assert nash.log_vars.tolist() == [0.0, 0.0] and nash.optimizer_groups()[0]["lr"] == 0.025


def test_dwa_first_two_epochs_then_softmax_of_ratios():
    dwa = build_strategy("dwa", 2)
    losses = torch.tensor([1.0, 1.0])
    assert dwa.weights(losses).tolist() == [1.0, 1.0]
    dwa.on_epoch_end(0, torch.tensor([4.0, 2.0]))
    assert dwa.weights(losses).tolist() == [1.0, 1.0]  # still epoch 2
    dwa.on_epoch_end(1, torch.tensor([2.0, 2.0]))
    r = np.array([2.0 / 4.0, 2.0 / 2.0])
    expected = 2 * np.exp(r / 2) / np.exp(r / 2).sum()
    np.testing.assert_allclose(dwa.weights(losses).numpy(), expected, rtol=1e-6)
    # slower-decreasing task 1 gets the larger weight; weights sum to T
    w = dwa.weights(losses)
    assert w[1] > w[0] and w.sum().item() == pytest.approx(2.0)


def test_dwa_window_variant():
    dwa = build_strategy("dwa", 2, variant="window", window=2)
    series = [torch.tensor([float(8 - i), 1.0]) for i in range(6)]
    out = [dwa.combine(l)[1] for l in series]
    assert all(w.tolist() == [1.0, 1.0] for w in out[:3])  # before step window + 2
    # step 4: FIFO newest first [5,1],[6,1],[7,1],[8,1]; r = mean(5,6)/mean(7,8) for task 0, 1 for task 1
    r = np.array([5.5 / 7.5, 1.0])
    np.testing.assert_allclose(out[3].numpy(), 2 * np.exp(r / 2) / np.exp(r / 2).sum(), rtol=1e-6)
    total, w = dwa.combine(torch.tensor([2.0, 4.0]))
    assert total.item() == pytest.approx((w * torch.tensor([2.0, 4.0])).sum().item() / 2)  # mean over tasks


def test_gradnorm_two_task_update_by_hand():
    gn = build_strategy("gradnorm", 2, alpha=1.5, lr=0.1)
    G = torch.tensor([[4.0, 0.0], [0.0, 1.0]])  # norms 2 and 1 at the last shared layer
    w0 = gn.weights(losses=torch.tensor([1.0, 1.0]), gramian=G)
    assert w0.tolist() == [1.0, 1.0]  # this step uses w(0) = 1
    # first step: r = 1, target = mean(2, 1) = 1.5; L_grad = |2 - 1.5| + |1 - 1.5|
    # dL/dw = [sign(0.5)*2, sign(-0.5)*1] = [2, -1]; Adam's first step moves each by lr * sign
    w1 = gn.task_weights.detach().clone()
    raw = torch.tensor([1 - 0.1, 1 + 0.1])
    torch.testing.assert_close(w1, raw * 2 / raw.sum())  # renormalised to sum T
    w_used = gn.weights(losses=torch.tensor([0.5, 1.0]), gramian=G)
    torch.testing.assert_close(w_used, w1)  # next step uses w(1)
    assert gn.initial_losses.tolist() == [1.0, 1.0]  # L(0) from the first step only


def test_gradnorm_target_uses_inverse_training_rate():
    gn = build_strategy("gradnorm", 2, alpha=1.0, lr=0.01)
    G = torch.eye(2)
    gn.weights(losses=torch.tensor([1.0, 1.0]), gramian=G)
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([1.0, 1.0]))
    # task 0 trained faster (loss ratio 0.25 vs 1): r = [0.4, 1.6]; targets = 1 * r -> w0 up? no:
    # G_i = w_i * 1 = 1; target_0 = 0.4 < 1 so w0 must go down, w1 up.
    gn.weights(losses=torch.tensor([0.25, 1.0]), gramian=G)
    w = gn.task_weights.detach()
    assert w[0] < 1.0 < w[1]


def test_simplex_projection():
    np.testing.assert_allclose(project_to_simplex(np.array([0.5, 0.5])), [0.5, 0.5])
    np.testing.assert_allclose(project_to_simplex(np.array([2.0, 0.0])), [1.0, 0.0])
    p = project_to_simplex(np.array([0.3, -0.2, 0.9]))
    assert p.sum() == pytest.approx(1.0) and (p >= 0).all()
    np.testing.assert_allclose(p, [0.2, 0.0, 0.8])


def test_mgda_two_task_closed_form_matches_solver():
    g1, g2 = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    G = np.array([[g1 @ g1, g1 @ g2], [g2 @ g1, g2 @ g2]])
    gamma, cost = min_norm_two(G[0, 0], G[0, 1], G[1, 1])
    assert gamma == pytest.approx(0.8)  # (4 - 0) / (1 + 4 - 0)
    d = gamma * g1 + (1 - gamma) * g2
    assert cost == pytest.approx(d @ d)
    np.testing.assert_allclose(min_norm_weights(G), [0.8, 0.2])
    # one gradient inside the other's half-space: the official code keeps 0.999 on the shorter one
    np.testing.assert_allclose(min_norm_weights(np.array([[1.0, 1.0], [1.0, 4.0]])), [0.999, 0.001])


def _best_pair_double_loop(G):
    """The official solver's start: every pair i < j, the first strictly shortest one kept."""
    best = None
    for i in range(len(G)):
        for j in range(i + 1, len(G)):
            gamma, cost = min_norm_two(G[i, i], G[i, j], G[j, j])
            if best is None or cost < best[0]:
                best = (cost, i, j, gamma)
    return best[1:]


def test_mgda_best_pair_equals_the_official_double_loop_bit_for_bit():
    rng = np.random.default_rng(1)
    for trial in range(300):
        T = int(rng.integers(2, 12))
        J = rng.normal(size=(T, int(rng.integers(1, 6)))) * rng.choice([1e-3, 1.0, 1e3])
        if trial % 3 == 0:
            J[1] = J[0]                 # tied pairs: the first in row-major order wins
        if trial % 4 == 0:
            J = np.round(J)             # integer Gramians: many equal costs, both simplex ends
        G = J @ J.T
        assert best_pair(G) == _best_pair_double_loop(G)
    G = np.array([[1.0, 1.0, 1.0], [1.0, 4.0, 2.0], [1.0, 2.0, 9.0]])
    assert best_pair(G) == (0, 1, 0.999)  # (0, 1) and (0, 2) both end at g_0 (cost 1): the first is kept


def test_mgda_three_tasks_against_brute_force():
    rng = np.random.default_rng(0)
    J = rng.normal(size=(3, 5))
    G = J @ J.T
    w = min_norm_weights(G)
    grid = [(a, b, 1 - a - b) for a in np.linspace(0, 1, 201) for b in np.linspace(0, 1, 201) if a + b <= 1]
    best = min(np.array(p) @ G @ np.array(p) for p in grid)
    assert w @ G @ w <= best + 1e-4
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()


def test_mgda_normalisations_change_only_the_solver_input():
    G = torch.tensor([[4.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    losses = torch.tensor([2.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(normalize_gramian(G, losses, "none"), G)
    l2 = normalize_gramian(G, losses, "l2")
    torch.testing.assert_close(l2.diagonal(), torch.ones(2, dtype=torch.float64))
    loss = normalize_gramian(G, losses, "loss")
    torch.testing.assert_close(loss, G / torch.outer(losses, losses))
    plus = normalize_gramian(G, losses, "loss+")
    n = G.diagonal().sqrt() * losses
    torch.testing.assert_close(plus, G / torch.outer(n, n))
    assert hyperparameters("mgda")["normalization"] == "loss+"  # the authors' configuration


def test_mgda_weights_sum_option():
    G = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    w = build_strategy("mgda", 2, normalization="none").weights(losses=torch.ones(2), gramian=G)
    torch.testing.assert_close(w, torch.tensor([0.8, 0.2]))
    w = build_strategy("mgda", 2, normalization="none", weights_sum="n_tasks").weights(losses=torch.ones(2), gramian=G)
    torch.testing.assert_close(w, torch.tensor([1.6, 0.4]))


def test_mgda_solver_takes_the_official_step_length():
    """The step to the simplex's first face replaces t = 1 even when it is longer (official solver)."""
    from mtl_bench.strategies.solvers import _next_point

    current = np.array([0.5, 0.5, 0.0])
    direction = np.array([-0.1, 0.0, 0.1])  # projected: [-0.1, 0, 0.1]; w_0 reaches 0 at t = 5
    np.testing.assert_allclose(_next_point(current, direction), [0.0, 0.5, 0.5])
