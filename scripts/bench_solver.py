#!/usr/bin/env python
"""Where a Gramian-solver strategy's step goes: its host solve alone, against the EW step.

For each strategy and gradient space it measures, on the workloads of bench_strategies.py:

- the training step, interleaved with the EW step of the same model and batch (medians), and
  their ratio with its 95% interval (bootstrap over the rounds, paired): the figure
  results/bench/strategies_cpu.md holds to 1.05 in the representation
  and last-shared-layer spaces;
- the strategy's host solve alone (``strategy.weights(losses, gramian)``, median of ``--solves``
  calls) on the Gramian of the row's last measured step, in milliseconds and as a share of the
  EW step, and that Gramian's trace (solvers with an absolute stopping tolerance take more
  iterations on larger gradients);
- for the SLSQP solvers (CAGrad): per solve, SLSQP's iterations, the calls of scipy's compiled
  routine that runs them (one per function and one per gradient evaluation) and the time spent
  inside it (mean over ``--solves`` more solves), which no driver around it can save: the least
  the official solve costs.

    OMP_NUM_THREADS=1 python scripts/bench_solver.py --out results/bench/solver_cpu.csv

The CSV goes to ``--out``, the Markdown table beside it (``.md``). One intra-op thread on the CPU,
the solvers' BLAS limited to one thread as in training.
"""
from __future__ import annotations

import argparse
import csv
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import bench_strategies as bench  # noqa: E402

from mtl_bench.strategies import slsqp  # noqa: E402
from mtl_bench.strategies.solvers import one_blas_thread_held  # noqa: E402
from mtl_bench.train import host_memory  # noqa: E402


class SlsqpClock:
    """Counts and times the calls of scipy's compiled SLSQP routine that
    :mod:`mtl_bench.strategies.slsqp` drives, and keeps the iteration count of the last call."""

    def __init__(self):
        self.calls, self.seconds, self.iteration = 0, 0.0, 0
        self._compiled = slsqp._compiled_iteration()

    def __enter__(self):
        def timed(state, *args):
            start = time.perf_counter()
            self._compiled(state, *args)
            self.seconds += time.perf_counter() - start
            self.calls += 1
            self.iteration = int(state["iter"])
        slsqp._slsqp_iteration = timed
        return self

    def __exit__(self, *exc):
        slsqp._slsqp_iteration = self._compiled


def record_gramians(row: dict) -> list:
    """Make the row's strategy keep the ``(losses, gramian)`` of each call of its ``weights``."""
    strategy, seen = row["strategy_object"], []
    solve = strategy.weights

    def recording(losses, gramian=None):
        seen.append((losses, gramian))
        return solve(losses, gramian)

    strategy.weights = recording
    row["solve"] = solve
    return seen


