#!/usr/bin/env python
"""Step time and peak memory of every strategy against the floors of the same model and batch.

Workloads: MultiLeNet on MultiMNIST-shaped inputs (2 tasks, batch 256), a small conv encoder
with 40 tasks (batch 32, 64x64 inputs, the CelebA preset's size; ``--conv40-size``), and
(default on a GPU) a 40-task MLP and a dilated
ResNet-50 (torchvision, ``replace_stride_with_dilation=[False, True, True]``, no pretrained
weights) with three dense heads on 288x384 inputs at batch 8. For each workload it runs the real
training step of the trainer (:func:`mtl_bench.train.trainer.training_step`) on one fixed random
batch for every strategy in every gradient space it supports (loss weightings once), plus two
references measured in the same run:

- ``ew``: equal weighting, one forward and one backward (the reference of loss weightings and of
  the representation / last-shared-layer spaces, whose cost is one encoder backward too);
- ``floor``: one forward and T backward passes of the task losses accumulated into ``.grad``,
  then the optimiser step: what any exact params-space method must pay (its reference);
- ``ew+forward``: the EW step plus one forward without grad, the reference of loss weightings
  with an after-step hook that re-evaluates the batch (FAMO).

Rows are measured interleaved: every row is built and warmed up (``--warmup`` steps, which also
covers ``grad.method=auto``'s timed trials), then rounds of ``--steps`` steps of every row in turn:
``--repeats`` rounds, or more where steps are short, as many as give a row of the median warm-up
step time ``--min-seconds`` of timed steps (default 3: about 50 rounds on MultiLeNet, 10 on the
40-task workload); the median step time over all rounds is reported (CUDA-synchronised on the
GPU), and each ratio to a reference with a 95% interval: a bootstrap over the rounds, each
resampled round taking the row's and the reference's steps of that round together (paired).
Peak memory is measured after the timing, one step per row: bytes of tensors allocated during the
step above what was allocated before it (CUDA: ``max_memory_allocated``; CPU: the torch
profiler's allocation events). It prints a Markdown table and writes the rows as CSV to
``--out`` (and the table to the same name with ``.md``).

    python scripts/bench_strategies.py --out results/bench/strategies_cpu.csv          # CPU, minutes
    python scripts/bench_strategies.py --out results/bench/strategies_h100.csv         # GPU: all workloads
    python scripts/bench_strategies.py --quick --out /tmp/bench.csv      # CPU smoke test, seconds

On the CPU it runs with one intra-op thread (``--threads``); the ratios, not the milliseconds,
are what transfers between machines.
"""
from __future__ import annotations

import argparse
import copy
import csv
import math
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mtl_bench.data.tasks import Task, classification_task  # noqa: E402
from mtl_bench.models.lenet import build_multilenet  # noqa: E402
from mtl_bench.models.mlp import build_mlp  # noqa: E402
from mtl_bench.models.multitask import MultiTaskModel  # noqa: E402
from mtl_bench.strategies import available_strategies, build_strategy, strategy_class  # noqa: E402
from mtl_bench.train import host_memory  # noqa: E402
from mtl_bench.train.gradients import GradientBackend  # noqa: E402
from mtl_bench.strategies.base import Strategy  # noqa: E402
from mtl_bench.strategies.solvers import one_blas_thread_held  # noqa: E402
from mtl_bench.train.trainer import evaluate_losses, training_step  # noqa: E402

MODELS = ("multilenet", "conv40", "mlp40", "resnet50")
CPU_MODELS = ("multilenet", "conv40")
SPACES = ("params", "representation", "last_shared_layer")
REFERENCES = ("floor", "ew", "ew+forward")


# ------------------------------------------------------------------------------------- models
def multilenet_case(quick: bool, device):
    batch = 16 if quick else 256
    model = build_multilenet(["left", "right"])
    tasks = [classification_task("left"), classification_task("right")]
    x = torch.randn(batch, 1, 28, 28)
    targets = {t.name: torch.randint(0, 10, (batch,)) for t in tasks}
    return model, tasks, x, targets


