"""Data-parallel training equals one process (issue 14's acceptance).

Two processes on the CPU (gloo), each with half of every global batch, end with the parameters of
one process that takes the whole batch, for every strategy of ``mtl-bench list strategies`` in its
default space (plus the other spaces of a few), on the synthetic MLP and on MultiLeNet with dropout
off, and for a set of strategies with masked losses (IGNORE labels; a tiny dense net whose targets
have invalid pixels, where shards must be weighted by labelled elements, not examples), after
four SGD steps in float64, the last two on batches of odd size (shards of 4 and 3 rows, then 1 and 0). One
process group runs every case in sequence (a group per case would cost seconds each).

Tolerance: the largest parameter difference is at most 1e-8 for gradient methods (float64 rows
summed in another order; the iterative solvers of CAGrad and Nash-MTL reach 1e-9), and 1e-6 for
loss weightings, whose losses the training step combines in float32 (``training_step`` casts
them), so their weights agree to float32's 1e-7 (SLAW, the largest, 1e-7).
"""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mtl_bench.data.tasks import classification_task, regression_task
from mtl_bench.models.lenet import build_multilenet
from mtl_bench.models.mlp import build_mlp
from mtl_bench.strategies import available_strategies, build_strategy, strategy_class
from mtl_bench.train.distributed import DistContext, RankRandomness
from mtl_bench.train.gradients import GradientBackend, batch_kpis
from mtl_bench.train.trainer import training_step

# global batch sizes: 7 splits 4 + 3 (unequal shards, as an epoch's last batch); 1 splits 1 + 0 (a
# last batch smaller than the ranks: an empty shard, whose mean losses are 0 / 0)
BATCHES = (8, 8, 7, 1)
TOL_GRADIENT = 1e-8
TOL_LOSS = 1e-6


def cases() -> list[tuple[str, str, str, dict]]:
    out = []
    for problem in ("synthetic", "multilenet"):
        for name in available_strategies():
            cls = strategy_class(name)
            out.append((problem, name, cls.default_space, {}))
    for name, space in (("mgda", "params"), ("mgda", "last_shared_layer"), ("graddrop", "params"),
                        ("upgrad", "representation"), ("pcgrad", "representation"),
                        ("nash", "representation"), ("aligned", "representation"), ("gradnorm", "params")):
        out.append(("synthetic", name, space, {}))
    out.append(("synthetic", "pcgrad", "params", {"loss_weighting": "uw"}))
    # losses over labelled elements (IGNORE labels; invalid pixels of dense tasks): shards weighted
    # by their labelled counts, not by their examples
    masked = [("ew", "params"), ("uw", "params"), ("famo", "params"), ("mgda", "representation"),
              ("nash", "params"), ("nash", "representation"), ("graddrop", "representation"),
              ("db_mtl", "params"), ("gradnorm", "last_shared_layer")]
    out += [("labelled", name, space, {}) for name, space in masked + [("dtp", "params")]]
    out += [("dense", name, space, {}) for name, space in masked + [("dtp", "params")]]
    return out


def problem(name: str, dropout: float = 0.0):
    """(model, tasks, global batches) built from seed 0: identical in every process."""
    torch.manual_seed(0)
    data = torch.Generator().manual_seed(1)
    if name == "dense":  # segmentation, depth and normals with invalid pixels, on a tiny conv net
        from torch import nn

        from mtl_bench.data.dense import depth_task, normal_task, segmentation_task
        from mtl_bench.models.multitask import MultiTaskModel

        conv = nn.Conv2d(3, 4, 3, padding=1)
        heads = {"segmentation": nn.Conv2d(4, 3, 1), "depth": nn.Conv2d(4, 1, 1), "normal": nn.Conv2d(4, 3, 1)}
        model = MultiTaskModel(nn.Sequential(conv, nn.Tanh()), heads, last_shared_layer=conv)
        tasks = [segmentation_task(num_classes=3), depth_task(), normal_task()]
        batches = []
        for n in BATCHES:
            valid = torch.rand(n, 1, 4, 5, generator=data) > torch.linspace(0.1, 0.9, n).view(n, 1, 1, 1)
            normals = torch.nn.functional.normalize(torch.randn(n, 3, 4, 5, generator=data), dim=1)
            batches.append((torch.randn(n, 3, 4, 5, generator=data), {
                "segmentation": torch.where(valid[:, 0], torch.randint(3, (n, 4, 5), generator=data), -1),
                "depth": torch.rand(n, 1, 4, 5, generator=data) * valid, "normal": normals * valid}))
    elif name == "synthetic":
        task_names = ["a", "b", "c"]
        model = build_mlp(task_names, input_dim=6, output_dim=1, hidden=8, layers=2)
        tasks = [regression_task(t) for t in task_names]
        batches = [(torch.randn(n, 6, generator=data), {t: torch.randn(n, 1, generator=data) for t in task_names})
                   for n in BATCHES]
    else:
        task_names = ["left", "right"]
        model = build_multilenet(task_names, dropout="standard", p=dropout)
        tasks = [classification_task(t) for t in task_names]
        low = -1 if name == "labelled" else 0  # labelled: about one label in 11 is IGNORE (-1)
        batches = [(torch.randn(n, 1, 28, 28, generator=data), {t: torch.randint(low, 10, (n,), generator=data)
                                                                   for t in task_names}) for n in BATCHES]
        if name == "labelled":  # rank 0's shard mostly unlabelled for the first task: unequal counts
            for _, targets in batches:
                targets["left"][:3] = -1
    model = model.double()
    batches = [(x.double(), {t: y.double() if y.is_floating_point() else y for t, y in ys.items()}) for x, ys in batches]
    return model, tasks, batches


