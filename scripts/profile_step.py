"""Show with the torch profiler that a training step does not wait for the GPU.

Profiles ``--steps`` MultiMNIST training steps per strategy and counts host reads of device
tensors (``aten::_local_scalar_dense``, i.e. .item()/int()/bool()) and CUDA synchronisations
(``cudaStreamSynchronize``, ``cudaDeviceSynchronize``, blocking device-to-host copies) inside
them. Loss-only strategies should show none; host-solver strategies (MGDA, ...) one Gramian copy
per step. Host reads inside an optimiser's ``step`` are not counted: torch's Adam (GradNorm's
weights learn with it) keeps its step counter on the host and reads it there, no device tensor;
synchronisations are counted wherever they happen.

    python scripts/profile_step.py --data $MTL_BENCH_DATA --out results/profile_step.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_epoch import make_trainer, write_csv  # noqa: E402

from mtl_bench.train.cost import in_optimizer_step  # noqa: E402
from mtl_bench.train.experiment import resolve_device  # noqa: E402

SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
CASES = [("ew", None), ("uw", None), ("dwa", None), ("gradnorm", None), ("mgda", "params")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="a small validation split and batch 16 (for a small MNIST fixture)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    rows = []
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for name, space in CASES:
            quick = ["dataset.val_size=50", "trainer.batch_size=16"] if args.quick else []
            cfg = compose("config", overrides=["dataset=multimnist", f"dataset.root={args.data}", f"strategy={name}", *quick])
            trainer = make_trainer(cfg, name, space, device, Path("/tmp/mtl-bench-profile"))
            batches = iter(trainer.benchmark.train)
            for _ in range(3):
                trainer.train_step(*next(batches))
            with profile(activities=activities) as prof:
                for _ in range(args.steps):
                    trainer.train_step(*next(batches))
            events = prof.events()
            reads = [e for e in events if e.name == "aten::_local_scalar_dense" and not in_optimizer_step(e)]
            rows.append({
                "strategy": name, "device": str(device), "steps": args.steps,
                "host_reads_per_step": len(reads) / args.steps,
                "syncs_per_step": sum(e.name in SYNC_EVENTS for e in events) / args.steps,
            })
    print("| strategy | host reads / step | CUDA syncs / step |\n|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {r['host_reads_per_step']:.2f} | {r['syncs_per_step']:.2f} |")
    if args.out:
        write_csv(rows, args.out)


if __name__ == "__main__":
    main()
