"""Time a MultiMNIST training epoch per strategy against the floor of the same model.

The floor is the same number of forward+backward+optimiser steps of the EW loss on ONE batch that
stays resident (no data indexing, no strategy work, no logging): what the model itself costs.
Usage (GPU machine; results/ keeps the table with this command):

    python scripts/bench_epoch.py --data $MTL_BENCH_DATA --out results/bench_epoch.csv
    python scripts/bench_epoch.py --data $MTL_BENCH_DATA --device cpu --threads 1 --clock process --strategies ew
    python scripts/bench_epoch.py --data tests/fixture --quick      # CPU smoke run

``--repeats`` alternates an epoch and its floor that many times (after one warm-up epoch) and
reports the medians; ``--clock process`` times this process's CPU time (a loaded CPU machine).
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_bench.train.experiment import build_trainer, resolve_device  # noqa: E402

CASES = [("ew", None), ("uw", None), ("mgda", "params"), ("mgda", "representation"), ("gradnorm", None)]


def write_csv(rows: list[dict], path: Path) -> None:
    """Rows (dicts with the same keys) as a CSV file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_trainer(cfg, name, space, device, run_dir):
    """The run ``mtl-bench run`` builds from ``cfg`` (``build_trainer``), with plain SGD (lr 0.01,
    momentum 0.9), no checkpoints, no progress bar, no step records and ``space`` (None: the
    strategy's default); ``name`` is the strategy ``cfg`` names."""
    assert cfg.strategy.name == name, (cfg.strategy.name, name)
    cfg = OmegaConf.merge(cfg, {"trainer": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "checkpoint": False,
                                            "progress": "never", "log_interval": 10**9},
                                "grad": {"space": space, "method": "auto"}})
    return build_trainer(cfg, run_dir, device)


CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def time_epoch(trainer, device, clock: str = "wall") -> float:
    now = CLOCKS[clock]
    sync(device)
    start = now()
    trainer.train_epoch()
    sync(device)
    return now() - start


def time_floor(trainer, device, steps: int, clock: str = "wall") -> float:
    x, targets = next(iter(trainer.benchmark.train))
    model, tasks, opt = trainer.model, trainer.tasks, trainer.optimizer
    def step():
        opt.zero_grad(set_to_none=True)
        preds = model(x)
        sum(t.loss(preds[t.name], targets[t.name]) for t in tasks).backward()
        opt.step()
    for _ in range(5):
        step()
    now = CLOCKS[clock]
    sync(device)
    start = now()
    for _ in range(steps):
        step()
    sync(device)
    return now() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder holding MNIST/raw")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, help="CSV file to write")
    parser.add_argument("--quick", action="store_true", help="one strategy pair on a small validation split")
    parser.add_argument("--strategies", nargs="+", default=None, help="default: ew uw mgda(params) mgda(representation) gradnorm")
    parser.add_argument("--repeats", type=int, default=1, help="epoch / floor pairs, alternated; medians reported")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    overrides = ["dataset=multimnist", f"dataset.root={args.data}"]
    if args.quick:
        overrides += ["dataset.val_size=50", "trainer.batch_size=64"]
    cases = CASES[:3] if args.quick else CASES
    if args.strategies:
        cases = [c for c in CASES if c[0] in args.strategies] or [(name, None) for name in args.strategies]
    rows = []
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for name, space in cases:
            cfg = compose("config", overrides=overrides + [f"strategy={name}"])
            trainer = make_trainer(cfg, name, space, device, Path("/tmp/mtl-bench-bench"))
            time_epoch(trainer, device)  # warm-up epoch (allocator, cuDNN autotune)
            epochs, floors = [], []
            for _ in range(args.repeats):
                epochs.append(time_epoch(trainer, device, args.clock))
                floors.append(time_floor(trainer, device, len(trainer.benchmark.train), args.clock))
            seconds, floor = statistics.median(epochs), statistics.median(floors)
            rows.append({"strategy": name, "space": trainer.backend.space if trainer.strategy.level == "gradient" else "-",
                         "device": str(device), "steps": len(trainer.benchmark.train),
                         "epoch_s": round(seconds, 4), "floor_s": round(floor, 4), "ratio": round(seconds / floor, 3)})
    print("| strategy | space | steps | epoch s | floor s | epoch / floor |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {r['space']} | {r['steps']} | {r['epoch_s']} | {r['floor_s']} | {r['ratio']} |")
    if args.out:
        write_csv(rows, args.out)


if __name__ == "__main__":
    main()
