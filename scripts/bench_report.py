"""Time the report layer on a folder of runs, phase by phase: what ``mtl-bench table`` costs.

    python scripts/bench_report.py results/zoo_synthetic/runs --metrics normalized_loss
    python scripts/bench_report.py results/sener_koltun_multimnist/runs --tune trainer.lr --repeats 3

Phases (medians over ``--repeats``, after the imports): reading the run folders into the tidy
table (``collect``: summary, config and history of every run, checked), selection (``select``:
annotation, baselines, each run's selected epoch), and the table (``score``: Delta_m, ranks,
tests). Prints one line per phase, seconds and the share of the total.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_bench.report.collect import collect  # noqa: E402
from mtl_bench.report.pipeline import select_all  # noqa: E402
from mtl_bench.report.tables import score_table  # noqa: E402


def one_pass(paths: list[str], metrics: list[str] | None, tune: list[str]) -> dict[str, float]:
    """Seconds of each phase of one table over ``paths``."""
    seconds, start = {}, time.perf_counter()
    collection = collect(paths)
    seconds["collect"], start = time.perf_counter() - start, time.perf_counter()
    selection = select_all(collection, tune=tune)
    seconds["select"], start = time.perf_counter() - start, time.perf_counter()
    score_table(selection.selected, selection.baselines, metrics=metrics, tuned=selection.tuned)
    seconds["score"] = time.perf_counter() - start
    seconds["runs"] = collection.runs.shape[0]
    seconds["rows"] = collection.results.shape[0]
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="folders of runs (as for mtl-bench table)")
    parser.add_argument("--metrics", default=None, help="comma-separated metric names of the table's columns")
    parser.add_argument("--tune", default="", help="comma-separated config keys chosen on val (as --tune of mtl-bench table)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    metrics = args.metrics.split(",") if args.metrics else None
    tune = [key for key in args.tune.split(",") if key]
    one_pass(args.paths, metrics, tune)  # warm-up: scipy and the like imported, files in the page cache
    passes = [one_pass(args.paths, metrics, tune) for _ in range(max(1, args.repeats))]
    phases = ["collect", "select", "score"]
    medians = {phase: statistics.median(p[phase] for p in passes) for phase in phases}
    total = sum(medians.values())
    print(f"{passes[0]['runs']} runs, {passes[0]['rows']} rows in the tidy table; median of {len(passes)} pass(es)")
    for phase in phases:
        print(f"{phase:<8} {medians[phase]:8.2f} s  {medians[phase] / total:6.1%}")
    print(f"{'total':<8} {total:8.2f} s")


if __name__ == "__main__":
    main()
