"""scripts/check_dataset.py on good and damaged copies; scripts/bench_dense.py --quick smoke run."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fixtures_data import write_celeba, write_nyuv2

ROOT = Path(__file__).resolve().parents[1]


def check(capsys, *args: str) -> tuple[int, str]:
    """Run scripts/check_dataset.py's main() in this process: (exit code, stdout)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_dataset", ROOT / "scripts" / "check_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(list(args))
    return code, capsys.readouterr().out


def script(name: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def test_check_nyuv2(tmp_path, capsys):
    root = write_nyuv2(tmp_path / "nyu", n_train=2, n_val=2, size=(16, 32))
    code, out = check(capsys, "nyuv2", str(root), "--image-size", "16", "32")
    assert code == 0, out
    assert "train: 2 samples (standard copy: 795)" in out and "invalid depth" in out and out.endswith("OK\n")
    label = np.load(root / "val" / "label" / "1.npy")
    label[0, 0] = 13
    np.save(root / "val" / "label" / "1.npy", label)
    normal = np.load(root / "train" / "normal" / "0.npy")
    np.save(root / "train" / "normal" / "0.npy", normal * 2)
    code, out = check(capsys, "nyuv2", str(root), "--image-size", "16", "32")
    assert code == 1
    assert "val/*/1.npy label: values outside -1, 0..12: [13.0]" in out
    assert "train/*/0.npy normal: valid vectors are not unit length" in out
    code, out = check(capsys, "nyuv2", str(root))
    assert code == 1 and "expected (288, 384, 3)" in out


def test_check_celeba(tmp_path, capsys):
    root = write_celeba(tmp_path / "cel", layout="anno", counts=(2, 1, 1), image_size=(40, 48))
    code, out = check(capsys, "celeba", str(root))
    assert code == 0, out
    assert "Anno/Eval/Img layout" in out and "note: some images are not 178 x 218" in out
    (root / "Img" / "img_align_celeba" / "000003.jpg").write_bytes(b"not a jpeg")
    (root / "Img" / "img_align_celeba" / "000004.jpg").unlink()
    code, out = check(capsys, "celeba", str(root))
    assert code == 1
    assert "1 image(s) listed in" in out and "000004.jpg" in out
    assert "000003.jpg cannot be decoded" in out
    code, out = check(capsys, "celeba", str(tmp_path / "empty"))
    assert code == 1 and "list_attr_celeba.txt" in out


def test_bench_dense_quick(tmp_path):
    out = tmp_path / "bench.csv"
    result = script("bench_dense.py", "--quick", "--settings", "celeba-resnet18", "--strategies", "ew,mgda",
                    "--warmup", "0", "--steps", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    assert [(r["setting"], r["strategy"]) for r in rows] == [("celeba-resnet18", "ew"), ("celeba-resnet18", "mgda")]
    assert all(float(r["step_ms_median"]) > 0 for r in rows)
    assert rows[1]["tasks"] == "40" and rows[1]["grad_space"] == "representation" and rows[0]["grad_space"] == "-"
    assert "| celeba-resnet18 | resnet18 | 4 | 3x16x16 | 40 | mgda |" in result.stdout
    assert out.with_suffix(".md").read_text().startswith("# Step time and peak memory")
