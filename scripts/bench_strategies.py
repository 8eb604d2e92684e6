#!/usr/bin/env python
"""Step time and peak memory of every strategy relative to equal weighting (EW).

For each model - MultiLeNet on MultiMNIST-shaped inputs, a 40-task MLP, and a dilated ResNet-50
(torchvision, ``replace_stride_with_dilation=[False, True, True]``, no pretrained weights) with
three dense conv heads (13-class segmentation, depth, normals) on 288x384 inputs at batch 8 - and
for each strategy in params and representation space (loss weightings once), it runs the real
training step of the trainer (:func:`mtl_bench.train.trainer.training_step`) on one fixed random
batch: ``--warmup`` steps, then ``--steps`` timed steps (CUDA-synchronised on the GPU), and reports
the median step time and the peak memory allocated during the timed steps (CUDA only; on the CPU
the column is empty), both also relative to EW on the same model and batch. It prints a Markdown
table and writes the rows as CSV to ``--out``.

    python scripts/bench_strategies.py --out results/bench/strategies_h100.csv
    python scripts/bench_strategies.py --quick --out /tmp/bench.csv      # CPU smoke test, seconds
"""
from __future__ import annotations

import argparse
import copy
import csv
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mtl_bench.data.tasks import Task, classification_loss  # noqa: E402
from mtl_bench.models.lenet import build_multilenet  # noqa: E402
from mtl_bench.models.mlp import build_mlp  # noqa: E402
from mtl_bench.models.multitask import MultiTaskModel  # noqa: E402
from mtl_bench.strategies import available_strategies, build_strategy, strategy_class  # noqa: E402
from mtl_bench.train.gradients import GradientBackend  # noqa: E402
from mtl_bench.train.trainer import training_step  # noqa: E402

MODELS = ("multilenet", "mlp40", "resnet50")
SPACES = ("params", "representation")


# ------------------------------------------------------------------------------------- models
def multilenet_case(quick: bool, device):
    batch = 16 if quick else 256
    model = build_multilenet(["left", "right"])
    tasks = [Task("left", classification_loss), Task("right", classification_loss)]
    x = torch.randn(batch, 1, 28, 28)
    targets = {t.name: torch.randint(0, 10, (batch,)) for t in tasks}
    return model, tasks, x, targets


def mlp40_case(quick: bool, device):
    batch, width, dim = (16, 32, 64) if quick else (256, 512, 512)
    names = [f"attr{i:02d}" for i in range(40)]
    model = build_mlp(names, input_dim=dim, output_dim=2, hidden=width, layers=4)
    tasks = [Task(n, classification_loss) for n in names]
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


CASES = {"multilenet": multilenet_case, "mlp40": mlp40_case, "resnet50": resnet50_case}


# ------------------------------------------------------------------------------------ measuring
def measure(model, tasks, x, targets, name, space, method, warmup, steps, device):
    strategy = build_strategy(name, len(tasks)).to(device)
    model = copy.deepcopy(model).to(device)
    optimizer = torch.optim.SGD([{"params": list(model.parameters())}, *strategy.optimizer_groups()], lr=1e-6)
    backend = GradientBackend(space=space, method=method)
    cuda = device.type == "cuda"
    for _ in range(warmup):
        training_step(model, strategy, backend, optimizer, tasks, x, targets)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times, passes = [], 0
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        _, _, p = training_step(model, strategy, backend, optimizer, tasks, x, targets)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        passes += p
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return {"median_ms": 1000 * statistics.median(times), "peak_mb": peak, "passes": passes / steps,
            "vmap_chunk": backend.last_chunk, "solver_failures": getattr(strategy, "solver_failures", 0)}


def runs_for(names: list[str], spaces: list[str]):
    for name in names:
        cls = strategy_class(name)
        if cls.level == "loss":
            yield name, "-"
        else:
            for space in spaces:
                if space in cls.spaces:
                    yield name, space


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--strategies", nargs="+", default=None, help="default: all")
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=SPACES)
    parser.add_argument("--dense-heads", default="simple", choices=["simple", "deeplab"],
                        help="resnet50 heads: simple conv heads (default) or LibMTL's DeepLab ASPP heads")
    parser.add_argument("--method", default="auto", choices=["loop", "vmap", "auto"], help="grad.method")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes, 1 warm-up and 2 timed steps, one CPU thread: a CPU smoke test")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 with --quick)")
    args = parser.parse_args(argv)
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    warmup, steps = (1, 2) if args.quick else (args.warmup, args.steps)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels in the warm-up
    names = args.strategies or available_strategies()
    unknown = sorted(set(names) - set(available_strategies()))
    if unknown:
        parser.error(f"unknown strategies {unknown}; available: {', '.join(available_strategies())}")
    if "ew" in names:
        names = ["ew"] + [n for n in names if n != "ew"]
    else:
        names = ["ew", *names]
    command = " ".join(shlex.quote(a) for a in ["python", "scripts/bench_strategies.py", *(argv or sys.argv[1:])])
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"

    rows = []
    for model_name in args.models:
        torch.manual_seed(0)
        extra = {"heads": args.dense_heads} if model_name == "resnet50" else {}
        model, tasks, x, targets = CASES[model_name](args.quick, device, **extra)
        x = x.to(device)
        targets = {k: v.to(device) for k, v in targets.items()}
        baseline = None
        for name, space in runs_for(names, args.spaces):
            row = {"model": model_name, "tasks": len(tasks), "batch": x.shape[0], "strategy": name,
                   "space": space, "method": args.method if space == "params" else "-", "device": device_name}
            try:
                result = measure(model, tasks, x, targets, name, space if space != "-" else "params", args.method,
                                 warmup, steps, device)
                row.update(result, status="ok")
            except Exception as err:  # keep measuring the others; the row says why
                row.update(median_ms=None, peak_mb=None, status=f"{type(err).__name__}: {err}"[:200])
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            if name == "ew":
                baseline = row
            ok = baseline and baseline.get("median_ms") and row.get("median_ms")
            row["time_vs_ew"] = row["median_ms"] / baseline["median_ms"] if ok else None
            row["memory_vs_ew"] = (row["peak_mb"] / baseline["peak_mb"]
                                   if ok and row.get("peak_mb") and baseline.get("peak_mb") else None)
            rows.append(row)
            print(f"{model_name:<10} {name:<9} {space:<15} {_fmt(row.get('median_ms'))} ms "
                  f"x{_fmt(row['time_vs_ew'])} {row['status']}", file=sys.stderr, flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["model", "tasks", "batch", "strategy", "space", "method", "median_ms", "time_vs_ew", "peak_mb",
              "memory_vs_ew", "passes", "vmap_chunk", "solver_failures", "device", "status"]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(markdown(rows, command, device_name, torch.__version__))
    return 0


def _fmt(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def markdown(rows, command, device_name, torch_version) -> str:
    lines = [f"Step time and peak memory relative to EW ({device_name}, torch {torch_version}).",
             f"Command: `{command}`", "",
             "| model | strategy | space | median ms | x EW | peak MiB | x EW mem | encoder passes | status |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['strategy']} | {r['space']} | {_fmt(r.get('median_ms'))} | "
                     f"{_fmt(r.get('time_vs_ew'))} | {_fmt(r.get('peak_mb'), 0)} | {_fmt(r.get('memory_vs_ew'))} | "
                     f"{_fmt(r.get('passes'), 1)} | {r['status']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
