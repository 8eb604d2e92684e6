"""The gradient backend with the zoo: vmap/loop agreement and the memory bound, composition of a
loss weighting with a gradient method, the KPI feed, head scaling and FAMO's after-step hook."""
from __future__ import annotations

import time
import warnings

import pytest
import torch

from mtl_bench.data.tasks import classification_task, regression_task
from mtl_bench.models.mlp import build_mlp
from mtl_bench.strategies import build_strategy
from mtl_bench.train.gradients import AUTO_MARGIN, AUTO_TRIALS, GradientBackend
from mtl_bench.train.trainer import training_step

TASKS = [regression_task(f"t{i}") for i in range(4)]


def setup(n_tasks=4, seed=0):
    torch.manual_seed(seed)
    tasks = TASKS[:n_tasks]
    model = build_mlp([t.name for t in tasks], input_dim=5, output_dim=3, hidden=6, layers=2)
    x = torch.randn(8, 5)
    targets = {t.name: torch.randn(8, 3) for t in tasks}
    return model, tasks, x, targets


def per_task_grads(model, tasks, x, targets, scale=None):
    rows = []
    for i, t in enumerate(tasks):
        loss = t.loss(model(x)[t.name], targets[t.name])
        if scale is not None:
            loss = scale[i] * loss
        grads = torch.autograd.grad(loss, model.shared_parameters())
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def shared_grad(model):
    return torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])


@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_params_update_is_assembled_from_the_jacobian(method):
    model, tasks, x, targets = setup()
    J = per_task_grads(model, tasks, x, targets)
    strategy = build_strategy("mgda", 4, normalization="none")
    backend = GradientBackend("params", method)
    result = backend.step(model, strategy, x, targets, tasks)
    assert result.encoder_backward_passes == 4
    torch.testing.assert_close(shared_grad(model), result.weights @ J, rtol=1e-5, atol=1e-6)
    assert backend.last_chunk == (4 if method == "vmap" else 0)


def slowed(backend, name, seconds=0.05):
    """Make one path of ``backend`` slower by ``seconds`` per call (to steer grad.method=auto)."""
    inner = getattr(backend, name)

    def slow(*args, **kwargs):  # busy: the CPU trials time this process's CPU time, which sleeping does not use
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass
        return inner(*args, **kwargs)

    setattr(backend, name, slow)


def steps(backend, model, strategy, x, targets, tasks, n):
    for _ in range(n):
        model.zero_grad()
        backend.step(model, strategy, x, targets, tasks)
    return shared_grad(model).clone()


@pytest.mark.parametrize("slow, chosen", [("_vmap_into", "loop"), ("_loop_into", "vmap")])
def test_auto_times_both_paths_and_keeps_the_faster(slow, chosen):
    model, tasks, x, targets = setup()
    strategy = build_strategy("upgrad", 4)
    reference = steps(GradientBackend("params", "loop"), model, strategy, x, targets, tasks, 1)
    backend = GradientBackend("params", "auto")
    slowed(backend, slow)
    for step in range(2 * AUTO_TRIALS):  # the trials alternate the loop and the batched path
        assert backend.auto_decisions == []
        torch.testing.assert_close(steps(backend, model, strategy, x, targets, tasks, 1), reference)
        assert backend.last_chunk == (0 if step % 2 == 0 else 4)
    (record,) = backend.auto_decisions
    assert record["chosen"] == chosen and record["vmap_chunk"] == 4 and record["input_shape"] == list(x.shape)
    assert record["device"] == "cpu" and record["clock"] == "process"  # CPU trials: this process's CPU time, which other processes do not move
    assert (record["vmap_seconds"] < AUTO_MARGIN * record["loop_seconds"]) == (chosen == "vmap")
    torch.testing.assert_close(steps(backend, model, strategy, x, targets, tasks, 2), reference)
    assert backend.last_chunk == (4 if chosen == "vmap" else 0)


