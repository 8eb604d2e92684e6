"""Benchmark scripts run end to end in their --quick form (CPU smoke runs; timings are not checked)."""
import csv
import subprocess
import sys

from conftest import ROOT


def run_script(name, *args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_bench_epoch_quick(tmp_path, mnist_root):
    out = tmp_path / "epoch.csv"
    proc = run_script("bench_epoch.py", "--data", str(mnist_root), "--quick", "--device", "cpu", "--out", str(out),
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(out)))
    assert [r["strategy"] for r in rows] == ["ew", "uw", "mgda"]
    assert all(float(r["epoch_s"]) > 0 and float(r["floor_s"]) > 0 for r in rows)
    assert "| epoch / floor |" in proc.stdout


def test_bench_sweep_quick(tmp_path):
    out = tmp_path / "sweep.csv"
    proc = run_script("bench_sweep.py", "--quick", "--jobs", "2", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (row,) = csv.DictReader(open(out))
    assert row["runs"] == "4" and float(row["sequential_s"]) > 0 and float(row["concurrent_s"]) > 0


def test_bench_report_times_each_phase_of_a_table(tmp_path):
    proc = run_script("bench_report.py", str(ROOT / "results" / "gradnorm_toy" / "runs"), "--repeats", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("6 runs, ") and "median of 2 pass(es)" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["collect", "select", "score", "total"]
    assert all(float(line.split()[1]) > 0 for line in lines[1:])


def test_bench_ddp_counts_the_bytes_of_two_processes(tmp_path):
    """scripts/bench_ddp.py: one process against two gloo processes on a small global batch; the
    bytes per step are exact: EW all-reduces the model's gradients, DTP adds its KPIs' sums
    (2 float64 numbers per task), not the batch's predictions."""
    out = tmp_path / "ddp.csv"
    proc = run_script("bench_ddp.py", "--batch", "16", "--warmup", "1", "--steps", "2", "--strategies", "ew", "dtp",
                      "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["strategy"]: r for r in csv.DictReader(open(out))}
    assert set(rows) == {"ew", "dtp"} and all(float(r["ms_1proc"]) > 0 and float(r["ms_2proc"]) > 0 for r in rows.values())
    extra = (float(rows["dtp"]["kib_per_step"]) - float(rows["ew"]["kib_per_step"])) * 1024
    assert extra == 2 * 2 * 8


def test_profile_step_finds_no_host_reads(tmp_path, mnist_root):
    """scripts/profile_step.py on MultiMNIST steps: no strategy it profiles reads a tensor back to
    the host in its training step (GradNorm's Adam reads its own host-side step counter inside
    Optimizer.step, which the script leaves out as the no-sync tests do)."""
    out = tmp_path / "profile.csv"
    proc = run_script("profile_step.py", "--data", str(mnist_root), "--quick", "--steps", "2", "--device", "cpu", "--out", str(out),
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    assert [r["strategy"] for r in rows] == ["ew", "uw", "dwa", "gradnorm", "mgda"]
    assert all(float(r["host_reads_per_step"]) == 0 and float(r["syncs_per_step"]) == 0 for r in rows), rows


def test_gpu_session_stops_with_one_line_without_a_gpu(tmp_path):
    """scripts/gpu_session.sh on a host where nvidia-smi is missing or finds no GPU: exit 2 with a
    line that names the problem and the CPU alternative, before running anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "MTL_BENCH_DATA": str(tmp_path), "OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_session.sh"), "spine"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "found no NVIDIA GPU" in proc.stderr and "scripts/studies.sh" in proc.stderr
    assert not (tmp_path / "runs").exists() and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["device.txt"]