def train(problem_name, name, space, hparams, context, dropout=0.0):
    """The parameters after the steps of ``BATCHES``: of the whole batch (context None) or of this
    rank's shard (forward passes drawing from the rank's own generator, as in the trainer)."""
    model, tasks, batches = problem(problem_name, dropout)
    if context is not None:
        RankRandomness([model.encoder, *model.heads.values()], context.device, 0, context.rank)
    strategy = build_strategy(name, len(tasks), **hparams).double()
    backend = GradientBackend(space, "loop")
    backend.dist = context
    groups = [{"params": list(model.parameters())}] + strategy.optimizer_groups()
    optimizer = torch.optim.SGD(groups, lr=0.05, momentum=0.0, weight_decay=0.0)
    for x, targets in batches:
        if context is not None:
            x, targets = context.shard(x, targets)
        training_step(model, strategy, backend, optimizer, tasks, x, targets, dist=context)
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def metric_cases():
    """(name, metric factory, global batches of (pred, target)) for metrics of every kind of state:
    sums and counts, a confusion matrix, TP/FP/FN counts, and kept values (an exact median)."""
    from mtl_bench.data.celeba import BinaryF1
    from mtl_bench.data.dense import MeanIoU, NormalAngleMedian, PixelAccuracy
    from mtl_bench.data.tasks import Accuracy, MeanSquaredError

    g = torch.Generator().manual_seed(2)
    sizes = (5, 3)  # shards 3 + 2, then 2 + 1
    labels = [(torch.randn(n, 4, generator=g), torch.randint(-1, 4, (n,), generator=g)) for n in sizes]
    binary = [(torch.randn(n, 2, generator=g), torch.randint(-1, 2, (n,), generator=g)) for n in sizes]
    pixels = [(torch.randn(n, 3, 4, 5, generator=g), torch.randint(-1, 3, (n, 4, 5), generator=g)) for n in sizes]
    normals = [(torch.randn(n, 3, 4, 5, generator=g), torch.randn(n, 3, 4, 5, generator=g)
                * (torch.rand(n, 1, 4, 5, generator=g) > 0.3)) for n in sizes]
    values = [(torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)) for n in sizes]
    return [("accuracy", Accuracy, labels), ("mse", MeanSquaredError, values), ("f1", BinaryF1, binary),
            ("miou", lambda: MeanIoU(3), pixels), ("pixel_accuracy", lambda: PixelAccuracy(3), pixels),
            ("median_angle", NormalAngleMedian, normals)]