def test_auto_choices_hold_for_their_device_only():
    """A run that chose its path on a GPU and resumes on the CPU times the paths again there; a
    checkpoint whose keys predate the device (shapes alone) is timed again too."""
    model, tasks, x, targets = setup()
    strategy = build_strategy("upgrad", 4)
    gpu = {"chosen": [[["cuda", *x.shape], "vmap"]], "decisions": [{"chosen": "vmap", "device": "cuda"}]}
    old = {"chosen": [[list(x.shape), "vmap"]], "decisions": []}
    for state in (gpu, old):
        backend = GradientBackend("params", "auto")
        backend.load_state_dict(state)
        for step in range(2 * AUTO_TRIALS):  # the CPU's own trials, alternating
            steps(backend, model, strategy, x, targets, tasks, 1)
            assert backend.last_chunk == (0 if step % 2 == 0 else 4)
        assert backend.auto_decisions[-1]["device"] == "cpu"
        assert len(backend.auto_decisions) == len(state["decisions"]) + 1
    resumed = GradientBackend("params", "auto")
    resumed.load_state_dict(backend.state_dict())  # the CPU's own choice is kept on the CPU
    steps(resumed, model, strategy, x, targets, tasks, 1)
    assert resumed.auto_decisions == backend.auto_decisions


def test_auto_respects_the_memory_bound_and_chunks():
    model, tasks, x, targets = setup()
    strategy = build_strategy("upgrad", 4)
    probe = GradientBackend("params", "auto")
    reference = steps(probe, model, strategy, x, targets, tasks, 1)
    per_task = probe._per_task_bytes[tuple(x.shape)]
    assert per_task >= sum(p.numel() * 4 for p in model.shared_parameters())
    assert probe.vmap_chunk(4, x.shape) == 4

    two = GradientBackend("params", "auto", vmap_max_bytes=2.5 * per_task)
    slowed(two, "_loop_into")
    torch.testing.assert_close(steps(two, model, strategy, x, targets, tasks, 2 * AUTO_TRIALS + 1), reference)
    assert two.last_chunk == 2 and two.auto_decisions[0]["chosen"] == "vmap" and two.auto_decisions[0]["vmap_chunk"] == 2

    tiny = GradientBackend("params", "auto", vmap_max_bytes=per_task * 1.5)  # one task fits: no batching
    torch.testing.assert_close(steps(tiny, model, strategy, x, targets, tasks, 1), reference)
    assert tiny.last_chunk == 0  # the loop, chosen at once without timing
    assert tiny.auto_decisions[0]["chosen"] == "loop" and tiny.auto_decisions[0]["vmap_seconds"] is None

    strict = GradientBackend("params", "vmap", vmap_max_bytes=per_task / 2)
    with pytest.raises(ValueError, match="grad.vmap_max_bytes"):
        strict.step(model, strategy, x, targets, tasks)


