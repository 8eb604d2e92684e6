"""Shared fixtures: tiny datasets in their real on-disk layouts, Hydra composition, CLI runs."""
from __future__ import annotations

import json
import os
import struct
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# Tiny models gain nothing from intra-op threads, and on a 2-core machine running test workers in
# parallel, spinning OpenMP threads of several processes slow everything down many times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# dataset caches (MultiMNIST pairs) of the tests go to a fresh folder, never the user's ~/.cache
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="mtl-bench-test-cache-")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


# A background job of a non-interactive shell (`cmd &` in a script) starts with SIGINT ignored, and
# every process it starts inherits that; the tests that press Ctrl-C (in this process or in the
# runs they start) need Python's default handler, which children then get back as SIG_DFL.
signal.signal(signal.SIGINT, signal.default_int_handler)

def write_idx_images(path: Path, images: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack(">iiii", 2051, len(images), 28, 28))
        f.write(images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack(">ii", 2049, len(labels)))
        f.write(labels.astype(np.uint8).tobytes())


def make_mnist(root: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """A tiny MNIST in torchvision's layout (root/MNIST/raw/*-ubyte): each digit is a blurry bar
    at a class-dependent position, so a small network can learn it."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n)
        images = rng.integers(0, 40, size=(n, 28, 28))
        for i, y in enumerate(labels):
            images[i, 2 + 2 * y : 5 + 2 * y, 4:24] = 255
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    return make_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture
def compose():
    """Compose the real config tree with Hydra's compose API: ``compose(["strategy=mgda"])``."""
    from hydra import compose as hydra_compose, initialize_config_dir

    import mtl_bench.schemas  # noqa: F401  (the config files name their schemas in Hydra's ConfigStore)

    def _compose(overrides=(), return_hydra_config=False):
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)

    return _compose


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m mtl_bench ARGS`` in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("MTL_BENCH_DATA", None) if env is None or "MTL_BENCH_DATA" not in env else None
    return subprocess.run([sys.executable, "-m", "mtl_bench", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def run_cli():
    return cli


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def only_run_dir(parent: Path) -> Path:
    """The single run directory (holding summary.json) below ``parent``."""
    found = sorted(p.parent for p in Path(parent).rglob("summary.json"))
    assert len(found) == 1, f"expected one run dir below {parent}, found {found}"
    return found[0]