def conv40_case(quick: bool, device, size: int = 64):
    """A small conv encoder (three 3x3 conv-BN-ReLU-max-pool blocks, 32/64/128 channels, global
    average pooling, Linear(128, 128)-ReLU as the last shared layer: a narrow version of FAMO's
    CelebA network) with 40 binary linear heads, CelebA-like: batch 32 of ``size`` x ``size``
    images (64: configs/dataset/celeba.yaml's image_size)."""
    batch, size = (4, 16) if quick else (32, size)
    blocks = []
    for cin, cout in ((3, 32), (32, 64), (64, 128)):
        blocks += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
    last = nn.Linear(128, 128)
    encoder = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), last, nn.ReLU())
    names = [f"attr{i:02d}" for i in range(40)]
    model = MultiTaskModel(encoder, {n: nn.Linear(128, 2) for n in names}, last_shared_layer=last)
    tasks = [classification_task(n) for n in names]
    x = torch.randn(batch, 3, size, size)
    targets = {n: torch.randint(0, 2, (batch,)) for n in names}
    return model, tasks, x, targets


def mlp40_case(quick: bool, device):
    batch, width, dim = (16, 32, 64) if quick else (256, 512, 512)
    names = [f"attr{i:02d}" for i in range(40)]
    model = build_mlp(names, input_dim=dim, output_dim=2, hidden=width, layers=4)
    tasks = [classification_task(n) for n in names]
    x = torch.randn(batch, dim)
    targets = {n: torch.randint(0, 2, (batch,)) for n in names}
    return model, tasks, x, targets


class ResNetEncoder(nn.Module):
    """torchvision's ResNet-50 up to layer4, dilated (output stride 8), no pretrained weights."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2,
                                  net.layer3, net.layer4)

    def forward(self, x):
        return self.body(x)


class DenseHead(nn.Module):
    def __init__(self, out_channels: int, size: tuple[int, int], width: int = 256):
        super().__init__()
        self.size = size
        self.conv = nn.Sequential(nn.Conv2d(2048, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, out_channels, 1))

    def forward(self, z):
        return F.interpolate(self.conv(z), size=self.size, mode="bilinear", align_corners=False)


def _depth_loss(pred, target):
    valid = (target > 0).float()
    return ((pred - target).abs() * valid).sum() / valid.sum().clamp_min(1)


def _normal_loss(pred, target):
    valid = (target.abs().sum(1, keepdim=True) > 0).float()
    cosine = (F.normalize(pred, dim=1) * target).sum(1, keepdim=True)
    return ((1 - cosine) * valid).sum() / valid.sum().clamp_min(1)


def _segmentation_loss(pred, target):
    return F.cross_entropy(pred, target, ignore_index=-1)


def resnet50_case(quick: bool, device, heads: str = "simple"):
    batch, size = (2, (32, 32)) if quick else (8, (288, 384))
    if heads == "deeplab":  # LibMTL's NYUv2 model (mtl_bench.models.resnet_dense), random weights
        from mtl_bench.models.resnet_dense import build_resnet50_dilated

        model = build_resnet50_dilated({"segmentation": 13, "depth": 1, "normal": 3})
    else:
        encoder = ResNetEncoder()
        heads_ = {"segmentation": DenseHead(13, size), "depth": DenseHead(1, size), "normal": DenseHead(3, size)}
        model = MultiTaskModel(encoder, heads_)
    tasks = [Task("segmentation", _segmentation_loss), Task("depth", _depth_loss), Task("normal", _normal_loss)]
    x = torch.randn(batch, 3, *size)
    normals = F.normalize(torch.randn(batch, 3, *size), dim=1)
    targets = {"segmentation": torch.randint(-1, 13, (batch, *size)), "depth": torch.rand(batch, 1, *size) * 10,
               "normal": normals}
    return model, tasks, x, targets


CASES = {"multilenet": multilenet_case, "conv40": conv40_case, "mlp40": mlp40_case, "resnet50": resnet50_case}


# ------------------------------------------------------------------------------------ measuring
def floor_step(model, tasks, x, targets, optimizer):
    """One forward and T backward passes of the task losses into ``.grad``, then the optimiser:
    the floor of any exact params-space method (returns T encoder passes, like training_step)."""
    optimizer.zero_grad(set_to_none=True)
    preds = model(x)
    for i, task in enumerate(tasks):
        task.loss(preds[task.name], targets[task.name]).backward(retain_graph=i < len(tasks) - 1)
    optimizer.step()
    return None, None, len(tasks)


def make_row(model, tasks, x, targets, name, space, method, device) -> dict:
    """A row to measure: its description and ``step()``, one training step on its own model copy."""
    model = copy.deepcopy(model).to(device)
    row = {"strategy": name, "space": space, "method": method if space == "params" and name != "floor" else "-"}
    if name == "floor":
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
        row["step"] = lambda: floor_step(model, tasks, x, targets, optimizer)
        return row
    if name == "ew+forward":
        ew, optimizer = build_strategy("ew", len(tasks)), torch.optim.SGD(model.parameters(), lr=1e-6)
        backend = GradientBackend()

        def step():
            result = training_step(model, ew, backend, optimizer, tasks, x, targets)
            evaluate_losses(model, tasks, x, targets)
            return result

        row["step"] = step
        return row
    base, options = split_variant(name)
    strategy = build_strategy(base, len(tasks), **options).to(device)
    optimizer = torch.optim.SGD([{"params": list(model.parameters())}, *strategy.optimizer_groups()], lr=1e-6)
    backend = GradientBackend(space=space if space != "-" else "params", method=method)
    row.update(backend=backend, strategy_object=strategy)
    row["step"] = lambda: training_step(model, strategy, backend, optimizer, tasks, x, targets)
    return row


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def time_steps(step, n: int, device, clock: str = "wall") -> list[float]:
    """Seconds of ``n`` steps each, by the wall clock or this process's CPU time (which a
    loaded machine's other processes disturb less; meaningful with one thread on the CPU)."""
    now = CLOCKS[clock]
    times = []
    for _ in range(n):
        sync(device)
        t0 = now()
        step()
        sync(device)
        times.append(now() - t0)
    return times