def test_auto_falls_back_to_the_loop_when_vmap_fails(monkeypatch):
    model, tasks, x, targets = setup()
    backend = GradientBackend("params", "auto")

    def broken(*args, **kwargs):
        raise RuntimeError("batched gradients not supported here")

    monkeypatch.setattr(backend, "_vmap_into", broken)
    backend.step(model, build_strategy("pcgrad", 4), x, targets, tasks)  # the first trial: the loop
    with pytest.warns(UserWarning, match="using the loop"):
        backend.step(model, build_strategy("pcgrad", 4), x, targets, tasks)  # the second: the batched path
    assert backend.last_chunk == 0
    assert backend.auto_decisions[0]["chosen"] == "loop" and "failed" in backend.auto_decisions[0]["reason"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.step(model, build_strategy("pcgrad", 4), x, targets, tasks)  # remembered, no new warning


@pytest.mark.parametrize("space", ["params", "representation"])
def test_composition_weights_each_loss_then_combines(space):
    model, tasks, x, targets = setup(n_tasks=2)
    composed = build_strategy("pcgrad", 2, loss_weighting={"name": "uw", "init": 0.0})
    with torch.no_grad():
        composed.weighting.log_vars.copy_(torch.tensor([0.4, -0.6]))
    factor = torch.exp(-torch.tensor([0.4, -0.6])) / 2
    result = GradientBackend(space, "loop").step(model, composed, x, targets, tasks)
    losses = result.losses
    # UW's parameters get the gradient of UW's own total: (1 - e^-s L) / 2
    expected = (1 - torch.exp(-torch.tensor([0.4, -0.6])) * losses) / 2
    torch.testing.assert_close(composed.weighting.log_vars.grad, expected)
    # the logged weights are (UW factor) x (PCGrad weights of the weighted gradients)
    if space == "params":
        J = per_task_grads(model, tasks, x, targets, scale=factor)
        pc = build_strategy("pcgrad", 2).weights(losses=losses * factor, gramian=J @ J.T)
        torch.testing.assert_close(shared_grad(model), pc @ J, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(result.weights, pc * factor, rtol=1e-5, atol=1e-6)
    # heads: PCGrad leaves the heads' own (weighted) gradients untouched
    head = model.heads["t0"].weight
    (g,) = torch.autograd.grad(factor[0] * tasks[0].loss(model(x)["t0"], targets["t0"]), head)
    torch.testing.assert_close(head.grad, g, rtol=1e-5, atol=1e-6)


def test_heads_scaled_or_not():
    for name, scaled in (("mgda", True), ("aligned", False), ("nash", True), ("upgrad", False)):
        model, tasks, x, targets = setup(n_tasks=2)
        strategy = build_strategy(name, 2)
        result = GradientBackend("params", "loop").step(model, strategy, x, targets, tasks)
        head = model.heads["t1"].weight
        (g,) = torch.autograd.grad(tasks[1].loss(model(x)["t1"], targets["t1"]), head)
        factor = result.weights[1] if scaled else 1.0
        torch.testing.assert_close(head.grad, factor * g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gradient_method", [None, "mgda"])
def test_dtp_gets_batch_accuracy_on_the_device(gradient_method):
    torch.manual_seed(0)
    tasks = [classification_task("a"), classification_task("b")]
    model = build_mlp(["a", "b"], input_dim=5, output_dim=3, hidden=6, layers=2)
    x = torch.randn(10, 5)
    targets = {"a": torch.randint(0, 3, (10,)), "b": torch.randint(0, 3, (10,))}
    with torch.no_grad():
        preds = model(x)
    accuracy = torch.stack([(preds[k].argmax(1) == targets[k]).float().mean() for k in ("a", "b")])
    if gradient_method is None:
        strategy = build_strategy("dtp", 2)
        dtp = strategy
    else:
        strategy = build_strategy(gradient_method, 2, loss_weighting="dtp")
        dtp = strategy.weighting
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    training_step(model, strategy, GradientBackend("representation"), optimizer, tasks, x, targets)
    torch.testing.assert_close(dtp.kpi, accuracy)


def test_famo_after_step_reevaluates_the_batch():
    model, tasks, x, targets = setup(n_tasks=2)
    famo = build_strategy("famo", 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses, weights, passes = training_step(model, famo, GradientBackend(), optimizer, tasks, x, targets)
    assert passes == 1 and weights.sum().item() == pytest.approx(1.0)
    with torch.no_grad():
        new = torch.stack([t.loss(model(x)[t.name], targets[t.name]) for t in tasks])
    fresh = build_strategy("famo", 2)
    fresh.xi.grad = fresh.logit_gradient(losses, new)
    fresh.optimizer.step()
    torch.testing.assert_close(famo.xi.detach(), fresh.xi.detach())
    assert not torch.equal(famo.xi.detach(), torch.zeros(2))


def test_db_mtl_rejects_representation_space(compose, tmp_path):
    from mtl_bench.train import run_experiment

    cfg = compose(["strategy=db_mtl", "grad.space=representation", "trainer.epochs=1", "trainer.device=cpu",
                   "dataset.num_samples=120", "dataset.num_val=20", "dataset.num_test=20", "trainer.batch_size=50"])
    with pytest.raises(ValueError, match="cannot run in grad.space=representation"):
        run_experiment(cfg, tmp_path)


STATEFUL = ["famo", "nash", "db_mtl", "gradvac", "slaw", "gradnorm", "dtp", "imtl", "cagrad", "upgrad", "mgda"]


@pytest.mark.parametrize("name", STATEFUL)
def test_strategy_state_round_trips_through_a_checkpoint(tmp_path, name):
    """After save/load of state_dict (as the checkpoint does), a fresh strategy continues exactly
    like the original one."""
    import copy

    torch.manual_seed(0)
    tasks = [classification_task("a"), classification_task("b")]
    model = build_mlp(["a", "b"], input_dim=5, output_dim=3, hidden=6, layers=2)
    batches = [(torch.randn(10, 5), {"a": torch.randint(0, 3, (10,)), "b": torch.randint(0, 3, (10,))})
               for _ in range(4)]
    strategy = build_strategy(name, 2)
    backend = GradientBackend("params", "loop")
    optimizer = torch.optim.Adam([{"params": list(model.parameters())}, *strategy.optimizer_groups()], lr=0.01)
    for x, y in batches[:3]:
        training_step(model, strategy, backend, optimizer, tasks, x, y)
    torch.save({"strategy": strategy.state_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict()},
               tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    model2 = copy.deepcopy(model)
    model2.load_state_dict(state["model"])
    strategy2 = build_strategy(name, 2)
    strategy2.load_state_dict(state["strategy"])
    optimizer2 = torch.optim.Adam([{"params": list(model2.parameters())}, *strategy2.optimizer_groups()], lr=0.01)
    optimizer2.load_state_dict(state["optimizer"])
    x, y = batches[3]
    rng = torch.get_rng_state()
    _, w1, _ = training_step(model, strategy, backend, optimizer, tasks, x, y)
    torch.set_rng_state(rng)
    _, w2, _ = training_step(model2, strategy2, GradientBackend("params", "loop"), optimizer2, tasks, x, y)
    torch.testing.assert_close(w1, w2)
    for p1, p2 in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(p1, p2)
    assert strategy.stats() == strategy2.stats()
    after1, after2 = strategy.state_dict(), strategy2.state_dict()
    for key, value in after1.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(value, after2[key])


def test_strategies_see_a_float32_gramian_under_bf16_autocast():
    model, tasks, x, targets = setup(n_tasks=2)
    seen = {}

    class Spy(type(build_strategy("nash", 2))):
        def weights(self, losses, gramian):
            seen["dtype"] = gramian.dtype
            return super().weights(losses=losses, gramian=gramian)

    strategy = Spy(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = GradientBackend("representation", "loop").step(model, strategy, x, targets, tasks)
    assert seen["dtype"] == torch.float32 and result.weights.dtype == torch.float32


def test_auto_decisions_survive_a_checkpoint():
    model, tasks, x, targets = setup()
    strategy = build_strategy("upgrad", 4)
    backend = GradientBackend("params", "auto")
    slowed(backend, "_loop_into")
    steps(backend, model, strategy, x, targets, tasks, 2 * AUTO_TRIALS)
    resumed = GradientBackend("params", "auto")
    resumed.load_state_dict(backend.state_dict())
    assert resumed.auto_decisions == backend.auto_decisions
    steps(resumed, model, strategy, x, targets, tasks, 1)
    assert resumed.last_chunk == 4  # the batched path chosen before, no new trials


def test_a_kept_batched_path_that_no_longer_fits_falls_back_to_the_loop():
    """A resume with a lowered grad.vmap_max_bytes: the batched path chosen before would batch
    fewer than two tasks (or none: a crash); the loop takes over, recorded as a new decision."""
    model, tasks, x, targets = setup()
    strategy = build_strategy("upgrad", 4)
    reference = steps(GradientBackend("params", "loop"), model, strategy, x, targets, tasks, 1)
    backend = GradientBackend("params", "auto")
    slowed(backend, "_loop_into")
    steps(backend, model, strategy, x, targets, tasks, 2 * AUTO_TRIALS)
    assert backend.auto_decisions[-1]["chosen"] == "vmap"
    per_task = backend._per_task_bytes[tuple(x.shape)]
    for bound in (per_task * 1.5, per_task / 2):  # one task fits; none fits
        resumed = GradientBackend("params", "auto", vmap_max_bytes=bound)
        resumed.load_state_dict(backend.state_dict())
        torch.testing.assert_close(steps(resumed, model, strategy, x, targets, tasks, 1), reference)
        assert resumed.last_chunk == 0
        assert resumed.auto_decisions[-1]["chosen"] == "loop"
        assert "no longer fits grad.vmap_max_bytes" in resumed.auto_decisions[-1]["reason"]


def test_auto_leaves_out_each_paths_warm_up_trial():
    from mtl_bench.train.gradients import AUTO_WARMUP, _best

    assert AUTO_WARMUP == 1 and AUTO_TRIALS > AUTO_WARMUP
    assert _best([0.2, 0.001, 0.003, 0.002]) == 0.001
    assert _best([0.0005, 0.001, 0.003, 0.002]) == 0.001  # a fast first trial is not counted either
    assert _best([]) is None and _best(None) is None
