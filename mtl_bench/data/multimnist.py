"""MultiMNIST as in Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
NeurIPS 2018 (arXiv 1810.04650), section 7.1 and its official ``multi_mnist_loader.py``.

Each MNIST image (the "left" digit) is paired with another image of the same split drawn
uniformly with replacement (the "right" digit); the left image goes to rows/cols 0:28 of a
36x36 canvas, the right one to 6:34, with the pixel-wise max on the overlap; the canvas is
byte-scaled by its min/max and resized to 28x28 with nearest-neighbour sampling at pixel
centres (PIL's NEAREST, source index floor((i + 0.5) * 36 / 28)). Labels are (left, right).

Unlike the original generator, ours is seeded (numpy PCG64, identical on every platform) and its
output is cached in the user's cache folder, keyed by the source files and the construction. A validation split is set apart from MNIST's training images
before pairing (so validation pairs share no digit image with training pairs), and
``label_fraction`` keeps labels for only a fraction of the training examples of each task, a
different subset per task (the label-scarcity study of Gong et al. 2019, arXiv 1904.06467).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .benchmark import Benchmark, DatasetNotFoundError, TensorBatches, split_validation
from .images import bytescale
from .tasks import IGNORE, classification_task

TASKS = ("left", "right")
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# idx header: magic number, item count, then the image size (images only); sizes of the real files
IDX_MAGIC = {"images": 2051, "labels": 2049}
MNIST_BYTES = {"train-images-idx3-ubyte": 47_040_016, "train-labels-idx1-ubyte": 60_008,
               "t10k-images-idx3-ubyte": 7_840_016, "t10k-labels-idx1-ubyte": 10_008}
MEAN, STD = 0.1307, 0.3081
CACHE_VERSION = 2


def _mnist_raw_dir(root: Path) -> Path:
    return root / "MNIST" / "raw"


def load_mnist(root: str | os.PathLike, download: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST through torchvision's reader: ``{"train": (images uint8 [N,28,28], labels), "test": ...}``."""
    from torchvision.datasets import MNIST

    root = Path(root).expanduser()
    raw = _mnist_raw_dir(root)
    missing = _missing_mnist(root)
    if missing and not download:
        raise DatasetNotFoundError(_not_found(root, missing))
    check_mnist_files(raw)
    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = MNIST(str(root), train=train, download=download)
        out[split] = (ds.data.numpy(), ds.targets.numpy())
    return out


def idx_problem(path: Path) -> str:
    """Why an uncompressed MNIST idx file cannot be right ("" when its header and size agree)."""
    kind = "images" if "images" in path.name else "labels"
    size = path.stat().st_size
    header = 16 if kind == "images" else 8
    with open(path, "rb") as f:
        head = f.read(header)
    if len(head) < header:
        return f"{path} is {size} bytes, shorter than its {header}-byte header"
    magic, count, *dims = np.frombuffer(head, dtype=">i4").tolist()
    if magic != IDX_MAGIC[kind]:
        return f"{path} does not start with the idx {kind} magic number {IDX_MAGIC[kind]} (found {magic})"
    if kind == "images" and dims != [28, 28]:
        return f"{path} holds images of {dims[0]}x{dims[1]}, expected 28x28"
    expected = header + count * (784 if kind == "images" else 1)
    if size != expected:
        return f"{path} is {size:,} bytes but its header announces {count:,} {kind}, which take {expected:,} bytes"
    return ""


def check_mnist_files(raw: Path) -> None:
    """Check the header and size of every uncompressed MNIST file before reading any."""
    problems = [p for p in (idx_problem(raw / name) for name in MNIST_FILES if (raw / name).exists()) if p]
    if problems:
        sizes = ", ".join(f"{name} {size:,}" for name, size in MNIST_BYTES.items())
        raise DatasetNotFoundError(
            f"MNIST is damaged: {'; '.join(problems)}. Delete the damaged file(s) and fetch a good copy with "
            f"dataset.download=true (torchvision), or copy MNIST/raw from a machine that has it "
            f"(the real files are {sizes} bytes)."
        )


