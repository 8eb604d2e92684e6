#!/usr/bin/env python
"""Step time and bytes communicated per strategy: one process against W data-parallel processes.

MultiLeNet on MultiMNIST-shaped inputs (2 tasks, global batch ``--batch``, dropout off). For every
strategy of ``mtl-bench list strategies`` in its default gradient space, the real training step
(:func:`mtl_bench.train.trainer.training_step`) runs on one fixed random global batch: once in
one process, and once in each of ``--world`` processes with its shard (torch.multiprocessing,
gloo on the CPU; nccl with one GPU per process when ``--device cuda`` and enough GPUs). After
``--warmup`` steps it times ``--steps`` steps (median; CUDA-synchronised) and counts the bytes
this rank sent into collectives per step (:class:`mtl_bench.train.distributed.DistContext`).

    python scripts/bench_ddp.py --out results/bench/ddp_cpu.csv                 # CPU, about a minute
    python scripts/bench_ddp.py --device cuda --world 2 --out results/bench/ddp_gpu.csv

On a CPU the W processes share the machine's cores (``--threads`` intra-op threads each): the
time column shows the overhead of the exchange, not a speed-up, unless the cores are free.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mtl_bench.data.tasks import classification_task  # noqa: E402
from mtl_bench.models.lenet import build_multilenet  # noqa: E402
from mtl_bench.strategies import available_strategies, build_strategy, strategy_class  # noqa: E402
from mtl_bench.train.distributed import DistContext  # noqa: E402
from mtl_bench.train.gradients import GradientBackend  # noqa: E402
from mtl_bench.train.trainer import training_step  # noqa: E402


def measure(args, device: torch.device, context: DistContext | None) -> list[dict]:
    tasks = [classification_task(t) for t in ("left", "right")]
    data = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 1, 28, 28, generator=data)
    targets = {t.name: torch.randint(10, (args.batch,), generator=data) for t in tasks}
    if context is not None:
        x, targets = context.shard(x, targets)
    x, targets = x.to(device), {k: v.to(device) for k, v in targets.items()}
    rows = []
    for name in args.strategies or available_strategies():
        torch.manual_seed(0)
        model = build_multilenet([t.name for t in tasks], dropout="standard", p=0.0).to(device)
        strategy = build_strategy(name, len(tasks)).to(device)
        space = strategy_class(name).default_space
        backend = GradientBackend(space, "loop")
        backend.dist = context
        optimizer = torch.optim.SGD([{"params": list(model.parameters())}] + strategy.optimizer_groups(), lr=0.01)
        times, sent = [], 0
        for step in range(args.warmup + args.steps):
            if context is not None:
                if step == args.warmup:
                    sent = context.bytes_reduced
                dist.barrier()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            training_step(model, strategy, backend, optimizer, tasks, x, targets, dist=context)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
        per_step = 0 if context is None else (context.bytes_reduced - sent) / args.steps
        rows.append({"strategy": name, "space": space if strategy.level == "gradient" else "",
                     "seconds_per_step": statistics.median(times), "bytes_per_step": per_step})
    return rows


def worker(rank: int, world: int, args, init_file: str, out: str) -> None:
    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    rows = measure(args, device, DistContext(rank, world, device))
    if rank == 0:
        torch.save(rows, out)
    dist.destroy_process_group()
    # torch 2.14's gloo workers abort now and then at interpreter exit ("terminate called without
    # an active exception", after all work is done): leave without the interpreter's teardown
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=2, help="processes of the data-parallel run")
    parser.add_argument("--batch", type=int, default=256, help="global batch size")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process (CPU)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--strategies", nargs="*", help="default: every strategy")
    parser.add_argument("--out", type=Path, help="CSV of the rows (and the table as .md beside it)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and torch.cuda.device_count() < args.world:
        parser.error(f"--device cuda --world {args.world} needs {args.world} GPUs, {torch.cuda.device_count()} visible")

    torch.set_num_threads(args.threads)
    one = measure(args, torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu"), None)
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "rows.pt")
        mp.spawn(worker, args=(args.world, args, os.path.join(folder, "init"), out), nprocs=args.world, join=True)
        many = torch.load(out)
    rows = []
    for a, b in zip(one, many):
        rows.append({"strategy": a["strategy"], "space": a["space"], "ms_1proc": 1e3 * a["seconds_per_step"],
                     f"ms_{args.world}proc": 1e3 * b["seconds_per_step"],
                     "kib_per_step": b["bytes_per_step"] / 1024})
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    command = "python " + " ".join(shlex.quote(a) for a in ["scripts/bench_ddp.py", *(argv or sys.argv[1:])])
    note = (f"\nMultiLeNet, 2 tasks, global batch {args.batch}, {args.device} ({platform.processor() or platform.machine()}, "
            f"{args.threads} thread(s) per process), torch {torch.__version__}; median of {args.steps} steps.\n"
            f"Command: `{command}`\n")
    table = "\n".join(lines) + "\n" + note
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        args.out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
