"""scripts/bench_strategies.py runs on the CPU with --quick and writes its CSV and table."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_on_cpu(tmp_path):
    out = tmp_path / "bench.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_strategies.py"), "--quick", "--device", "cpu",
         "--models", "multilenet", "conv40", "--strategies", "pcgrad", "famo", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    keys = {(r["model"], r["strategy"], r["space"]) for r in rows}
    assert keys == {(m, s, sp) for m in ("multilenet", "conv40")
                    for s, sp in (("floor", "params"), ("ew", "-"), ("ew+forward", "-"), ("pcgrad", "params"),
                                  ("pcgrad", "representation"), ("pcgrad", "last_shared_layer"), ("famo", "-"))}
    assert all(r["status"] == "ok" and float(r["median_ms"]) > 0 and float(r["peak_mb"]) > 0 for r in rows)
    ew = [r for r in rows if r["strategy"] == "ew"]
    assert all(float(r["time_vs_ew"]) == 1.0 for r in ew)
    by_key = {(r["model"], r["strategy"], r["space"]): r for r in rows}
    # params-space methods are held to the forward + T backward floor, the rest to EW
    assert by_key[("conv40", "pcgrad", "params")]["reference"] == "floor"
    assert by_key[("conv40", "pcgrad", "representation")]["reference"] == "ew"
    assert by_key[("conv40", "famo", "-")]["reference"] == "ew+forward"  # FAMO re-evaluates the batch
    assert float(by_key[("conv40", "floor", "params")]["passes"]) == 40.0
    assert float(by_key[("conv40", "pcgrad", "params")]["passes"]) == 40.0
    assert float(by_key[("conv40", "pcgrad", "representation")]["passes"]) == 1.0
    assert "| model, input | strategy | space |" in result.stdout and "| conv40 3x16x16 | famo |" in result.stdout and "Command: `python scripts/bench_strategies.py" in result.stdout
    assert out.with_suffix(".md").read_text().startswith("Step time")


def test_strategy_variants_are_parsed_and_built():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench_strategies as bench
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert bench.split_variant("cagrad:gramian_scaling=trace,c=0.5") == ("cagrad", {"gramian_scaling": "trace", "c": 0.5})
    assert bench.split_variant("mgda") == ("mgda", {})
    assert bench.split_variant("cagrad:c=1e-3") == ("cagrad", {"c": 0.001})
    assert bench.split_variant("static:weights=[0.2,0.8],reduction=sum") == (
        "static", {"weights": [0.2, 0.8], "reduction": "sum"})
    import pytest

    with pytest.raises(ValueError, match="write NAME:key=value"):
        bench.split_variant("cagrad:trace")
    import torch
    model, tasks, x, targets = bench.conv40_case(True, torch.device("cpu"))
    row = bench.make_row(model, tasks, x, targets, "cagrad:gramian_scaling=trace", "representation", "auto",
                         torch.device("cpu"))
    assert row["strategy_object"].gramian_scaling == "trace"
    assert bench.reference_of(row) == "ew"
    assert ("cagrad:gramian_scaling=trace", "representation") in set(bench.runs_for(list(bench.VARIANTS), ["representation"]))


def test_solver_benchmark_times_the_host_solve_and_slsqps_own_iterations(tmp_path):
    """scripts/bench_solver.py --quick: every row has a step ratio and a solve time; CAGrad's rows count
    the compiled SLSQP iterations, MGDA's (no SLSQP) have none."""
    out = tmp_path / "solver.csv"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_solver.py"), "--quick", "--out", str(out),
                             "--strategies", "cagrad", "mgda", "--spaces", "last_shared_layer"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["strategy"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"cagrad", "mgda"}
    assert all(float(r["step_vs_ew"]) > 0 and float(r["solve_ms"]) > 0 and float(r["gramian_trace"]) > 0
               for r in rows.values())
    assert float(rows["cagrad"]["slsqp_calls"]) >= 1 and float(rows["cagrad"]["slsqp_iterations"]) >= 1
    assert 0 < float(rows["cagrad"]["slsqp_ms"]) <= float(rows["cagrad"]["solve_ms"]) * 2
    assert rows["mgda"]["slsqp_calls"] == "" and rows["mgda"]["slsqp_ms"] == ""
    assert "| conv40 | cagrad | last_shared_layer |" in out.with_suffix(".md").read_text()


def test_slsqp_clock_counts_the_compiled_calls_and_iterations_of_one_solve_and_restores_them():
    """bench_solver.SlsqpClock around one CAGrad solve: as many calls as an independent counter
    sees, the iteration count SLSQP reports, time inside them below the solve's, the routine
    restored afterwards."""
    import time

    import numpy as np

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench_solver
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from mtl_bench.strategies import slsqp
    from mtl_bench.strategies.cagrad import cagrad_weights

    rng = np.random.default_rng(0)
    J = rng.normal(size=(6, 50))
    G = J @ J.T
    original = slsqp._compiled_iteration()
    seen = []
    slsqp._slsqp_iteration = lambda state, *args: (seen.append(1), original(state, *args))[1]
    try:
        start = time.perf_counter()
        with bench_solver.SlsqpClock() as clock:
            cagrad_weights(G, 0.4)
        elapsed = time.perf_counter() - start
        assert clock.calls == len(seen) > 2 and 1 <= clock.iteration <= clock.calls
        assert 0 < clock.seconds < elapsed
    finally:
        restored = slsqp._slsqp_iteration
        slsqp._slsqp_iteration = original
    assert restored is not original and restored.__name__ == "<lambda>"   # the clock put back what it found


def test_ratio_interval_pairs_the_rounds():
    """The interval of a row's ratio to its reference: a round that is slow for both (drift, a
    busy machine) does not widen it, because a resampled round brings both rows' steps; noise of
    the row's own widens it around the ratio; fewer than 3 rounds give none."""
    import numpy as np
    import pytest

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench_strategies as bench
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    drift = np.random.default_rng(0).uniform(1.0, 2.0, size=12)       # per round, both rows
    reference = [[0.1 * f] * 3 for f in drift]
    row = [[0.11 * f] * 3 for f in drift]
    low, high = bench.ratio_interval(row, reference)
    assert (low, high) == pytest.approx((1.1, 1.1))
    noisy = [[0.11 * f * (1 + 0.05 * (-1) ** i)] * 3 for i, f in enumerate(drift)]
    low, high = bench.ratio_interval(noisy, reference)
    assert 1.0 < low < 1.1 < high < 1.2
    assert bench.ratio_interval(row[:2], reference[:2]) is None
