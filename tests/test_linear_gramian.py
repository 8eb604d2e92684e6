"""The Gramian of a linear layer's per-task gradients from its input and output gradients
(mtl_bench/train/linear_gramian.py) against the rows themselves, and the backend's use of it."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl_bench.data.tasks import regression_task
from mtl_bench.models.multitask import MultiTaskModel
from mtl_bench.train.gradients import GradientBackend
from mtl_bench.train.linear_gramian import identity_cost, linear_gramian, rows_cost

from test_gradients import FixedWeights


def rows_of(h, A, weight=True, bias=True):
    """Task i's gradient rows of y = h W^T + b written out: dL_i/dW = A_i^T h, dL_i/db = 1^T A_i."""
    h2 = h.reshape(-1, h.shape[-1])
    rows = []
    for a in A:
        a2 = a.reshape(-1, a.shape[-1])
        parts = ([(a2.T @ h2).reshape(-1)] if weight else []) + ([a2.sum(0)] if bias else [])
        rows.append(torch.cat(parts))
    return torch.stack(rows)


@pytest.mark.parametrize("weight,bias", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("shape", [(5,), (3, 4)])  # a batch, and a batch of sequences
def test_the_identity_gives_the_gramian_of_the_rows(weight, bias, shape):
    torch.manual_seed(0)
    T, n_in, n_out = 4, 6, 3
    h = torch.randn(*shape, n_in, dtype=torch.float64)
    A = torch.randn(T, *shape, n_out, dtype=torch.float64)
    J = rows_of(h, A, weight, bias)
    G = linear_gramian(h, A, weight, bias)
    torch.testing.assert_close(G, J @ J.T)
    assert torch.equal(G, G.T)


def test_the_identity_is_taken_only_where_it_is_cheaper():
    # the 40-task conv encoder of scripts/bench_strategies.py: 128 x 128 on a batch of 32
    assert identity_cost(32, 128, 128, 40) * 3 < rows_cost(32, 128, 128, 40)
    # MultiLeNet's last shared layer (320 -> 50) on a batch of 256, 2 tasks: the rows are cheaper
    assert identity_cost(256, 320, 50, 2) > rows_cost(256, 320, 50, 2)


class Seq(nn.Module):
    """The last shared layer applied to a batch of sequences (B, 2, 6), then averaged over them."""

    def __init__(self, first, last, act):
        super().__init__()
        self.first, self.last, self.act = first, last, act

    def forward(self, x):
        return self.act(self.last(torch.tanh(self.first(x)).unsqueeze(1).expand(-1, 2, -1) * torch.tensor([[1.0], [-0.5]]))).mean(1)


def build(T: int, reuse=False, bias=True, frozen=None, inplace=False, sequence=False):
    torch.manual_seed(1)
    first, last = nn.Linear(5, 6), nn.Linear(6, 6, bias=bias)
    if frozen:
        getattr(last, frozen).requires_grad_(False)
    act = nn.ReLU(inplace=inplace)
    if sequence:
        encoder = Seq(first, last, act)
    else:
        encoder = nn.Sequential(first, nn.Tanh(), last, act, *([last, nn.ReLU()] if reuse else []))
    tasks = [regression_task(f"t{i}") for i in range(T)]
    model = MultiTaskModel(encoder, {t.name: nn.Linear(6, 2) for t in tasks}, last_shared_layer=last)
    batch = 2 if sequence else 3  # rows of the layer: 4 or 3, fewer than its 6 inputs
    x = torch.randn(batch, 5)
    targets = {t.name: torch.randn(batch, 2) for t in tasks}
    return model, tasks, x, targets


CASES = {  # name: (build options, whether the identity is taken)
    "plain": ({}, True),
    "reused layer (its rows)": ({"reuse": True}, False),
    "no bias": ({"bias": False}, True),
    "frozen bias": ({"frozen": "bias"}, True),
    "frozen weight": ({"frozen": "weight"}, True),
    "in-place activation (its rows)": ({"inplace": True}, False),
    "sequence input": ({"sequence": True}, True),
}


@pytest.mark.parametrize("method", ["loop", "auto"])
@pytest.mark.parametrize("case", list(CASES))
def test_backend_gramian_and_update_in_the_last_shared_layer(method, case, monkeypatch):
    import mtl_bench.train.gradients as gradients

    used = []
    monkeypatch.setattr(gradients, "linear_gramian", lambda *a: used.append(1) or linear_gramian(*a))
    options, identity = CASES[case]
    T = 8
    model, tasks, x, targets = build(T, **options)
    rows = x.shape[0] * (2 if options.get("sequence") else 1)
    assert identity_cost(rows, 6, 6, T) < rows_cost(rows, 6, 6, T)  # these shapes take the identity
    preds = model(x)
    W = model.last_shared_parameters()
    losses = [t.loss(preds[t.name], targets[t.name]) for t in tasks]
    J = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, W, retain_graph=True)])
                     for loss in losses])
    w = torch.linspace(0.5, 1.5, T)
    total = sum(wi * loss for wi, loss in zip(w, losses))
    params = [p for p in model.parameters() if p.requires_grad]
    expected = dict(zip(params, torch.autograd.grad(total, params)))
    strategy = FixedWeights(w.tolist())
    result = GradientBackend("last_shared_layer", method).step(model, strategy, x, targets, tasks)
    torch.testing.assert_close(strategy.seen, J @ J.T)
    for p in params:
        torch.testing.assert_close(p.grad, expected[p])
    assert result.encoder_backward_passes == 1
    assert len(used) == (1 if identity else 0)


def test_a_compiled_encoder_takes_the_rows():
    """A hook inside a compiled graph gives an output with no autograd path to z: the rows then."""
    model, tasks, x, targets = build(8)
    preds = model(x)
    W = model.last_shared_parameters()
    J = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(t.loss(preds[t.name], targets[t.name]), W,
                                                                         retain_graph=True)]) for t in tasks])
    model.encoder.compile(backend="aot_eager")
    strategy = FixedWeights([1.0] * 8)
    GradientBackend("last_shared_layer").step(model, strategy, x, targets, tasks)
    torch.testing.assert_close(strategy.seen, J @ J.T)


def test_under_bf16_autocast_the_gramian_is_float32(monkeypatch):
    """The trainer's bf16 autocast must not reach the identity's products (a bf16 Gramian has
    3 significant digits): they run with autocast off, in float32."""
    import mtl_bench.train.gradients as gradients

    seen = []

    def spy(*args):
        result = linear_gramian(*args)
        seen.append((torch.is_autocast_enabled("cpu"), result.dtype))
        return result

    monkeypatch.setattr(gradients, "linear_gramian", spy)
    model, tasks, x, targets = build(8)
    strategy = FixedWeights([1.0] * 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        GradientBackend("last_shared_layer").step(model, strategy, x, targets, tasks)
    assert seen == [(False, torch.float32)] and strategy.seen.dtype == torch.float32


def test_only_a_plain_linear_layer_takes_the_identity():
    import warnings

    from mtl_bench.train.linear_gramian import trained_parts

    assert trained_parts(nn.Linear(3, 3)) == (True, True)
    assert trained_parts(nn.Linear(3, 3, bias=False)) == (True, False)
    assert trained_parts(nn.Conv1d(3, 3, 1)) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the old weight_norm is deprecated
        assert trained_parts(torch.nn.utils.weight_norm(nn.Linear(3, 3))) is None  # weight_g, weight_v + a pre-hook
    frozen = nn.Linear(3, 3).requires_grad_(False)
    assert trained_parts(frozen) is None
