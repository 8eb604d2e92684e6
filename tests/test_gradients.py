"""The gradient backend against plain autograd on the full model."""
import pytest
import torch

from mtl_bench.data.tasks import regression_task
from mtl_bench.models.mlp import build_mlp
from mtl_bench.strategies import build_strategy
from mtl_bench.strategies.base import GradientWeighting
from mtl_bench.train.gradients import GradientBackend


class FixedWeights(GradientWeighting):
    """Test double: returns given weights and remembers the Gramian it saw."""

    def __init__(self, w):
        super().__init__(len(w))
        self.w = torch.tensor(w)
        self.seen = None

    def weights(self, losses, gramian):
        self.seen = gramian.clone()
        return self.w.to(gramian.dtype)


def setup(seed=0, T=3):
    torch.manual_seed(seed)
    tasks = [regression_task(f"t{i}") for i in range(T)]
    model = build_mlp([t.name for t in tasks], input_dim=7, output_dim=4, hidden=6, layers=2)
    x = torch.randn(5, 7)
    targets = {t.name: torch.randn(5, 4) for t in tasks}
    return model, tasks, x, targets


def reference_grads(model, tasks, x, targets, weights):
    """Per-task gradients and the gradient of sum_i w_i L_i by ordinary backward passes."""
    model.zero_grad()
    preds = model(x)
    losses = [t.loss(preds[t.name], targets[t.name]) for t in tasks]
    shared = model.shared_parameters()
    per_task = [torch.cat([g.flatten() for g in torch.autograd.grad(l, shared, retain_graph=True)]) for l in losses]
    total = sum(w * l for w, l in zip(weights, losses))
    total.backward()
    return torch.stack(per_task), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_params_space_matches_autograd(method):
    model, tasks, x, targets = setup()
    w = [0.2, 0.5, 1.3]
    jac, expected = reference_grads(model, tasks, x, targets, w)
    strategy = FixedWeights(w)
    model.zero_grad()
    result = GradientBackend("params", method).step(model, strategy, x, targets, tasks)
    torch.testing.assert_close(strategy.seen, jac @ jac.T)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], msg=name)
    assert result.encoder_backward_passes == 3


def test_representation_space_gramian_keeps_the_batch_dimension():
    model, tasks, x, targets = setup()
    w = [1.0, 0.0, 2.0]
    _, expected = reference_grads(model, tasks, x, targets, w)
    z = model.encoder(x).detach().requires_grad_(True)
    rows = []
    for t in tasks:
        (g,) = torch.autograd.grad(t.loss(model.heads[t.name](z), targets[t.name]), z)
        rows.append(g.flatten())  # B x D block, not summed over the batch
    strategy = FixedWeights(w)
    model.zero_grad()
    result = GradientBackend("representation").step(model, strategy, x, targets, tasks)
    torch.testing.assert_close(strategy.seen, torch.stack(rows) @ torch.stack(rows).T)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], msg=name)
    assert result.encoder_backward_passes == 1


@pytest.mark.parametrize("method", ["loop", "auto"])  # auto: one batched backward from z to the layer
def test_last_shared_layer_gramian(method):
    model, tasks, x, targets = setup()
    preds = model(x)
    W = model.last_shared_parameters()
    rows = [torch.cat([g.flatten() for g in torch.autograd.grad(t.loss(preds[t.name], targets[t.name]), W,
                                                                 retain_graph=True)]) for t in tasks]
    strategy = FixedWeights([1.0, 1.0, 1.0])
    backend = GradientBackend("last_shared_layer", method)
    backend.step(model, strategy, x, targets, tasks)
    assert backend.last_chunk == (0 if method == "loop" else 3)
    J = torch.stack(rows)
    torch.testing.assert_close(strategy.seen, J @ J.T)


def test_heads_get_their_own_weighted_gradient_only():
    model, tasks, x, targets = setup()
    strategy = FixedWeights([0.0, 1.0, 0.0])
    GradientBackend("params").step(model, strategy, x, targets, tasks)
    assert all(torch.count_nonzero(p.grad) == 0 for p in model.heads["t0"].parameters())
    assert all(torch.count_nonzero(p.grad) > 0 for p in model.heads["t1"].parameters())


def test_mgda_trains_through_the_backend():
    model, tasks, x, targets = setup()
    strategy = build_strategy("mgda", 3)
    result = GradientBackend("params", "loop").step(model, strategy, x, targets, tasks)
    assert torch.isclose(result.weights.sum(), torch.tensor(1.0))
    assert strategy.solver_calls == 1


def test_bad_space_and_method_are_rejected():
    with pytest.raises(ValueError, match="grad.space"):
        GradientBackend("weights")
    with pytest.raises(ValueError, match="grad.method"):
        GradientBackend("params", "fast")


GRADIENT_METHODS = ["mgda", "pcgrad", "gradvac", "cagrad", "imtl_g", "nash", "upgrad", "aligned", "graddrop", "db_mtl"]


def reference_update(model, tasks, x, targets, strategy):
    """The shared update by an explicit autograd pass per task on the full model: Gramian
    strategies ``sum_i w_i g_i`` with w from ``J J^T``; Jacobian aggregators ``aggregate(J)``."""
    preds = model(x)
    losses = [t.loss(preds[t.name], targets[t.name]) for t in tasks]
    shared = model.shared_parameters()
    rows = [torch.cat([g.flatten() for g in torch.autograd.grad(l, shared, retain_graph=True)])
            for l in strategy.transform_losses(losses)]
    J = torch.stack(rows)
    raw = torch.stack([l.detach() for l in losses])
    if strategy.needs == "gramian":
        return strategy.weights(losses=raw, gramian=J @ J.T) @ J
    return strategy.aggregate(J, raw)[0]


@pytest.mark.parametrize("method", ["loop", "vmap", "auto"])
@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_params_space_update_equals_per_task_autograd_in_float64(name, method):
    model, tasks, x, targets = setup(seed=1, T=3)
    model, x = model.double(), x.double()
    targets = {k: v.double() for k, v in targets.items()}
    backend = GradientBackend("params", method)
    mine, theirs = build_strategy(name, 3).double(), build_strategy(name, 3).double()
    for step in range(5):  # auto: the timed trials of both paths, then the chosen one
        torch.manual_seed(step)  # PCGrad's orders, GradDrop's draws
        expected = reference_update(model, tasks, x, targets, theirs)
        torch.manual_seed(step)
        model.zero_grad()
        backend.step(model, mine, x, targets, tasks)
        update = torch.cat([p.grad.flatten() for p in model.shared_parameters()])
        torch.testing.assert_close(update, expected, rtol=1e-10, atol=1e-12, msg=f"{name} step {step}")
