"""NYUv2 with three tasks (13-class segmentation, depth, surface normals), MTAN's pre-processed copy.

Layout (Liu et al., "End-to-End Multi-Task Learning with Attention", CVPR 2019, official
repository lorenmt/mtan)::

    root/train/{image,label,depth,normal}/{0..794}.npy     795 training images
    root/val/{image,label,depth,normal}/{0..653}.npy       654 images, used as the test split

Per file: ``image`` H x W x 3 float (0..1, channels last), ``label`` H x W with classes 0..12 and
-1 = unlabelled, ``depth`` H x W x 1 metres with 0 = invalid, ``normal`` H x W x 3 unit vectors
with the all-zero vector = invalid; H x W = 288 x 384.

No validation split exists in the standard protocol (the reported number is the mean of the last
10 epochs on the test split, ``protocol=mean_last_10``); ``dataset.val_size`` carves one from
train when wanted. Training augmentation (CAGrad / Nash-MTL / FAMO code, after lorenmt/mtan
issue 34): a random scale s from {1.0, 1.2, 1.5}, a random crop of size (H/s, W/s) resized back
to H x W (bilinear for image and normals, nearest for labels and depth) with depth divided by s
(objects appear s times closer); then a horizontal flip with probability 0.5 that negates the
normals' x component.

Loading: a DataLoader over the .npy files (``dataset.cache=none``, ``num_workers`` processes,
augmentation in the workers), or every array resident on the training device
(``dataset.cache=memory``, about 6 GB for the standard copy, augmentation on the device per
sample with parameters from a CPU generator), which keeps a fast GPU step from waiting on I/O.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .benchmark import Benchmark, DatasetNotFoundError, TensorBatches, split_validation
from .dense import depth_task, normal_task, segmentation_task
from .loaders import StreamingBatches

TASKS = ("segmentation", "depth", "normal")
FOLDERS = ("image", "label", "depth", "normal")
SPLITS = {"train": "train", "test": "val"}  # our split name -> folder name
STANDARD_COUNTS = {"train": 795, "val": 654}
NUM_CLASSES = 13
IMAGE_SIZE = (288, 384)
SCALES = (1.0, 1.2, 1.5)

LAYOUT = (
    "NYUv2 (MTAN's pre-processed .npy copy) is expected as\n"
    "  ROOT/train/image/0.npy ... ROOT/train/image/794.npy   (H x W x 3 float)\n"
    "  ROOT/train/label/{i}.npy   (H x W, classes 0..12, -1 = unlabelled)\n"
    "  ROOT/train/depth/{i}.npy   (H x W x 1 float metres, 0 = invalid)\n"
    "  ROOT/train/normal/{i}.npy  (H x W x 3 float unit vectors, all-zero = invalid)\n"
    "  ROOT/val/{image,label,depth,normal}/0.npy ... 653.npy (the test split)\n"
    "with H x W = dataset.image_size (288 x 384). Download the pre-processed copy linked from the "
    "README of github.com/lorenmt/mtan, unzip it, and set dataset.root=/path/to/nyuv2 (the folder "
    "holding train/ and val/) or the MTL_BENCH_DATA environment variable "
    "(then ROOT = $MTL_BENCH_DATA/nyuv2). Check a copy with: python scripts/check_dataset.py nyuv2 ROOT"
)


def _fail(problem: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"{problem}\n{LAYOUT}")


# --------------------------------------------------------------------------- layout checks
def resolve_root(root: str | os.PathLike) -> Path:
    """``root`` itself when it holds train/ and val/, else ``root/nyuv2`` when that does."""
    root = Path(os.path.expanduser(str(root)))
    for candidate in (root, root / "nyuv2", root / "NYUv2"):
        if (candidate / "train").is_dir() or (candidate / "val").is_dir():
            return candidate
    return root


def missing_files(cfg) -> str:
    """Why a run of ``cfg`` would not find NYUv2 ("" when its train/ and val/ folders are there)."""
    root = resolve_root(cfg.root)
    absent = [str(root / folder) for folder in ("train", "val") if not (root / folder).is_dir()]
    return str(_fail(f"NYUv2 not found: missing {', '.join(absent)}")) if absent else ""


_INDEX = re.compile(r"^(\d+)\.npy$")


def scan_split(root: Path, folder: str) -> tuple[int, list[str]]:
    """Count the samples of ``root/folder`` and list layout problems: missing sub-folders, file
    names that are not 0..N-1, different counts in image/label/depth/normal."""
    problems: list[str] = []
    counts = {}
    base = root / folder
    if not base.is_dir():
        return 0, [f"missing folder {base}"]
    for sub in FOLDERS:
        path = base / sub
        if not path.is_dir():
            problems.append(f"missing folder {path}")
            continue
        indices = sorted(int(m.group(1)) for m in map(_INDEX.match, os.listdir(path)) if m)
        if not indices:
            problems.append(f"no {{i}}.npy files in {path}")
            continue
        if indices != list(range(len(indices))):
            missing = sorted(set(range(max(indices) + 1)) - set(indices))[:5]
            problems.append(f"{path} holds {len(indices)} files not numbered 0..{len(indices) - 1} "
                            f"(missing e.g. {', '.join(f'{i}.npy' for i in missing)})")
        counts[sub] = len(indices)
        damaged = [p for p in (npy_problem(path / f"{i}.npy") for i in indices) if p]
        if damaged:
            problems.append(f"{len(damaged)} damaged file(s) in {path}: " + "; ".join(damaged[:3]))
    if len(set(counts.values())) > 1:
        problems.append(f"mismatched counts in {base}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return (min(counts.values()) if counts else 0), problems


def npy_problem(path: Path) -> str:
    """Why a .npy file cannot be whole ("" when its header parses and its size matches it)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            data_start = f.tell()
    except (OSError, ValueError) as err:
        return f"{path.name}: not a readable .npy file ({err})"
    if dtype.hasobject:
        return f"{path.name}: holds Python objects, expected a numeric array"
    expected = data_start + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        return f"{path.name}: {size:,} bytes, but its header ({dtype} {shape}) needs {expected:,}"
    return ""


