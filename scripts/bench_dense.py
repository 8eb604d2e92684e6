#!/usr/bin/env python
"""Step time and peak memory of the real training step on NYUv2- and CelebA-shaped tensors.

    python scripts/bench_dense.py                    # full sizes (a GPU), writes results/bench_dense.{csv,md}
    python scripts/bench_dense.py --quick --out /tmp/bench.csv   # CPU smoke run at tiny sizes

Settings (synthetic tensors with the real shapes, dtypes and target conventions):

- ``nyuv2-segnet``: SegNet (MTAN split), batch 8, 3 x 288 x 384, 3 dense tasks;
- ``nyuv2-resnet50``: dilated ResNet-50 + DeepLab heads, batch 8, 3 x 288 x 384, 3 dense tasks;
- ``celeba-resnet18``: CIFAR-stem ResNet-18, batch 256, 3 x 64 x 64, 40 binary tasks.

Strategies: EW (one backward), MGDA (Gramian of per-task gradients; default space
representation = MGDA-UB) and GradNorm (last shared layer); ``--strategies`` picks others.
Each step is the trainer's own step (``Trainer.train_step``: forward, losses, strategy,
gradient backend, optimiser step). Timing: ``--warmup`` untimed steps, then ``--steps`` steps,
each bracketed by CUDA events (or ``perf_counter`` on the CPU) and synchronised once at the end;
the table reports the median and mean step time, the ratio to EW, and the peak memory
(``torch.cuda.max_memory_allocated`` over the timed steps; on the CPU the process's peak RSS,
which only grows, so CPU memory numbers are indicative only).
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mtl_bench.data.benchmark import Benchmark  # noqa: E402
from mtl_bench.data.celeba import ATTRIBUTES, attribute_task  # noqa: E402
from mtl_bench.data.dense import depth_task, normal_task, segmentation_task  # noqa: E402
from mtl_bench.strategies import build_strategy, strategy_class  # noqa: E402
from mtl_bench.train.gradients import GradientBackend  # noqa: E402
from mtl_bench.train.trainer import Trainer, TrainerConfig  # noqa: E402


@dataclass
class Setting:
    name: str
    model: str
    batch: int
    size: tuple[int, int]
    tasks: int

    def build(self):
        """(model, tasks, x, targets) on the CPU."""
        b, (h, w) = self.batch, self.size
        x = torch.rand(b, 3, h, w)
        if self.name.startswith("nyuv2"):
            tasks = [segmentation_task(), depth_task(), normal_task()]
            label = torch.randint(0, 13, (b, h, w))
            label[:, : h // 10] = -1
            depth = torch.rand(b, 1, h, w) * 10
            depth[..., : w // 10] = 0
            normal = torch.nn.functional.normalize(torch.randn(b, 3, h, w), dim=1)
            targets = {"segmentation": label, "depth": depth, "normal": normal}
            channels = {"segmentation": 13, "depth": 1, "normal": 3}
            if self.model == "segnet":
                from mtl_bench.models.segnet import build_segnet
                model = build_segnet(channels)
            else:
                from mtl_bench.models.resnet_dense import build_resnet50_dilated
                model = build_resnet50_dilated(channels)
        else:
            names = list(ATTRIBUTES[: self.tasks])
            tasks = [attribute_task(n) for n in names]
            targets = {n: torch.randint(0, 2, (b,)) for n in names}
            from mtl_bench.models.celeba_nets import build_celeba_model
            model = build_celeba_model(names, self.model)
        return model, tasks, x, targets


FULL = [
    Setting("nyuv2-segnet", "segnet", 8, (288, 384), 3),
    Setting("nyuv2-resnet50", "resnet50_dilated", 8, (288, 384), 3),
    Setting("celeba-resnet18", "resnet18", 256, (64, 64), 40),
]
QUICK = [
    Setting("nyuv2-segnet", "segnet", 2, (32, 32), 3),
    Setting("nyuv2-resnet50", "resnet50_dilated", 2, (16, 16), 3),
    Setting("celeba-resnet18", "resnet18", 4, (16, 16), 40),
]


def measure(setting: Setting, strategy_name: str, device: torch.device, warmup: int, steps: int,
            space: str | None, method: str) -> dict:
    torch.manual_seed(0)
    model, tasks, x, targets = setting.build()
    x, targets = x.to(device), {k: v.to(device) for k, v in targets.items()}
    strategy = build_strategy(strategy_name, len(tasks))
    space = space or strategy_class(strategy_name).default_space
    backend = GradientBackend(space=space, method=method)
    bench = Benchmark(setting.name, tasks, train=[], val=None, test=None)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, bench, strategy, TrainerConfig(epochs=1, optimizer="adam", lr=1e-4, checkpoint=False),
                          Path(tmp), device, backend)
        trainer.model.train()
        for _ in range(warmup):
            trainer.train_step(x, targets)
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        marks = []
        for _ in range(steps):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                trainer.train_step(x, targets)
                end.record()
                marks.append((start, end))
            else:
                t0 = time.perf_counter()
                trainer.train_step(x, targets)
                marks.append(time.perf_counter() - t0)
        if cuda:
            torch.cuda.synchronize(device)
            ms = [a.elapsed_time(b) for a, b in marks]
            peak = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            import resource
            ms = [1000 * s for s in marks]
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "setting": setting.name, "model": setting.model, "batch": setting.batch,
        "input": f"3x{setting.size[0]}x{setting.size[1]}", "tasks": len(tasks), "strategy": strategy_name,
        "grad_space": space if strategy.level == "gradient" else "-", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "step_ms_median": statistics.median(ms), "step_ms_mean": statistics.fmean(ms),
        "peak_memory_mb": peak, "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "process_max_rss",
        "warmup": warmup, "steps": steps,
    }


def markdown(rows: list[dict]) -> str:
    ew = {r["setting"]: r["step_ms_median"] for r in rows if r["strategy"] == "ew"}
    lines = ["| setting | model | batch | input | tasks | strategy | grad space | step ms (median) | step ms (mean) | x EW | peak MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["step_ms_median"] / ew[r["setting"]] if r["setting"] in ew else float("nan")
        lines.append(f"| {r['setting']} | {r['model']} | {r['batch']} | {r['input']} | {r['tasks']} | {r['strategy']} | "
                     f"{r['grad_space']} | {r['step_ms_median']:.1f} | {r['step_ms_mean']:.1f} | {ratio:.2f} | {r['peak_memory_mb']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 warm-up and 2 timed steps (CPU smoke run)")
    parser.add_argument("--settings", default=None, help="comma-separated subset of " + ",".join(s.name for s in FULL))
    parser.add_argument("--strategies", default="ew,mgda,gradnorm")
    parser.add_argument("--space", default=None, help="grad.space for gradient strategies (default: each one's own)")
    parser.add_argument("--method", default="auto", help="grad.method: loop | vmap | auto")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 10; 1 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 50; 2 with --quick)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="CSV path (default results/bench_dense.csv; .md written beside it)")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    settings = QUICK if args.quick else FULL
    if args.settings:
        wanted = args.settings.split(",")
        unknown = set(wanted) - {s.name for s in settings}
        if unknown:
            parser.error(f"unknown setting(s) {sorted(unknown)}")
        settings = [s for s in settings if s.name in wanted]
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 10)
    steps = args.steps if args.steps is not None else (2 if args.quick else 50)
    rows = []
    for setting in settings:
        for name in args.strategies.split(","):
            row = measure(setting, name, device, warmup, steps, args.space, args.method)
            rows.append(row)
            print(f"{row['setting']:<16} {row['strategy']:<9} {row['step_ms_median']:9.1f} ms  {row['peak_memory_mb']:8.0f} MiB",
                  file=sys.stderr)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    table = markdown(rows)
    print(table)
    out = Path(args.out) if args.out else Path(__file__).resolve().parents[1] / "results" / "bench_dense.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    command = "python scripts/bench_dense.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out.with_suffix(".md").write_text(
        f"# Step time and peak memory ({rows[0]['device']}, torch {torch.__version__})\n\n"
        f"Command: `{command.strip()}`; {warmup} warm-up and {steps} timed steps per row.\n\n{table}\n")
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