def kpi_cases():
    """(name, tasks, predictions, targets) of one global batch of 7 rows (shards 4 + 3): the
    built-in KPIs (ratios of sums: accuracy with unlabelled examples, exp(-MSE) in float32 and
    float64, the dense tasks' pixel shares with invalid pixels), with shards that hold nothing
    labelled or valid for a task and a batch that holds nothing labelled for one, and a user's KPI
    that is not a ratio (a median)."""
    from mtl_bench.data.dense import depth_task, normal_task, segmentation_task
    from mtl_bench.data.tasks import Task, classification_loss

    g = torch.Generator().manual_seed(3)
    n = 7
    valid = torch.rand(n, 1, 4, 5, generator=g) > 0.3
    valid[:4] = False  # rank 0's shard: no valid depth or normal pixel
    dense = ([segmentation_task(num_classes=3), depth_task(), normal_task()],
             [torch.randn(n, 3, 4, 5, generator=g), torch.rand(n, 1, 4, 5, generator=g) + 0.5, torch.randn(n, 3, 4, 5, generator=g)],
             {"segmentation": torch.where(valid[:, 0], torch.randint(3, (n, 4, 5), generator=g), -1),
              "depth": (torch.rand(n, 1, 4, 5, generator=g) + 0.5) * valid,
              "normal": torch.nn.functional.normalize(torch.randn(n, 3, 4, 5, generator=g), dim=1) * valid})
    labelled = ([classification_task("left"), classification_task("right")],
                [torch.randn(n, 10, generator=g), torch.randn(n, 10, generator=g)],
                {"left": torch.tensor([-1, -1, -1, -1, 4, 5, 6]), "right": torch.full((n,), -1)})  # none labelled
    regression = ([regression_task("a"), regression_task("b", scale=4.0)],
                  [torch.randn(n, 1, generator=g), torch.randn(n, 2, generator=g)],
                  {"a": torch.randn(n, 1, generator=g), "b": torch.randn(n, 2, generator=g)})
    median = Task(name="m", loss=classification_loss, kpi=lambda pred, target: pred.softmax(dim=1).amax(dim=1).median())
    plain = ([median], [torch.randn(n, 4, generator=g)], {"m": torch.randint(0, 4, (n,), generator=g)})
    regression64 = (regression[0], [p.double() for p in regression[1]], {k: v.double() for k, v in regression[2].items()})
    return [("dense", *dense), ("labelled", *labelled), ("regression", *regression), ("regression64", *regression64),
            ("plain", *plain)]


def sharded_kpis(tasks, preds, targets, context) -> tuple[list[float], int]:
    """The global batch's KPIs from this rank's shard, and the bytes the context moved for them."""
    together = {**targets, **{f"pred:{t.name}": p for t, p in zip(tasks, preds)}}
    _, shard = context.shard(preds[0], together)
    before = context.bytes_reduced
    kpis = context.global_kpis(batch_kpis, tasks, [shard[f"pred:{t.name}"] for t in tasks],
                               {t.name: shard[t.name] for t in tasks})
    return kpis.tolist(), context.bytes_reduced - before


def evaluate_metric(factory, batches, context) -> float:
    metric = factory()
    metric.reset()
    for pred, target in batches:
        if context is not None:
            pred, target = context.shard(pred, {"t": target})
            target = target["t"]
        metric.update(pred, target)
    if context is not None:
        context.reduce_metric(metric)
    return float(metric.compute())


def worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    context = DistContext(rank, world, torch.device("cpu"))
    results = []
    for problem_name, name, space, hparams in cases():
        params = train(problem_name, name, space, hparams, context)
        gathered = [torch.empty_like(params) for _ in range(world)]
        dist.all_gather(gathered, params)
        if rank == 0:
            reference = train(problem_name, name, space, hparams, None)
            initial = torch.cat([p.detach().reshape(-1) for p in problem(problem_name)[0].parameters()])
            results.append({"case": [problem_name, name, space, hparams],
                            "vs_one_process": float((params - reference).abs().max()),
                            "between_ranks": float(max((g - params).abs().max() for g in gathered)),
                            "moved": float((reference - initial).abs().max())})
        dist.barrier()
    # dropout on, a random strategy, shards of 4 and 3 rows: the ranks' masks differ, their shared
    # draws (RLW's weights) do not, and their parameters stay identical
    params = train("multilenet", "rlw", "params", {}, context, dropout=0.5)
    gathered = [torch.empty_like(params) for _ in range(world)]
    dist.all_gather(gathered, params)
    model = problem("multilenet", 0.5)[0]
    RankRandomness([model.encoder, *model.heads.values()], context.device, 0, context.rank)
    features = model.encoder(torch.ones(4, 1, 28, 28, dtype=torch.float64)).detach()
    all_features = [torch.empty_like(features) for _ in range(world)]
    dist.all_gather(all_features, features)
    if rank == 0:
        results.append({"case": ["dropout"], "between_ranks": float(max((g - params).abs().max() for g in gathered)),
                        "masks_differ": bool((all_features[0] != all_features[1]).any())})
    for name, factory, batches in metric_cases():
        value = evaluate_metric(factory, batches, context)
        if rank == 0:
            results.append({"case": ["metric", name], "sharded": value,
                            "one_process": evaluate_metric(factory, batches, None)})
    for name, tasks, preds, targets in kpi_cases():
        kpis, moved = sharded_kpis(tasks, preds, targets, context)
        if rank == 0:
            results.append({"case": ["kpi", name], "sharded": kpis, "bytes": moved, "tasks": len(tasks),
                            "one_process": batch_kpis(tasks, preds, targets).tolist()})
    if rank == 0:
        with open(out, "w") as f:
            json.dump(results, f)
    dist.destroy_process_group()
    # torch 2.14's gloo workers abort now and then at interpreter exit ("terminate called without
    # an active exception", after all work is done): leave without the interpreter's teardown
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    out = folder / "results.json"
    mp.spawn(worker, args=(2, str(folder / "init"), str(out)), nprocs=2, join=True)
    return {json.dumps(r["case"]): r for r in json.loads(out.read_text())}


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{p}-{n}-{s}{'-' + '-'.join(map(str, h.values())) if h else ''}"
                                             for p, n, s, h in CASES])