def check_arrays(image: np.ndarray, label: np.ndarray, depth: np.ndarray, normal: np.ndarray,
                 image_size: Sequence[int] = IMAGE_SIZE, where: str = "") -> list[str]:
    """Shape and dtype problems of one sample (cheap: no value scans)."""
    h, w = image_size
    expected = {"image": ((h, w, 3), image), "label": ((h, w), label), "depth": ((h, w, 1), depth),
                "normal": ((h, w, 3), normal)}
    problems = []
    for name, (shape, arr) in expected.items():
        if arr.shape != shape:
            problems.append(f"{where}{name}: shape {arr.shape}, expected {shape} (H x W = dataset.image_size = {h} x {w})")
        kinds = "fiu" if name == "label" else "f"
        if arr.dtype.kind not in kinds:
            problems.append(f"{where}{name}: dtype {arr.dtype}, expected a {'float or integer' if name == 'label' else 'float'} array")
    return problems


def check_values(image, label, depth, normal, num_classes: int = NUM_CLASSES, where: str = "") -> tuple[list[str], dict]:
    """Value problems of one sample and its statistics (ranges, invalid-pixel fractions)."""
    problems = []
    lab = np.asarray(label, dtype=np.float64)
    if not np.all(lab == np.round(lab)):
        problems.append(f"{where}label: non-integer values")
    bad = (lab != -1) & ((lab < 0) | (lab > num_classes - 1))
    if bad.any():
        problems.append(f"{where}label: values outside -1, 0..{num_classes - 1}: {np.unique(lab[bad])[:5].tolist()}")
    if not np.isfinite(image).all():
        problems.append(f"{where}image: NaN or infinite values")
    if not np.isfinite(depth).all() or (depth < 0).any():
        problems.append(f"{where}depth: negative, NaN or infinite values")
    if not np.isfinite(normal).all():
        problems.append(f"{where}normal: NaN or infinite values")
    else:
        norms = np.linalg.norm(normal, axis=-1)
        valid = (normal != 0).any(axis=-1)
        if valid.any() and np.abs(norms[valid] - 1).max() > 1e-2:
            problems.append(f"{where}normal: valid vectors are not unit length (norms {norms[valid].min():.3f}..{norms[valid].max():.3f})")
    stats = {
        "image_min": float(np.min(image)), "image_max": float(np.max(image)),
        "label_ignored": float(np.mean(lab == -1)),
        "depth_max": float(np.max(depth)), "depth_invalid": float(np.mean(depth == 0)),
        "normal_invalid": float(np.mean(~(normal != 0).any(axis=-1))),
    }
    return problems, stats


