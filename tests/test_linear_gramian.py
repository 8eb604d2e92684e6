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


def model_with_reused_layer(T: int, reuse: bool):
    torch.manual_seed(1)
    first, last = nn.Linear(5, 6), nn.Linear(6, 6)
    layers = [first, nn.Tanh(), last, nn.ReLU()] + ([last, nn.ReLU()] if reuse else [])
    tasks = [regression_task(f"t{i}") for i in range(T)]
    model = MultiTaskModel(nn.Sequential(*layers), {t.name: nn.Linear(6, 2) for t in tasks}, last_shared_layer=last)
    x = torch.randn(3, 5)
    targets = {t.name: torch.randn(3, 2) for t in tasks}
    return model, tasks, x, targets


@pytest.mark.parametrize("method", ["loop", "auto"])
@pytest.mark.parametrize("reuse", [False, True])  # a layer called twice: its rows, not the identity
def test_backend_gramian_and_update_in_the_last_shared_layer(method, reuse, monkeypatch):
    import mtl_bench.train.gradients as gradients

    used = []
    monkeypatch.setattr(gradients, "linear_gramian", lambda *a: used.append(1) or linear_gramian(*a))
    T = 8
    model, tasks, x, targets = model_with_reused_layer(T, reuse)
    assert identity_cost(3, 6, 6, T) < rows_cost(3, 6, 6, T)  # these shapes take the identity
    preds = model(x)
    W = model.last_shared_parameters()
    losses = [t.loss(preds[t.name], targets[t.name]) for t in tasks]
    J = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, W, retain_graph=True)])
                     for loss in losses])
    w = torch.linspace(0.5, 1.5, T)
    total = sum(wi * loss for wi, loss in zip(w, losses))
    expected = dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(total, list(model.parameters()))))
    strategy = FixedWeights(w.tolist())
    result = GradientBackend("last_shared_layer", method).step(model, strategy, x, targets, tasks)
    torch.testing.assert_close(strategy.seen, J @ J.T)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], msg=name)
    assert result.encoder_backward_passes == 1
    assert len(used) == (0 if reuse else 1)
