"""Gradient diagnostics (mtl_bench/train/diagnostics.py): the figures on hand-made gradients, the
logged records against a direct computation on the same batch, and no extra work when off."""
import copy
import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from mtl_bench.data import build_benchmark
from mtl_bench.models import build_model
from mtl_bench.strategies import build_strategy
from mtl_bench.train.cost import in_optimizer_step
from mtl_bench.train.diagnostics import ALL, PAIR, SPLIT, GradientDiagnostics, summarize
from mtl_bench.train.gradients import GradientBackend
from mtl_bench.train.trainer import Trainer, TrainerConfig

HOST_READS = {"aten::_local_scalar_dense", "aten::item", "aten::is_nonzero"}


def test_summary_of_hand_made_gradients():
    g = np.array([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 2.0, 0.0]])  # g0.g1 < 0, g1.g2 > 0, g0 _|_ g2
    d = np.array([0.0, 1.0, 1.0])
    out = summarize(g @ g.T, g @ d, float(d @ d))
    assert out["grad_norm"] == pytest.approx([1.0, math.sqrt(2), 2.0])
    assert out["cosine"][0, 1] == pytest.approx(-1 / math.sqrt(2))
    assert out["cosine"][1, 2] == pytest.approx(1 / math.sqrt(2))
    assert out["cosine"][0, 2] == pytest.approx(0.0)
    assert out["conflict_fraction"] == pytest.approx(1 / 3)  # one of the three pairs is below 0
    assert out["cosine_mean"] == pytest.approx((-1 / math.sqrt(2) + 1 / math.sqrt(2) + 0) / 3)
    assert math.isinf(out["gramian_condition"])  # three gradients in a plane: G is singular
    assert out["update_norm"] == pytest.approx(math.sqrt(2))
    assert out["update_cosine"] == pytest.approx([0.0, 0.5, 1 / math.sqrt(2)])


def test_condition_number_is_the_eigenvalue_ratio():
    rng = np.random.default_rng(0)
    J = rng.normal(size=(3, 10))
    G = J @ J.T
    out = summarize(G, J @ J[0], float(J[0] @ J[0]))
    assert out["gramian_condition"] == pytest.approx(np.linalg.cond(G))
    assert out["update_cosine"][0] == pytest.approx(1.0)


def test_off_by_default_and_bad_values_refused():
    assert not GradientDiagnostics(None, ["a", "b"]).enabled
    assert GradientDiagnostics(0, ["a", "b"]).probe(1) is None
    diag = GradientDiagnostics(3, ["a", "b"])
    assert [s for s in range(1, 10) if diag.probe(s) is not None] == [3, 6, 9]
    with pytest.raises(ValueError, match=r"diagnostics.every=-1.*diagnostics.every=50"):
        GradientDiagnostics(-1, ["a"])


def _trainer(compose, tmp_path, name, space, every, **hparams):
    torch.manual_seed(0)
    cfg = compose(["dataset.num_samples=120", "dataset.num_val=20", "dataset.num_test=20", "model.hidden=16"])
    benchmark = build_benchmark(cfg.dataset, batch_size=20, seed=0)
    model = build_model(cfg.model, benchmark)
    strategy = build_strategy(name, 2, **hparams)
    diag = GradientDiagnostics(every, benchmark.task_names)
    return Trainer(model, benchmark, strategy, TrainerConfig(), tmp_path, torch.device("cpu"),
                   GradientBackend(space, "loop"), diagnostics=diag), benchmark


def _direct_rows(model, tasks, x, targets, space):
    """Each task's gradient, one plain autograd call per task, in ``space``."""
    rows = []
    for task in tasks:
        z = model.encoder(x)
        loss = task.loss(model.heads[task.name](z), targets[task.name])
        wrt = {"representation": [z], "params": model.shared_parameters(),
               "last_shared_layer": model.last_shared_parameters()}[space]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, wrt)]).double())
    return torch.stack(rows)


def _logged(records):
    return {(r["task"], r["metric"]): r["value"] for r in records}


@pytest.mark.parametrize("name, space", [("ew", "params"), ("uw", "params"), ("mgda", "params"),
                                         ("graddrop", "params"), ("mgda", "representation"),
                                         ("graddrop", "representation"), ("mgda", "last_shared_layer")])