def peak_step_bytes(step, device) -> int:
    """Bytes of tensors allocated during one ``step()`` above those allocated before it."""
    if device.type == "cuda":
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    level = peak = 0
    for event in events:  # allocations at their op's start, frees ("[memory]" events) when they happen
        level += event.self_cpu_memory_usage
        peak = max(peak, level)
    return peak


def measure_interleaved(rows: list[dict], warmup: int, steps: int, repeats: int, device, clock: str = "wall",
                        min_seconds: float = 0.0) -> None:
    """Fills each row's median_ms, peak_mb, passes (or status on failure); rows alternate, for
    ``repeats`` rounds or more: as many as give each row ``min_seconds`` of timed steps at the
    median time of the warm-up steps (a fast model gets more samples for the same noise)."""
    live, warm = [], []
    for row in rows:
        try:
            for _ in range(warmup):
                start = time.perf_counter()
                row["passes"] = row["step"]()[2]
                sync(device)
                warm.append(time.perf_counter() - start)
            live.append(row)
        except Exception as err:  # keep measuring the others; the row says why
            row["status"] = f"{type(err).__name__}: {err}"[:200]
    if warm and min_seconds > 0:
        repeats = max(repeats, math.ceil(min_seconds / (steps * statistics.median(warm))))
    rounds = {id(row): [] for row in live}  # [round][step] seconds
    for _ in range(repeats):
        for row in live:
            rounds[id(row)].append(time_steps(row["step"], steps, device, clock))
    for row in live:
        row["round_seconds"] = rounds[id(row)]
        row["median_ms"] = 1000 * statistics.median(t for r in rounds[id(row)] for t in r)
        row["peak_mb"] = peak_step_bytes(row["step"], device) / 2**20
        row["status"] = "ok"
        backend, strategy = row.get("backend"), row.get("strategy_object")
        if backend is not None and row["space"] == "params":
            row["vmap_chunk"] = backend.last_chunk
            row["method"] = row["method"] + ("" if row["method"] != "auto" else f" ({'vmap' if backend.last_chunk else 'loop'})")
        row["solver_failures"] = strategy.stats().get("solver_failures", 0) if strategy is not None else 0


#: non-default settings measured beside the defaults: CAGrad's dual on G / trace(G) with the analytic
#: gradient (its default, the official code's finite-difference SLSQP on the raw Gramian, is slow at 40 tasks)
VARIANTS = ("cagrad:gramian_scaling=trace",)


def split_variant(name: str) -> tuple[str, dict]:
    """``"cagrad:gramian_scaling=trace,c=1e-3"`` -> ``("cagrad", {"gramian_scaling": "trace", "c": 0.001})``;
    values are YAML (lists in brackets may hold commas), numbers such as 1e-3 included."""
    base, _, spec = name.partition(":")
    options = {}
    for item in filter(None, re.split(r",(?![^\[]*\])", spec)):  # commas outside [...]
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"strategy variant {name!r}: write NAME:key=value,key=value (got {item!r})")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):
            try:
                parsed = float(parsed)  # YAML 1.1 reads 1e-3 as a string
            except ValueError:
                pass
        options[key] = parsed
    return base, options