def nearest_indices(src: int = 36, dst: int = 28) -> np.ndarray:
    """PIL NEAREST resampling: destination pixel i samples source floor((i + 0.5) * src / dst)."""
    return np.floor((np.arange(dst) + 0.5) * src / dst).astype(np.int64)


def overlay_pairs(images: np.ndarray, right_index: np.ndarray, chunk: int = 10_000) -> np.ndarray:
    """Compose each image with ``images[right_index]`` on a 36x36 canvas and resize to 28x28."""
    idx = nearest_indices()
    out = np.empty((len(right_index), 28, 28), dtype=np.uint8)
    for lo in range(0, len(right_index), chunk):
        left = images[lo : lo + chunk]
        right = images[right_index[lo : lo + chunk]]
        canvas = np.zeros((len(left), 36, 36), dtype=np.uint8)
        canvas[:, 0:28, 0:28] = left
        canvas[:, 6:34, 6:34] = right
        canvas[:, 6:28, 6:28] = np.maximum(left[:, 6:28, 6:28], right[:, 0:22, 0:22])
        out[lo : lo + chunk] = bytescale(canvas)[:, idx][:, :, idx]
    return out


def make_pairs(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    """Draw the right-hand partner of every image uniformly with replacement (itself allowed):
    ``(composites uint8 [N,28,28], labels int64 [N,2], source indices int64 [N,2])``."""
    right = rng.integers(0, len(images), size=len(images))
    sources = np.stack([np.arange(len(images)), right], axis=1)
    return overlay_pairs(images, right), np.stack([labels, labels[right]], axis=1).astype(np.int64), sources


def build_multimnist_arrays(root, seed: int = 0, val_size: int = 0, download: bool = False,
                            cache: bool = True, cache_dir=None) -> dict:
    """``{split: (images uint8 [N,28,28], labels int64 [N,2], sources int64 [N,2])}`` for the
    splits train, val and test. The validation images are set apart from MNIST's training images
    *before* pairing, so no validation pair shares a digit image with a training pair; ``sources``
    are the MNIST indices (within MNIST's train or test split) of each pair's left and right image.
    Cached in ``cache_dir`` (default :func:`user_cache_dir`, never ``root``) under a name keyed by
    the construction (:func:`cache_path`)."""
    root = Path(root).expanduser()
    mnist = load_mnist(root, download=True) if download and _missing_mnist(root) else None
    path = cache_path(root, seed, val_size, cache_dir) if cache else None
    if path is not None and path.exists():
        try:
            return torch.load(path, weights_only=False)
        except Exception as err:  # a truncated cache is rebuilt, never trusted
            warnings.warn(f"ignoring unreadable MultiMNIST cache {path}: {err}")
    mnist = mnist or load_mnist(root, download=download)
    train_images, train_labels = mnist["train"]
    train_idx, val_idx = split_validation(len(train_images), val_size, seed)
    rng = np.random.Generator(np.random.PCG64(seed))
    arrays = {}
    for split, (images, labels), index in (("train", mnist["train"], train_idx), ("val", mnist["train"], val_idx),
                                           ("test", mnist["test"], np.arange(len(mnist["test"][0])))):
        composites, pair_labels, sources = make_pairs(images[index], labels[index], rng)
        arrays[split] = (composites, pair_labels, index[sources])
    if path is not None:
        try:
            _atomic_save(arrays, path)
        except OSError as err:
            warnings.warn(f"MultiMNIST cache not written to {path} ({err}); set dataset.cache_dir to a writable "
                          f"folder, or dataset.cache=false")
    return arrays


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mtl-bench``, else ``~/.cache/mtl-bench``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mtl-bench"


def _not_found(root: Path, missing: list[str]) -> str:
    return (f"MNIST not found: expected {', '.join(MNIST_FILES)} in {_mnist_raw_dir(root)} (missing: "
            f"{', '.join(missing)}). Point dataset.root (or the MTL_BENCH_DATA environment variable) at the "
            f"folder holding MNIST/raw, or add dataset.download=true on a machine with internet access to fetch "
            f"it with torchvision.")


def missing_files(cfg) -> str:
    """Why a run of ``cfg`` would not find MNIST ("" when its files are there or will be downloaded)."""
    root = Path(str(cfg.root)).expanduser()
    missing = _missing_mnist(root)
    return _not_found(root, missing) if missing and not cfg.get("download") else ""


def _missing_mnist(root: Path) -> list[str]:
    raw = _mnist_raw_dir(root)
    return [f for f in MNIST_FILES if not (raw / f).exists() and not (raw / f"{f}.gz").exists()]


def mnist_digest(root: Path) -> str:
    """A short hash of the MNIST files the pairs are built from (the extracted file, else its .gz)."""
    raw = _mnist_raw_dir(root)
    h = hashlib.sha256()
    for name in MNIST_FILES:
        path = raw / name if (raw / name).exists() else raw / f"{name}.gz"
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def cache_path(root: Path, seed: int, val_size: int, cache_dir=None) -> Path:
    """The cache file of one construction: the source MNIST (its digest), the data seed, the
    validation size and the construction version :data:`CACHE_VERSION`."""
    missing = _missing_mnist(root)
    if missing:
        load_mnist(root)  # raises the error that names the missing files and the fix
    folder = Path(cache_dir).expanduser() if cache_dir else user_cache_dir()
    name = f"multimnist_seed{seed}_val{val_size}_v{CACHE_VERSION}_mnist{mnist_digest(root)}.pt"
    return folder / "MultiMNIST" / name


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def label_mask(n: int, fraction: float, seed: int, task_index: int) -> np.ndarray:
    """Boolean mask keeping ``round(fraction * n)`` labels; each task draws its own subset."""
    if not 0 < fraction <= 1:
        raise ValueError(f"dataset.label_fraction must be in (0, 1], got {fraction}")
    keep = int(round(fraction * n))
    mask = np.zeros(n, dtype=bool)
    chosen = np.random.Generator(np.random.PCG64([seed, 2, task_index])).permutation(n)[:keep]
    mask[chosen] = True
    return mask


def _as_tensor(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).float().div_(255.0).unsqueeze(1)
    return (x - MEAN) / STD


def fingerprint(arrays: dict) -> str:
    """A short hash of the generated pairs (for checking determinism across machines)."""
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        images, labels = arrays[split][:2]
        h.update(np.ascontiguousarray(images).tobytes())
        h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()[:16]


def build_multimnist(cfg, tasks: list[str], batch_size: int, seed: int) -> Benchmark:
    """Benchmark from the ``dataset`` config node (configs/dataset/multimnist.yaml)."""
    arrays = build_multimnist_arrays(cfg.root, seed=cfg.seed, val_size=cfg.val_size, download=cfg.download,
                                     cache=cfg.cache, cache_dir=cfg.get("cache_dir"))
    fractions = cfg.label_fraction
    if isinstance(fractions, (int, float)):
        fractions = {t: float(fractions) for t in TASKS}
    else:
        fractions = {t: float(fractions.get(t, 1.0)) for t in TASKS}
    images, labels = arrays["train"][:2]
    train_labels = labels.copy()
    for i, task in enumerate(TASKS):
        if fractions[task] < 1.0:
            mask = label_mask(len(train_labels), fractions[task], cfg.seed, i)
            train_labels[~mask, i] = IGNORE

    def targets(lab):
        return {t: torch.from_numpy(lab[:, TASKS.index(t)].copy()) for t in tasks}

    val_images, val_labels = arrays["val"][:2]
    test_images, test_labels = arrays["test"][:2]
    eval_bs = max(batch_size, 1024)
    train = TensorBatches(_as_tensor(images), targets(train_labels), batch_size, shuffle=True, seed=seed)
    val = TensorBatches(_as_tensor(val_images), targets(val_labels), eval_bs) if len(val_images) else None
    test = TensorBatches(_as_tensor(test_images), targets(test_labels), eval_bs)
    return Benchmark(
        name="multimnist",
        tasks=[classification_task(t) for t in tasks],
        train=train,
        val=val,
        test=test,
        info={"label_fraction": fractions, "fingerprint": fingerprint(arrays)},
    )