def test_two_processes_equal_one(results, case):
    result = results[json.dumps(list(case))]
    problem_name, name, space, hparams = case
    tol = TOL_LOSS if strategy_class(name).level == "loss" else TOL_GRADIENT
    assert result["moved"] > 1e-4, "the parameters must move for the comparison to mean anything"
    assert result["vs_one_process"] <= tol, result
    assert result["between_ranks"] == 0.0, result


@pytest.mark.parametrize("name", ["accuracy", "mse", "f1", "miou", "pixel_accuracy", "median_angle"])
def test_sharded_evaluation_reduces_metrics_exactly(results, name):
    result = results[json.dumps(["metric", name])]
    # counts and kept values: exact; float32 sums of a batch are summed per shard first (1e-7)
    assert result["sharded"] == pytest.approx(result["one_process"], rel=1e-6, abs=0), result


@pytest.mark.parametrize("name", ["dense", "labelled", "regression", "regression64", "plain"])
def test_sharded_kpis_are_the_global_batchs(results, name):
    """DTP's KPIs in a data-parallel run are those of the whole batch: the built-in ones (ratios of
    sums) from one all-reduce of 2T float64 numbers, a user's KPI that is not a ratio (a median)
    from the gathered predictions and targets."""
    result = results[json.dumps(["kpi", name])]
    assert result["sharded"] == pytest.approx(result["one_process"], rel=1e-6, abs=1e-7), result
    if name == "plain":
        assert result["bytes"] > 2 * 8 * result["tasks"], result
    else:
        assert result["bytes"] == 2 * 8 * result["tasks"], result


def test_dropout_draws_per_rank_and_shared_draws_agree(results):
    result = results[json.dumps(["dropout"])]
    assert result["masks_differ"], "the ranks' dropout masks must be drawn independently"
    assert result["between_ranks"] == 0.0, result


def test_every_listed_strategy_is_covered():
    assert {n for p, n, s, h in CASES if p == "multilenet"} == set(available_strategies())
    assert len(available_strategies()) == 23


def _clear(monkeypatch):
    """No launcher variables; those the code exports are restored (removed) after the test."""
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "SUBMITIT_EXECUTOR", "CUDA_VISIBLE_DEVICES", *[k for k in os.environ if k.startswith("SLURM_")]):
        monkeypatch.setenv(key, "")  # recorded, so that monkeypatch restores the key's original state
        monkeypatch.delenv(key)


def test_environment_of_torchrun(monkeypatch):
    from mtl_bench.train.distributed import environment

    _clear(monkeypatch)
    assert environment() is None
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert environment() is None  # one process: no group
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert environment() == {"rank": 3, "world": 8, "local_rank": 1}


def test_environment_of_a_slurm_job_of_several_tasks(monkeypatch):
    """The submitit launcher (or srun) starts one task per GPU; submitit's helper names the
    master (the first host of the job), and LOCAL_RANK picks the task's GPU on its node."""
    from mtl_bench.train.distributed import environment

    _clear(monkeypatch)
    for key, value in {"SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123",
                       "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_NNODES": "2", "SLURM_NODEID": "1"}.items():
        monkeypatch.setenv(key, value)
    assert environment() == {"rank": 3, "world": 4, "local_rank": 1}
    assert os.environ["MASTER_ADDR"] == "node1" and os.environ["MASTER_PORT"].isdigit()
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # every GPU of the node stays visible
