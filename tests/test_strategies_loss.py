"""Loss weightings on hand-made losses, against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtl_bench.strategies import build_strategy, hyperparameters


def grad_wrt_losses(strategy, losses):
    leaf = torch.tensor(losses, dtype=torch.float64, requires_grad=True)
    total, logged = strategy.combine(leaf)
    (grad,) = torch.autograd.grad(total, leaf)
    return total.item(), grad, logged


# ---------------------------------------------------------------------------------------- UW
def test_uw_value_and_gradient_regression_form():
    uw = build_strategy("uw", 2, init=0.0)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.5, -1.0]))
    L = torch.tensor([2.0, 3.0])
    total, factor = uw.combine(L)
    expected = (math.exp(-0.5) * 2 + 0.5) / 2 + (math.exp(1.0) * 3 - 1.0) / 2
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert factor.tolist() == pytest.approx([math.exp(-0.5) / 2, math.exp(1.0) / 2], rel=1e-6)
    total.backward()
    # d/ds (e^-s L + s)/2 = (1 - e^-s L)/2
    assert uw.log_vars.grad.tolist() == pytest.approx([(1 - math.exp(-0.5) * 2) / 2, (1 - math.exp(1.0) * 3) / 2], rel=1e-6)


def test_uw_classification_form_and_presets():
    uw = build_strategy("uw", 2, form="classification", init=0.0)
    total, factor = uw.combine(torch.tensor([2.0, 3.0]))
    assert total.item() == pytest.approx(5.0) and factor.tolist() == [1.0, 1.0]
    mtan, nash = build_strategy("uw", 3), build_strategy("uw", 3, preset="nash")
    assert mtan.log_vars.tolist() == [-0.5] * 3 and "lr" not in mtan.optimizer_groups()[0]
    assert nash.log_vars.tolist() == [0.0] * 3 and nash.optimizer_groups()[0]["lr"] == 0.025


# ---------------------------------------------------------------------------------------- DWA
def test_dwa_first_two_epochs_then_softmax_of_ratios():
    dwa = build_strategy("dwa", 2)
    L = torch.tensor([1.0, 1.0])
    assert dwa.combine(L)[1].tolist() == [1.0, 1.0]          # epoch 1
    dwa.on_epoch_end(0, torch.tensor([1.0, 2.0]))
    assert dwa.combine(L)[1].tolist() == [1.0, 1.0]          # epoch 2: still ones
    dwa.on_epoch_end(1, torch.tensor([0.5, 2.0]))
    w = dwa.combine(L)[1]                                    # epoch 3: r = (0.5, 1), temp 2
    e1, e2 = math.exp(0.5 / 2), math.exp(1.0 / 2)
    assert w.tolist() == pytest.approx([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)], rel=1e-6)
    dwa.on_epoch_end(2, torch.tensor([0.5, 1.0]))            # r = (1, 0.5): only the last two epochs
    assert dwa.combine(L)[1].tolist() == pytest.approx([2 * e2 / (e1 + e2), 2 * e1 / (e1 + e2)], rel=1e-6)
    assert hyperparameters("dwa")["temp"] == 2.0


def test_dwa_window_variant_starts_at_step_27_and_averages():
    dwa = build_strategy("dwa", 2, variant="window", window=25)
    history = []
    for step in range(1, 31):
        L = torch.tensor([1.0 + step, 2.0])
        history.append(L)
        total, w = dwa.combine(L)
        if step < 27:
            assert w.tolist() == [1.0, 1.0]
            assert total.item() == pytest.approx(L.mean().item())
    fifo = torch.stack(history[::-1] + [torch.ones(2)] * 50)[:50]
    r = fifo[:25].mean(0) / fifo[25:].mean(0)
    assert w.tolist() == pytest.approx((2 * torch.softmax(r / 2, 0)).tolist(), rel=1e-5)


# ---------------------------------------------------------------------------------------- SI / GLS
def test_si_value_and_gradient():
    total, grad, logged = grad_wrt_losses(build_strategy("si", 2), [2.0, 0.5])
    assert total == pytest.approx(math.log(2.0) + math.log(0.5))
    assert grad.tolist() == pytest.approx([0.5, 2.0]) and logged.tolist() == pytest.approx([0.5, 2.0])


def test_gls_value_and_gradient():
    total, grad, logged = grad_wrt_losses(build_strategy("gls", 3), [2.0, 4.0, 1.0])
    assert total == pytest.approx(8.0 ** (1 / 3))
    assert grad.tolist() == pytest.approx([2.0 / (3 * 2.0), 2.0 / (3 * 4.0), 2.0 / (3 * 1.0)])
    assert logged.tolist() == pytest.approx(grad.tolist())


# ---------------------------------------------------------------------------------------- RLW
@pytest.mark.parametrize("distribution", ["normal", "uniform", "dirichlet", "bernoulli"])
def test_rlw_weights_on_simplex_and_random(distribution):
    torch.manual_seed(0)
    rlw = build_strategy("rlw", 4, distribution=distribution)
    draws = torch.stack([rlw.combine(torch.ones(4))[1] for _ in range(200)])
    assert torch.allclose(draws.sum(1), torch.ones(200))
    assert (draws >= 0).all()
    assert draws.std(0).min() > 0.05  # random, every task varies
    if distribution == "bernoulli":
        nonzero = draws > 0
        assert nonzero.any(1).all()
        counts = nonzero.sum(1, keepdim=True).float()
        assert torch.allclose(draws[nonzero], (1.0 / counts).expand_as(draws)[nonzero])
    if distribution in ("normal", "uniform"):
        assert (draws > 0).all()
    assert hyperparameters("rlw")["distribution"] == "normal"


def test_rlw_rejects_unknown_distribution():
    with pytest.raises(ValueError, match="strategy.distribution"):
        build_strategy("rlw", 2, distribution="gauss")


# ---------------------------------------------------------------------------------------- DTP
def test_dtp_weights_from_kpi_ema():
    dtp = build_strategy("dtp", 2)
    dtp.feed_kpi(torch.tensor([0.8, 0.3]))
    k = np.array([0.8, 0.3])
    assert dtp.combine(torch.ones(2))[1].tolist() == pytest.approx((-(1 - k) * np.log(k)).tolist(), rel=1e-5)
    dtp.feed_kpi(torch.tensor([0.6, 0.5]))
    k = 0.9 * k + 0.1 * np.array([0.6, 0.5])
    w = dtp.combine(torch.ones(2))[1]
    assert w.tolist() == pytest.approx((-(1 - k) * np.log(k)).tolist(), rel=1e-5)
    assert w[1] > w[0] > 0  # the harder task gets the larger weight
    dtp2 = build_strategy("dtp", 2, gamma=2.0)
    dtp2.feed_kpi(torch.tensor([1.0, 0.0]))  # clamped to [eps, 1 - eps]
    w2 = dtp2.combine(torch.ones(2))[1]
    eps = 1e-4
    assert w2.tolist() == pytest.approx([-(eps**2) * math.log(1 - eps), -((1 - eps) ** 2) * math.log(eps)], rel=1e-4)


# ---------------------------------------------------------------------------------------- SLAW
def slaw_reference(series: np.ndarray, beta=0.99, warmup=100, eps=1e-5):
    """Independent formulation: explicit averages over the prefix, then the EMA recursion."""
    out = []
    T = series.shape[1]
    for t in range(1, len(series) + 1):
        if t <= warmup:
            a, b = series[:t].mean(0), (series[:t] ** 2).mean(0)
        else:
            a = beta * a + (1 - beta) * series[t - 1]
            b = beta * b + (1 - beta) * series[t - 1] ** 2
        std = np.sqrt(b - a**2)
        if t == 1:
            out.append(np.ones(T))
        elif np.isnan(std).any():
            out.append(out[-1])
        else:
            inv = 1 / np.maximum(std, eps)
            out.append(T * inv / inv.sum())
    return np.array(out)


def test_slaw_weights_on_a_known_loss_series():
    rng = np.random.default_rng(0)
    steps = 130
    series = np.stack([1.0 + 0.1 * rng.standard_normal(steps), 5.0 + 2.0 * rng.standard_normal(steps),
                       np.full(steps, 2.0)], axis=1)
    slaw = build_strategy("slaw", 3)
    got = np.array([slaw.combine(torch.tensor(row))[1].tolist() for row in series])
    expected = slaw_reference(series)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    assert got[0].tolist() == [1.0, 1.0, 1.0]
    assert got[-1].sum() == pytest.approx(3.0)
    assert got[-1][2] > got[-1][0] > got[-1][1]  # constant loss: std floored at 1e-5, largest weight


def test_slaw_two_task_hand_case():
    slaw = build_strategy("slaw", 2)
    slaw.combine(torch.tensor([1.0, 1.0]))
    w = slaw.combine(torch.tensor([3.0, 2.0]))[1]  # stds: 1 and 0.5 -> w proportional to (1, 2)
    assert w.tolist() == pytest.approx([2 / 3, 4 / 3])


def test_slaw_keeps_the_previous_weights_when_a_std_is_nan():
    """A loss that stopped moving can leave b - a^2 at -1e-13 by rounding: the official code
    (mtcrawshaw/meta) keeps its weights then; they must not jump to 1 for one step."""
    slaw = build_strategy("slaw", 2)
    for losses in ([0.3, 1.0], [0.3, 3.0], [0.3, 2.0]):
        before = slaw.combine(torch.tensor(losses, dtype=torch.float64))[1]
    with torch.no_grad():
        slaw.mean_sq[0] = 0.09 - 1e-12  # the running mean of L^2 a hair below mean^2 = 0.09
    w = slaw.combine(torch.tensor([0.3, 2.0], dtype=torch.float64))[1]
    assert torch.isnan((slaw.mean_sq - slaw.mean**2).sqrt()[0])
    assert w.tolist() == before.tolist() and w.tolist() != [1.0, 1.0]
    # the kept weights ride in the checkpoint; one written before they existed resumes with 1
    state = slaw.state_dict()
    assert state["last"].tolist() == w.tolist()
    del state["last"]
    fresh = build_strategy("slaw", 2)
    fresh.load_state_dict(state)
    assert fresh.last.tolist() == [1.0, 1.0] and fresh.count == slaw.count


def test_slaw_variance_floor_option():
    slaw = build_strategy("slaw", 2, floor="variance", eps=0.5)
    slaw.combine(torch.tensor([1.0, 1.0]))
    w = slaw.combine(torch.tensor([3.0, 2.0]))[1]  # variances 1 and 0.25 -> floored at 0.5
    inv = np.array([1.0, 1 / math.sqrt(0.5)])
    assert w.tolist() == pytest.approx((2 * inv / inv.sum()).tolist())


# ---------------------------------------------------------------------------------------- IMTL-L
def test_imtl_l_value_and_gradient():
    imtl = build_strategy("imtl_l", 2)
    with torch.no_grad():
        imtl.log_scales.copy_(torch.tensor([0.2, -0.3]))
    total, scale = imtl.combine(torch.tensor([2.0, 3.0]))
    assert total.item() == pytest.approx(math.exp(0.2) * 2 - 0.2 + math.exp(-0.3) * 3 + 0.3, rel=1e-6)
    total.backward()
    assert imtl.log_scales.grad.tolist() == pytest.approx([math.exp(0.2) * 2 - 1, math.exp(-0.3) * 3 - 1], rel=1e-6)
    assert build_strategy("imtl_l", 3).log_scales.tolist() == [0.0] * 3


# ---------------------------------------------------------------------------------------- FAMO
def test_famo_surrogate_weights_and_value():
    famo = build_strategy("famo", 2)
    with torch.no_grad():
        famo.xi.copy_(torch.tensor([0.3, -0.2]))
    z = torch.softmax(torch.tensor([0.3, -0.2], dtype=torch.float64), 0).numpy()
    L = np.array([2.0, 0.5])
    D = L + 1e-8
    c = (z / D).sum()
    total, grad, logged = grad_wrt_losses(famo, L.tolist())
    assert total == pytest.approx((z * np.log(D)).sum() / c, rel=1e-6)
    assert grad.tolist() == pytest.approx((z / (c * D)).tolist(), rel=1e-6)
    assert logged.sum().item() == pytest.approx(1.0)


def test_famo_logit_update_and_adam_step_with_coupled_weight_decay():
    lr, gamma = 0.025, 1e-3
    famo = build_strategy("famo", 2)
    assert (famo.lr, famo.gamma, famo.max_grad_norm) == (lr, gamma, None)
    old, new = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.9])
    xi = np.zeros(2)
    m, v = np.zeros(2), np.zeros(2)
    b1, b2, adam_eps = 0.9, 0.999, 1e-8
    for t in (1, 2):
        z = np.exp(xi) / np.exp(xi).sum()
        delta = np.log(old.numpy() + 1e-8) - np.log(new.numpy() + 1e-8)
        d = z * (delta - (z * delta).sum())
        # the gradient is also the softmax Jacobian applied to delta
        jac = np.diag(z) - np.outer(z, z)
        np.testing.assert_allclose(d, jac @ delta, rtol=1e-12)
        assert famo.logit_gradient(old, new).numpy() == pytest.approx(d, rel=1e-5)
        famo.after_step(old, lambda: new)
        g = d + gamma * xi  # coupled L2: added to the gradient before the moments
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        xi = xi - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + adam_eps)
        np.testing.assert_allclose(famo.xi.detach().numpy(), xi, rtol=1e-5, atol=1e-7)
    # task 0's loss fell more in log terms, so its logit moved down (FAMO favours the slower task)
    assert famo.xi[0] < famo.xi[1]


def test_famo_state_rides_in_the_checkpoint():
    famo = build_strategy("famo", 2)
    famo.after_step(torch.tensor([1.0, 2.0]), lambda: torch.tensor([0.5, 1.9]))
    state = famo.state_dict()
    other = build_strategy("famo", 2)
    other.load_state_dict(state)
    assert torch.equal(other.xi, famo.xi)
    assert other.optimizer.state_dict()["state"][0]["step"] == 1