def runs_for(names: list[str], spaces: list[str]):
    """``(strategy, space)`` pairs: the references first, loss weightings once, gradient methods
    in every requested space they support."""
    yield "floor", "params"
    yield "ew", "-"
    if any(reevaluates(strategy_class(split_variant(name)[0])) for name in names):
        yield "ew+forward", "-"
    for name in names:
        cls = strategy_class(split_variant(name)[0])
        if name == "ew":
            continue
        if cls.level == "loss":
            yield name, "-"
        else:
            for space in spaces:
                if space in cls.spaces:
                    yield name, space


def reevaluates(cls) -> bool:
    """Whether a loss weighting re-evaluates the batch after the step (an ``after_step`` hook)."""
    return cls.level == "loss" and cls.after_step is not Strategy.after_step


def reference_of(row) -> str:
    """Params-space gradient methods are held to the floor, loss weightings that re-evaluate the
    batch to EW plus one forward, everything else to EW."""
    if row["strategy"] in REFERENCES:
        return "ew"
    if row["space"] == "params":
        return "floor"
    return "ew+forward" if reevaluates(strategy_class(split_variant(row["strategy"])[0])) else "ew"


BOOTSTRAP_SAMPLES = 2000


def ratio_interval(row_rounds: list[list[float]], ref_rounds: list[list[float]], level: float = 0.95,
                   samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``median(row steps) / median(reference steps)`` over the
    rounds, paired: a resampled round brings the row's and the reference's steps of that round
    (which ran moments apart), so a slow round moves both. None with fewer than 3 rounds."""
    n = min(len(row_rounds), len(ref_rounds))
    if n < 3:
        return None
    row, ref = np.asarray(row_rounds[:n]), np.asarray(ref_rounds[:n])
    picks = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    ratios = np.median(row[picks].reshape(samples, -1), axis=1) / np.median(ref[picks].reshape(samples, -1), axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def add_ratios(rows: list[dict]) -> None:
    refs = {r["strategy"]: r for r in rows if r["strategy"] in REFERENCES}
    for row in rows:
        ref = refs.get(reference_of(row), {})
        row["reference"] = reference_of(row)
        for key, field in (("median_ms", "time_vs_ref"), ("peak_mb", "memory_vs_ref")):
            ok = row.get(key) and ref.get(key)
            row[field] = row[key] / ref[key] if ok else None
        interval = (ratio_interval(row["round_seconds"], ref["round_seconds"])
                    if row.get("round_seconds") and ref.get("round_seconds") else None)
        row["time_vs_ref_low"], row["time_vs_ref_high"] = interval or (None, None)
        ew = refs.get("ew", {})
        row["time_vs_ew"] = row["median_ms"] / ew["median_ms"] if row.get("median_ms") and ew.get("median_ms") else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="CSV file to write (the Markdown table goes beside it, .md)")
    parser.add_argument("--models", nargs="+", default=None, choices=MODELS,
                        help=f"default: {' '.join(CPU_MODELS)} on the CPU, all on a GPU")
    parser.add_argument("--strategies", nargs="+", default=None,
                        help="default: all, plus the variants of VARIANTS; NAME:key=value,... sets options")
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=SPACES)
    parser.add_argument("--dense-heads", default="simple", choices=["simple", "deeplab"],
                        help="resnet50 heads: simple conv heads (default) or LibMTL's DeepLab ASPP heads")
    parser.add_argument("--host-memory", default="heap", choices=host_memory.CHOICES,
                        help="as trainer.host_memory (heap: freed host memory reused, as in training; system: malloc as it is)")
    parser.add_argument("--conv40-size", type=int, default=64,
                        help="conv40's image side (64: the CelebA preset's; at 32 the T x P gradient rows outweigh its activations)")
    parser.add_argument("--method", default="auto", choices=["loop", "vmap", "auto"], help="grad.method")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--warmup", type=int, default=7, help="steps per row before timing (>= 6 covers auto's trials)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row and round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds over all rows (interleaved), at least")
    parser.add_argument("--min-seconds", type=float, default=3.0,
                        help="more rounds where steps are short: at least this many seconds of timed steps per row")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, 1 warm-up, 1 round of 2 steps: a CPU smoke test")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on the CPU)")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                        help="wall: elapsed time; process: this process's CPU time (CPU, one thread, loaded machine)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cpu" or args.threads:
        torch.set_num_threads(args.threads or 1)
    host_memory.apply(args.host_memory)
    warmup, steps, repeats = (1, 2, 1) if args.quick else (args.warmup, args.steps, args.repeats)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels in the warm-up
    models = args.models or (list(MODELS) if device.type == "cuda" else list(CPU_MODELS))
    names = args.strategies or [*available_strategies(), *VARIANTS]
    unknown = sorted({split_variant(n)[0] for n in names} - set(available_strategies()))
    if unknown:
        parser.error(f"unknown strategies {unknown}; available: {', '.join(available_strategies())}")
    command = " ".join(shlex.quote(a) for a in ["python", "scripts/bench_strategies.py", *(argv or sys.argv[1:])])
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"

    rows = []
    for model_name in models:
        torch.manual_seed(0)
        extra = ({"heads": args.dense_heads} if model_name == "resnet50" else
                 {"size": args.conv40_size} if model_name == "conv40" else {})
        model, tasks, x, targets = CASES[model_name](args.quick, device, **extra)
        x = x.to(device)
        targets = {k: v.to(device) for k, v in targets.items()}
        case_rows = []
        for name, space in runs_for(names, args.spaces):
            torch.manual_seed(0)
            row = make_row(model, tasks, x, targets, name, space, args.method, device)
            row.update(model=model_name, tasks=len(tasks), batch=x.shape[0], input="x".join(map(str, x.shape[1:])),
                       device=device_name)
            case_rows.append(row)
        with one_blas_thread_held():  # as a training run holds it (Trainer.fit)
            measure_interleaved(case_rows, warmup, steps, repeats, device, args.clock,
                                0.0 if args.quick else args.min_seconds)
        add_ratios(case_rows)
        for row in case_rows:
            print(f"{model_name:<10} {row['strategy']:<9} {row['space']:<17} {_fmt(row.get('median_ms'))} ms "
                  f"x{_fmt(row.get('time_vs_ref'))} {row['reference']} {row['status']}", file=sys.stderr, flush=True)
            for key in ("step", "backend", "strategy_object", "round_seconds"):
                row.pop(key, None)
        rows.extend(case_rows)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["model", "tasks", "batch", "input", "strategy", "space", "method", "median_ms", "reference", "time_vs_ref",
              "time_vs_ref_low", "time_vs_ref_high", "time_vs_ew", "peak_mb", "memory_vs_ref", "passes", "vmap_chunk", "solver_failures", "device", "status"]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows, command, device_name, torch.__version__, torch.get_num_threads(), args.clock)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0


def _fmt(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def markdown(rows, command, device_name, torch_version, threads, clock="wall") -> str:
    lines = [f"Step time ({clock} clock) and peak memory per step against the floors measured in the same run "
             f"({device_name}, torch {torch_version}, {threads} intra-op thread(s)). `floor`: forward + T backward; `ew`: forward + "
             "1 backward. Params-space gradient methods are held to the floor, the rest to EW.",
             f"Command: `{command}`", "",
             "x time: the row's median step over the reference's (`vs`), with its 95% interval (a bootstrap "
             "over the interleaved rounds, paired by round).", "",
             "| model, input | strategy | space | method | median ms | vs | x time | 95% interval | x EW | peak MiB | x mem | encoder passes | status |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        interval = (f"{r['time_vs_ref_low']:.3f}-{r['time_vs_ref_high']:.3f}"
                    if r.get("time_vs_ref_low") is not None else "")
        lines.append(f"| {r['model']} {r.get('input', '')} | {r['strategy']} | {r['space']} | {r['method']} | {_fmt(r.get('median_ms'))} | "
                     f"{r['reference']} | {_fmt(r.get('time_vs_ref'), 3)} | {interval} | {_fmt(r.get('time_vs_ew'), 3)} | "
                     f"{_fmt(r.get('peak_mb'), 1)} | {_fmt(r.get('memory_vs_ref'))} | {_fmt(r.get('passes'), 1)} | "
                     f"{r['status']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
