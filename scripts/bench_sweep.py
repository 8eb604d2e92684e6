"""Wall time of a sweep run one job after another against the same sweep run concurrently
(hydra-joblib-launcher, several processes sharing one GPU).

    python scripts/bench_sweep.py --data $MTL_BENCH_DATA --jobs 6 --epochs 5 --out results/bench_sweep.csv
    python scripts/bench_sweep.py --quick           # CPU smoke run on the synthetic problem

The sweep is 12 MultiMNIST runs: strategies ew, uw, dwa, mgda x seeds 0, 1, 2 (``--strategies``,
``--seeds``). On a CPU, ``--threads`` sets the intra-op threads of every run (OMP_NUM_THREADS): two
runs at once on two cores, one thread each, against the same runs one after another:

    python scripts/bench_sweep.py --data $MTL_BENCH_DATA --jobs 2 --threads 1 --strategies ew --seeds 0,1 --epochs 2
    python scripts/bench_sweep.py --data $MTL_BENCH_DATA --jobs 1 --threads 2 --strategies ew --seeds 0,1 --epochs 2
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(args_list, cwd, threads: int | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mtl_bench", "run", "-m", *args_list], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding MNIST/raw")
    parser.add_argument("--jobs", type=int, default=6, help="concurrent runs")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--strategies", default="ew,uw,dwa,mgda", help="comma-separated")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of every run (default: inherited)")
    args = parser.parse_args(argv)
    if args.quick:
        grid = ["strategy=ew,uw", "seed=0,1", "trainer.epochs=1", "dataset.num_samples=300", "dataset.num_val=100"]
    else:
        if not args.data:
            parser.error("--data is required (or --quick)")
        grid = ["dataset=multimnist", f"dataset.root={args.data}", f"strategy={args.strategies}", f"seed={args.seeds}",
                f"trainer.epochs={args.epochs}", "trainer.progress=never"]
    with tempfile.TemporaryDirectory() as tmp:
        sequential = sweep([*grid, "hydra.sweep.dir=seq"], tmp, args.threads)
        concurrent = sweep([*grid, "hydra/launcher=local", f"hydra.launcher.n_jobs={args.jobs}",
                            "hydra.sweep.dir=par"], tmp, args.threads)
    runs = 4 if args.quick else len(args.strategies.split(",")) * len(args.seeds.split(","))
    row = {"runs": runs, "jobs": args.jobs, "threads": args.threads, "sequential_s": round(sequential, 2),
           "concurrent_s": round(concurrent, 2), "speedup": round(sequential / concurrent, 2)}
    print("| runs | concurrent jobs | sequential s | concurrent s | speed-up |\n|---|---|---|---|---|")
    print(f"| {row['runs']} | {row['jobs']} | {row['sequential_s']} | {row['concurrent_s']} | {row['speedup']} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
            writer.writerow(row)


if __name__ == "__main__":
    main()