def time_solve(row: dict, losses, gramian, solves: int) -> dict:
    """Median milliseconds of the host solve alone; then, over as many more solves under
    :class:`SlsqpClock`, the SLSQP iterations, compiled calls and their mean milliseconds per solve
    (None for solvers that are not SLSQP)."""
    row["solve"](losses, gramian)  # warm
    times = []
    for _ in range(solves):
        start = time.perf_counter()
        row["solve"](losses, gramian)
        times.append(time.perf_counter() - start)
    iterations = []
    with SlsqpClock() as clock:
        for _ in range(solves):
            row["solve"](losses, gramian)
            iterations.append(clock.iteration)
    slsqp_used = clock.calls > 0
    return {"solve_ms": 1000 * statistics.median(times), "gramian_trace": float(torch.trace(gramian.double())),
            "slsqp_iterations": statistics.mean(iterations) if slsqp_used else None,
            "slsqp_calls": clock.calls / solves if slsqp_used else None,
            "slsqp_ms": 1000 * clock.seconds / solves if slsqp_used else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="CSV file to write (the Markdown table goes beside it, .md)")
    parser.add_argument("--models", nargs="+", default=["conv40"], choices=bench.MODELS)
    parser.add_argument("--strategies", nargs="+", default=["cagrad", "cagrad:gramian_scaling=trace", "mgda", "upgrad"],
                        help="Gramian-solver strategies (NAME:key=value,... sets options)")
    parser.add_argument("--spaces", nargs="+", default=["representation", "last_shared_layer"],
                        choices=["params", "representation", "last_shared_layer"])
    parser.add_argument("--warmup", type=int, default=5, help="steps per row before timing")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row and round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds over all rows (interleaved)")
    parser.add_argument("--solves", type=int, default=30, help="timed solves per row")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and counts: a smoke test")
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    torch.set_num_threads(1)
    host_memory.apply("heap")
    warmup, steps, repeats, solves = (2, 1, 1, 2) if args.quick else (args.warmup, args.steps, args.repeats, args.solves)
    command = " ".join(shlex.quote(a) for a in ["python", "scripts/bench_solver.py", *(argv or sys.argv[1:])])

    out_rows = []
    for model_name in args.models:
        torch.manual_seed(0)
        model, tasks, x, targets = bench.CASES[model_name](args.quick, device)
        ew = bench.make_row(model, tasks, x, targets, "ew", "-", "auto", device)
        rows = [ew]
        for name in args.strategies:
            for space in args.spaces:
                row = bench.make_row(model, tasks, x, targets, name, space, "auto", device)
                row["gramians"] = record_gramians(row)
                rows.append(row)
        with one_blas_thread_held():
            bench.measure_interleaved(rows, warmup, steps, repeats, device)
            for row in rows[1:]:
                if row["status"] != "ok" or not row["gramians"] or row["gramians"][-1][1] is None:
                    continue
                losses, gramian = row["gramians"][-1]
                row.update(time_solve(row, losses, gramian, solves))
        for row in rows[1:]:
            interval = (bench.ratio_interval(row["round_seconds"], ew["round_seconds"])
                        if row.get("round_seconds") and ew.get("round_seconds") else None)
            row.update(model=model_name, tasks=len(tasks), ew_ms=ew.get("median_ms"),
                       step_vs_ew=row.get("median_ms", float("nan")) / ew["median_ms"] if ew.get("median_ms") else None,
                       step_vs_ew_low=interval[0] if interval else None, step_vs_ew_high=interval[1] if interval else None,
                       solve_vs_ew=row["solve_ms"] / ew["median_ms"] if "solve_ms" in row and ew.get("median_ms") else None)
            out_rows.append(row)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["model", "tasks", "strategy", "space", "median_ms", "ew_ms", "step_vs_ew", "step_vs_ew_low",
              "step_vs_ew_high", "gramian_trace", "solve_ms",
              "solve_vs_ew", "slsqp_iterations", "slsqp_calls", "slsqp_ms", "status"]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(out_rows)
    table = markdown(out_rows, command)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0


def _fmt(value, digits=2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "Host solve against the EW step (CPU, one thread; step times interleaved with EW's, medians).",
        "",
        "| model | strategy | space | step ms | EW step ms | step / EW | 95% interval | trace of G | solve ms | solve / EW "
        "| SLSQP iterations | compiled calls | compiled ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        interval = (f"{r['step_vs_ew_low']:.3f}-{r['step_vs_ew_high']:.3f}"
                    if r.get("step_vs_ew_low") is not None else "-")
        lines.append(f"| {r['model']} | {r['strategy']} | {r['space']} | {_fmt(r.get('median_ms'))} | "
                     f"{_fmt(r.get('ew_ms'))} | {_fmt(r.get('step_vs_ew'), 3)} | {interval} | {_fmt(r.get('gramian_trace'), 3)} | "
                     f"{_fmt(r.get('solve_ms'))} | {_fmt(r.get('solve_vs_ew'), 3)} | "
                     f"{_fmt(r.get('slsqp_iterations'), 0)} | {_fmt(r.get('slsqp_calls'), 0)} | {_fmt(r.get('slsqp_ms'))} |")
    lines += ["", "step / EW: with its 95% interval (a bootstrap over the interleaved rounds, paired by round). "
              "solve: `strategy.weights(losses, gramian)` alone on the Gramian of the row's last measured step "
              "(median). SLSQP iterations per solve, and the calls of scipy's compiled routine that runs them (one "
              "per function and one per gradient evaluation); compiled ms: the time inside it per solve (mean), "
              "the least any driver of the same iterations costs.",
              "", f"Command: `{command}`"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