def load_sample(root: Path, folder: str, index: int) -> tuple[np.ndarray, ...]:
    return tuple(np.load(root / folder / sub / f"{index}.npy") for sub in FOLDERS)


def validate_layout(root, image_size: Sequence[int] = IMAGE_SIZE, folders: Sequence[str] = ("train", "val")) -> dict[str, int]:
    """Check the layout (counts, names) and the shapes/dtypes of the first sample of each split;
    raise :class:`DatasetNotFoundError` naming every problem. Returns ``{folder: count}``."""
    root = Path(root)
    counts, problems = {}, []
    for folder in folders:
        n, found = scan_split(root, folder)
        problems += found
        counts[folder] = n
        if n and not found:
            try:
                problems += check_arrays(*load_sample(root, folder, 0), image_size=image_size, where=f"{folder}/*/0.npy ")
            except (OSError, ValueError) as err:
                problems.append(f"{root / folder}/*/0.npy cannot be read: {err}")
    if problems:
        raise _fail(f"NYUv2 at {root} is missing or malformed:\n  - " + "\n  - ".join(problems))
    return counts


# ---------------------------------------------------------------------------- augmentation
def scale_crop(image: torch.Tensor, label: torch.Tensor | None, depth: torch.Tensor | None,
               normal: torch.Tensor | None, scale: float, top: int, left: int):
    """Crop ``(int(H/scale), int(W/scale))`` at (top, left) and resize back to H x W: bilinear
    (align_corners=True) for image and normals, nearest for labels and depth; depth / scale.
    Tensors are channels-first: image [3,H,W], label [H,W], depth [1,H,W], normal [3,H,W];
    a target given as None (a task not selected) stays None."""
    height, width = image.shape[-2:]
    h, w = int(height / scale), int(width / scale)
    if not (0 <= top <= height - h and 0 <= left <= width - w):
        raise ValueError(f"crop ({top}, {left}) of size {h}x{w} is outside {height}x{width}")
    rows, cols = slice(top, top + h), slice(left, left + w)

    def resize(x, mode):
        kwargs = {"align_corners": True} if mode == "bilinear" else {}
        return F.interpolate(x[None, :, rows, cols], size=(height, width), mode=mode, **kwargs)[0]

    image = resize(image, "bilinear")
    if label is not None:
        label = resize(label[None].float(), "nearest")[0].to(label.dtype)
    if depth is not None:
        depth = resize(depth, "nearest") / scale
    if normal is not None:
        normal = resize(normal, "bilinear")
    return image, label, depth, normal


def hflip(image, label, depth, normal):
    """Mirror left-right; the normals' x component changes sign. None targets stay None."""
    if normal is not None:
        normal = normal.flip(-1)
        normal = torch.cat([-normal[:1], normal[1:]])
    flip = lambda t: None if t is None else t.flip(-1)  # noqa: E731
    return flip(image), flip(label), flip(depth), normal


def draw_augmentation(height: int, width: int, scales: Sequence[float], flip: bool,
                      generator: torch.Generator | None = None) -> tuple[float, int, int, bool]:
    """Random (scale, top, left, flipped) from ``generator`` (a CPU generator: no device sync)."""
    scale, top, left = 1.0, 0, 0
    if scales:
        scale = float(scales[int(torch.randint(len(scales), (), generator=generator))])
        h, w = int(height / scale), int(width / scale)
        top = int(torch.randint(height - h + 1, (), generator=generator))
        left = int(torch.randint(width - w + 1, (), generator=generator))
    flipped = bool(flip and float(torch.rand((), generator=generator)) < 0.5)
    return scale, top, left, flipped