def test_logged_cosines_match_a_direct_computation_on_the_same_batch(compose, tmp_path, name, space):
    trainer, benchmark = _trainer(compose, tmp_path, name, space, every=2)
    batches = list(benchmark.train)[:2]
    trainer.train_step(*batches[0])            # step 1: not diagnosed
    trainer.step = 1
    assert trainer.diagnostics.pending == []
    x, targets = batches[1]
    before = copy.deepcopy(trainer.model)
    trainer.train_step(x, targets)             # step 2: diagnosed
    records = trainer.diagnostics.records(epoch=1)
    assert {r["split"] for r in records} == {SPLIT} and {r["step"] for r in records} == {2}
    logged = _logged(records)

    J = _direct_rows(before, trainer.tasks, x, targets, space)
    norms = J.norm(dim=1)
    cos = float(J[0] @ J[1] / (norms[0] * norms[1]))
    a, b = (t.name for t in trainer.tasks)
    assert logged[(a, "grad_norm")] == pytest.approx(float(norms[0]), rel=1e-4)
    assert logged[(b, "grad_norm")] == pytest.approx(float(norms[1]), rel=1e-4)
    assert logged[(f"{a}{PAIR}{b}", "cosine")] == pytest.approx(cos, abs=1e-5)
    assert logged[(ALL, "cosine_mean")] == pytest.approx(cos, abs=1e-5)
    assert logged[(ALL, "conflict_fraction")] == (1.0 if cos < 0 else 0.0)
    G = (J @ J.T).numpy()
    assert logged[(ALL, "gramian_condition")] == pytest.approx(np.linalg.cond(G), rel=1e-3)
    if space == "params":  # the update the step set: the shared parameters' gradient
        d = torch.cat([p.grad.reshape(-1) for p in trainer.model.shared_parameters()]).double()
        assert logged[(ALL, "update_norm")] == pytest.approx(float(d.norm()), rel=1e-4)
        for i, task in enumerate((a, b)):
            expected = float(J[i] @ d / (norms[i] * d.norm()))
            assert logged[(task, "update_cosine")] == pytest.approx(expected, abs=1e-5)


def _op_counts(trainer, batches):
    trainer.train_step(*batches[0])  # warm-up (first-step state)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for x, targets in batches[1:]:
            trainer.train_step(x, targets)
            trainer.step += 1
    return Counter(e.name for e in prof.events()), prof


@pytest.mark.parametrize("name, space", [("uw", "params"), ("mgda", "params"), ("graddrop", "representation")])
def test_off_or_between_diagnosed_steps_the_step_does_the_same_work(compose, tmp_path, name, space):
    """No extra op (no extra backward) when diagnostics are off or the step is not diagnosed."""
    torch.set_num_threads(1)
    counts = {}
    for every in (None, 1000):
        trainer, benchmark = _trainer(compose, tmp_path / str(every), name, space, every)
        trainer.step = 1
        counts[every], _ = _op_counts(trainer, list(benchmark.train)[:4])
    assert counts[None] == counts[1000]
    assert counts[None]["autograd::engine::evaluate_function: AddmmBackward0"] > 0


@pytest.mark.parametrize("name, space", [("uw", "params"), ("mgda", "params"), ("graddrop", "representation"),
                                         ("mgda", "last_shared_layer")])
def test_diagnosed_steps_do_not_sync_and_loss_weightings_pay_t_backward_passes(compose, tmp_path, name, space):
    torch.set_num_threads(1)
    trainer, benchmark = _trainer(compose, tmp_path, name, space, every=1)
    base, _ = _trainer(compose, tmp_path / "off", name, space, every=None)
    batches = list(benchmark.train)[:4]
    counts, prof = _op_counts(trainer, batches)
    base_counts, _ = _op_counts(base, batches)
    reads = [e.name for e in prof.events() if e.name in HOST_READS and not in_optimizer_step(e)]
    assert reads == [], f"host reads on diagnosed steps: {reads}"
    assert len(trainer.diagnostics.pending) == 4
    backward = "autograd::engine::evaluate_function: AddmmBackward0"
    extra = counts[backward] - base_counts[backward]
    if trainer.strategy.level == "loss":  # T = 2 extra backward passes through the encoder (and a head)
        assert extra > 0
    else:  # gradient strategies reuse the backend's rows
        assert extra == 0
    assert trainer.diagnostics.records(1)  # read once, at the step-level records


def test_bench_diagnostics_script_quick(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_diagnostics.py"), "--steps", "3",
                           "--strategies", "uw:params,mgda:representation"], cwd=tmp_path, capture_output=True,
                          text=True, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["strategy", "space"] and [l.split()[0] for l in lines[1:]] == ["uw", "mgda"]