def random_augment(image, label, depth, normal, scales: Sequence[float] = SCALES, flip: bool = True,
                   generator: torch.Generator | None = None):
    """The standard training augmentation: random scale-crop, then a random horizontal flip,
    drawn from ``generator`` (default: torch's global RNG, seeded per DataLoader worker)."""
    scale, top, left, flipped = draw_augmentation(image.shape[-2], image.shape[-1], scales, flip, generator)
    if scales:
        image, label, depth, normal = scale_crop(image, label, depth, normal, scale, top, left)
    if flipped:
        image, label, depth, normal = hflip(image, label, depth, normal)
    return image, label, depth, normal


class ResidentDenseBatches(TensorBatches):
    """Resident NYUv2 batches (``dataset.cache=memory``): every array lives on the training
    device; labels are stored as int8 and served as int64; the training split is augmented per
    sample on the device with parameters drawn from a CPU generator (no host sync)."""

    def __init__(self, inputs, targets, batch_size, shuffle=False, seed=0, drop_last=False,
                 scales: Sequence[float] = (), flip: bool = False):
        super().__init__(inputs, targets, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.scales = tuple(scales)
        self.flip = flip

    def __iter__(self):
        augment = bool(self.scales) or self.flip
        for x, targets in super().__iter__():
            if "segmentation" in targets:
                targets = {**targets, "segmentation": targets["segmentation"].long()}
            if augment:
                images, out = [], {t: [] for t in targets}
                for i in range(x.shape[0]):
                    sample = [targets[t][i] if t in targets else None for t in TASKS]
                    image, *augmented = random_augment(x[i], *sample, self.scales, self.flip, self.generator)
                    images.append(image)
                    for t, value in zip(TASKS, augmented):
                        if t in out:
                            out[t].append(value)
                x, targets = torch.stack(images), {t: torch.stack(v) for t, v in out.items()}
            yield x, targets


def load_resident(dataset: "NYUv2") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Every sample of ``dataset`` (unaugmented) as stacked tensors; labels as int8."""
    n = len(dataset)
    h, w = dataset.image_size
    images = torch.empty(n, 3, h, w)
    shapes = {"segmentation": ((n, h, w), torch.int8), "depth": ((n, 1, h, w), torch.float32),
              "normal": ((n, 3, h, w), torch.float32)}
    targets = {t: torch.empty(*shapes[t][0], dtype=shapes[t][1]) for t in dataset.tasks}
    for i in range(n):
        image, label, depth, normal = dataset.load(i)
        images[i] = image
        for t, value in (("segmentation", label), ("depth", depth), ("normal", normal)):
            if t in targets:
                targets[t][i] = value
    return images, targets


# -------------------------------------------------------------------------------- dataset
class NYUv2(Dataset):
    """One split of MTAN's NYUv2: ``dataset[i] -> (image [3,H,W] float, {task: target})`` with
    targets ``segmentation`` [H,W] int64, ``depth`` [1,H,W], ``normal`` [3,H,W]."""

    def __init__(self, root, folder: str = "train", indices: Sequence[int] | None = None,
                 tasks: Sequence[str] = TASKS, augment: bool = False, scales: Sequence[float] = SCALES,
                 flip: bool = True, image_size: Sequence[int] = IMAGE_SIZE):
        self.root = Path(root)
        self.folder = folder
        self.tasks = list(tasks)
        self.augment = augment
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip
        self.image_size = tuple(image_size)
        if indices is None:
            n, problems = scan_split(self.root, folder)
            if problems:
                raise _fail(f"NYUv2 at {self.root} is missing or malformed:\n  - " + "\n  - ".join(problems))
            indices = range(n)
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, i: int):
        """The i-th sample as channels-first tensors (image, label, depth, normal), unaugmented."""
        index = self.indices[i]
        image, label, depth, normal = load_sample(self.root, self.folder, index)
        problems = check_arrays(image, label, depth, normal, self.image_size, where=f"{self.folder}/*/{index}.npy ")
        if problems:
            raise _fail(f"NYUv2 at {self.root} is malformed:\n  - " + "\n  - ".join(problems))
        image = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0), dtype=np.float32))
        label = torch.from_numpy(np.ascontiguousarray(np.round(label), dtype=np.int64))
        depth = torch.from_numpy(np.ascontiguousarray(np.moveaxis(depth, -1, 0), dtype=np.float32))
        normal = torch.from_numpy(np.ascontiguousarray(np.moveaxis(normal, -1, 0), dtype=np.float32))
        return image, label, depth, normal

    def __getitem__(self, i: int):
        image, label, depth, normal = self.load(i)
        if self.augment:
            image, label, depth, normal = random_augment(image, label, depth, normal, self.scales, self.flip)
        targets = {"segmentation": label, "depth": depth, "normal": normal}
        return image, {t: targets[t] for t in self.tasks}


def build_nyuv2(cfg, tasks: list[str], batch_size: int, seed: int) -> Benchmark:
    """Benchmark from the ``dataset`` config node (configs/dataset/nyuv2.yaml)."""
    root = resolve_root(cfg.root)
    image_size = tuple(int(v) for v in cfg.image_size)
    counts = validate_layout(root, image_size)
    aug = cfg.augmentation
    scales = tuple(aug.scales) if aug.enabled and aug.scales else ()
    flip = bool(aug.enabled and aug.flip)
    train_idx, val_idx = split_validation(counts["train"], int(cfg.val_size), int(cfg.seed))
    common = dict(tasks=tasks, image_size=image_size)
    train_set = NYUv2(root, "train", train_idx.tolist(), augment=bool(scales) or flip, scales=scales, flip=flip, **common)
    val_set = NYUv2(root, "train", val_idx.tolist(), **common) if len(val_idx) else None
    test_set = NYUv2(root, "val", range(counts["val"]), **common)
    eval_bs = int(cfg.eval_batch_size or batch_size)
    cache = str(cfg.get("cache", "none"))
    if cache == "memory":
        def resident(ds, bs, train=False):
            images, targets = load_resident(ds)
            return ResidentDenseBatches(images, targets, bs, shuffle=train, seed=seed,
                                        drop_last=bool(cfg.drop_last) and train,
                                        scales=scales if train else (), flip=flip and train)
        train = resident(train_set, batch_size, train=True)
        val = resident(val_set, eval_bs) if val_set is not None else None
        test = resident(test_set, eval_bs)
    elif cache == "none":
        loader = dict(num_workers=int(cfg.num_workers), pin_memory=cfg.pin_memory)
        train = StreamingBatches(train_set, batch_size, shuffle=True, seed=seed, drop_last=bool(cfg.drop_last), **loader)
        val = StreamingBatches(val_set, eval_bs, **loader) if val_set is not None else None
        test = StreamingBatches(test_set, eval_bs, **loader)
    else:
        raise ValueError(f"dataset.cache={cache!r}: choose none (DataLoader) or memory (resident on the device)")
    task_objs = {
        "segmentation": lambda: segmentation_task("segmentation", NUM_CLASSES, cfg.miou_absent),
        "depth": lambda: depth_task("depth"),
        "normal": lambda: normal_task("normal"),
    }
    return Benchmark(
        name="nyuv2",
        tasks=[task_objs[t]() for t in tasks],
        train=train,
        val=val,
        test=test,
        info={"image_size": list(image_size), "num_classes": NUM_CLASSES, "num_train": len(train_set),
              "num_val": len(val_idx), "num_test": len(test_set), "batch_size": batch_size,
              "drop_last": bool(cfg.drop_last), "augmentation": {"scales": list(scales), "flip": flip}, "cache": cache,
              "root": str(root)},
    )
