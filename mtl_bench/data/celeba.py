"""CelebA: 40 binary face attributes as 40 tasks (Sener & Koltun, NeurIPS 2018, arXiv 1810.04650,
section 7.2; Liu et al., "Deep Learning Face Attributes in the Wild", ICCV 2015).

Two on-disk layouts are read:

- torchvision's: ``root/celeba/{img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt}``
  (also accepted when ``root`` is that ``celeba`` folder itself);
- the original Google-Drive one: ``root/{Img/img_align_celeba/, Anno/list_attr_celeba.txt,
  Eval/list_eval_partition.txt}``.

``list_attr_celeba.txt``: a first line with the image count, a second with the 40 attribute names,
then ``<file> v1 ... v40`` with values -1/1 (mapped to 0/1). ``list_eval_partition.txt``:
``<file> <0|1|2>`` for train / valid / test (162,770 / 19,867 / 19,962 images).

Images (the aligned 178 x 218 JPEGs) are resized to ``image_size`` x ``image_size`` (64) with
PIL's bilinear filter, ignoring the aspect ratio as the Sener & Koltun and FAMO loaders do, and
scaled to [0, 1] (no mean subtraction; ``preprocess="sener_koltun"``: their loader's input, see
:func:`load_image`). They are streamed by a DataLoader (``num_workers``) or,
with ``cache=memory``, decoded once into a resident uint8 tensor (64 x 64 x 3 x 202,599 = 2.5 GB)
that lives on the training device; ``cache_dir`` keeps that tensor as .npy files between runs.

Metrics per attribute: error % (the paper's metric), accuracy, F1 of the positive class, loss.
Their means over attributes are formed by the report layer from the per-task values.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .benchmark import Benchmark, DatasetNotFoundError, TensorBatches
from .images import bytescale
from .loaders import StreamingBatches
from .tasks import (IGNORE, Accuracy, ErrorRate, LossMetric, Metric, Task, _per_example_ce, batch_accuracy,
                    classification_loss, labelled_count)

ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
STANDARD_COUNTS = {"train": 162_770, "val": 19_867, "test": 19_962}
ATTR_FILE, PARTITION_FILE, IMAGE_DIR = "list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba"

LAYOUT = (
    "CelebA is expected in torchvision's layout\n"
    "  ROOT/celeba/img_align_celeba/000001.jpg ... 202599.jpg\n"
    "  ROOT/celeba/list_attr_celeba.txt\n"
    "  ROOT/celeba/list_eval_partition.txt\n"
    "or in the original Google-Drive layout\n"
    "  ROOT/Img/img_align_celeba/000001.jpg ...\n"
    "  ROOT/Anno/list_attr_celeba.txt\n"
    "  ROOT/Eval/list_eval_partition.txt\n"
    "Get the 'Align&Cropped Images' and the annotation files from "
    "mmlab.ie.cuhk.edu.hk/projects/CelebA.html (or torchvision.datasets.CelebA(ROOT, download=True) "
    "on a machine with internet), then set dataset.root=ROOT or the MTL_BENCH_DATA environment variable "
    "(ROOT = $MTL_BENCH_DATA). Check a copy with: python scripts/check_dataset.py celeba ROOT"
)


def _fail(problem: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"{problem}\n{LAYOUT}")


# ----------------------------------------------------------------------------- layout
def find_layout(root) -> dict[str, Path]:
    """Paths of the attribute file, partition file and image folder, from whichever layout is
    present; raises :class:`DatasetNotFoundError` listing what is missing otherwise."""
    root = Path(os.path.expanduser(str(root)))
    candidates = {
        "torchvision": {"attr": root / "celeba" / ATTR_FILE, "partition": root / "celeba" / PARTITION_FILE,
                        "images": root / "celeba" / IMAGE_DIR},
        "torchvision (ROOT = the celeba folder)": {"attr": root / ATTR_FILE, "partition": root / PARTITION_FILE,
                                                   "images": root / IMAGE_DIR},
        "Anno/Eval/Img": {"attr": root / "Anno" / ATTR_FILE, "partition": root / "Eval" / PARTITION_FILE,
                          "images": root / "Img" / IMAGE_DIR},
    }
    best, best_found = None, -1
    for name, paths in candidates.items():
        found = sum(p.exists() for p in paths.values())
        if found == 3:
            return {**paths, "layout": name}
        if found > best_found:
            best, best_found = name, found
    if best_found <= 0:
        raise _fail(f"CelebA not found under {root}: none of its files exist there.")
    missing = [str(p) for p in candidates[best].values() if not p.exists()]
    raise _fail(f"CelebA under {root} is incomplete ({best} layout): missing {', '.join(missing)}.")


def missing_files(cfg) -> str:
    """Why a run of ``cfg`` would not find CelebA ("" when a layout's three entries are there)."""
    try:
        find_layout(cfg.root)
    except DatasetNotFoundError as err:
        return str(err)
    return ""


def parse_attributes(path: Path) -> tuple[list[str], np.ndarray]:
    """``(file names, labels int64 [N, 40] in {0, 1})`` from list_attr_celeba.txt, checked."""
    with open(path) as f:
        lines = f.read().splitlines()
    if len(lines) < 2:
        raise _fail(f"{path} is malformed: expected a count line, a header of 40 attribute names and one row per image.")
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise _fail(f"{path} is malformed: its first line should be the image count, got {lines[0][:60]!r}.") from None
    header = lines[1].split()
    if tuple(header) != ATTRIBUTES:
        raise _fail(f"{path} is malformed: its second line should name the 40 attributes "
                    f"{ATTRIBUTES[0]} ... {ATTRIBUTES[-1]}, got {len(header)} names starting {header[:3]}.")
    rows = [line.split() for line in lines[2:] if line.strip()]
    if len(rows) != declared:
        raise _fail(f"{path} is malformed: its first line declares {declared} images but it has {len(rows)} rows.")
    bad = [i for i, r in enumerate(rows) if len(r) != 41]
    if bad:
        raise _fail(f"{path} is malformed: row {bad[0] + 3} has {len(rows[bad[0]])} fields, expected a file name and 40 values.")
    names = [r[0] for r in rows]
    try:
        values = np.array([r[1:] for r in rows], dtype=np.int64)
    except ValueError:
        raise _fail(f"{path} is malformed: attribute values must be -1 or 1.") from None
    if values.size and not np.isin(values, (-1, 1)).all():
        raise _fail(f"{path} is malformed: attribute values must be -1 or 1, found {sorted(set(np.unique(values).tolist()) - {-1, 1})[:5]}.")
    return names, (values == 1).astype(np.int64).reshape(len(rows), len(ATTRIBUTES))


def parse_partition(path: Path) -> dict[str, int]:
    """``{file name: 0|1|2}`` from list_eval_partition.txt, checked."""
    out = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise _fail(f"{path} is malformed: line {number} should read '<file> <0|1|2>', got {line.strip()[:60]!r}.")
            out[fields[0]] = int(fields[1])
    return out


def read_annotations(root) -> dict:
    """Layout, file names, labels [N, 40] and split codes [N], with the annotation files cross-checked."""
    paths = find_layout(root)
    names, labels = parse_attributes(paths["attr"])
    partition = parse_partition(paths["partition"])
    missing = [n for n in names if n not in partition]
    if missing:
        raise _fail(f"{paths['partition']} does not list {len(missing)} image(s) of {paths['attr']} "
                    f"(e.g. {', '.join(missing[:3])}): the two files come from different copies.")
    return {**paths, "names": names, "labels": labels, "split": np.array([partition[n] for n in names], dtype=np.int64)}


def check_images_present(image_dir: Path, names: Sequence[str]) -> list[str]:
    """Names of ``names`` missing from ``image_dir`` (one directory listing, no stat per file)."""
    present = set(os.listdir(image_dir))
    return [n for n in names if n not in present]


# ------------------------------------------------------------------------------ dataset
PREPROCESSING = ("plain", "sener_koltun")
# the per-channel (B, G, R) mean the Sener & Koltun loader subtracts (its multi_task/loaders/celeba_loader.py)
SENER_KOLTUN_MEAN_BGR = np.array([73.15835921, 82.90891754, 72.39239876])


def load_image(path: Path, size: int, preprocess: str = "plain") -> np.ndarray:
    """An image resized to ``size x size`` (PIL bilinear), uint8 [size, size, 3].

    ``plain``: the RGB image (FAMO's loader: ``Resize`` then ``ToTensor``). ``sener_koltun``: what
    the Sener & Koltun loader feeds its network: the image in BGR order minus its channel means,
    stretched to 0..255 over its own range (``scipy.misc.imresize`` byte-scales a float image
    before resizing), then resized; every image spans the full range whatever its contrast.
    """
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        if preprocess == "sener_koltun":
            centred = np.asarray(img, dtype=np.float64)[:, :, ::-1] - SENER_KOLTUN_MEAN_BGR
            img = Image.fromarray(bytescale(centred[None])[0], mode="RGB")
        img = img.resize((size, size), Image.BILINEAR)
        return np.array(img, dtype=np.uint8)


class CelebA(Dataset):
    """One split: ``dataset[i] -> (image [3, S, S] float in [0, 1], {attribute: 0|1})``."""

    def __init__(self, image_dir: Path, names: Sequence[str], labels: np.ndarray, tasks: Sequence[str],
                 image_size: int = 64, as_uint8: bool = False, preprocess: str = "plain"):
        self.image_dir = Path(image_dir)
        self.names = list(names)
        self.labels = torch.from_numpy(np.ascontiguousarray(labels))
        self.columns = [ATTRIBUTES.index(t) for t in tasks]
        self.tasks = list(tasks)
        self.image_size = int(image_size)
        self.as_uint8 = as_uint8
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        path = self.image_dir / self.names[i]
        try:
            array = load_image(path, self.image_size, self.preprocess)
        except (OSError, ValueError) as err:
            raise _fail(f"CelebA image {path} cannot be read: {err}") from None
        x = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        if not self.as_uint8:
            x = x.float().div_(255.0)
        return x, {t: self.labels[i, c] for t, c in zip(self.tasks, self.columns)}


class Uint8ImageBatches(TensorBatches):
    """Resident batches of uint8 images, converted to float in [0, 1] on the device per batch."""

    def __iter__(self):
        for x, targets in super().__iter__():
            yield x.float().div_(255.0), targets


def decode_all(dataset: CelebA, num_workers: int = 0, batch_size: int = 512) -> np.ndarray:
    """Every image of ``dataset`` as one uint8 array [N, 3, S, S] (decoded by a DataLoader)."""
    out = np.empty((len(dataset), 3, dataset.image_size, dataset.image_size), dtype=np.uint8)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    offset = 0
    for x, _ in loader:
        out[offset : offset + len(x)] = x.numpy()
        offset += len(x)
    return out


def cached_images(dataset: CelebA, split: str, cache_dir: str | None, num_workers: int) -> np.ndarray:
    """Decode once; with ``cache_dir`` keep the array as .npy, keyed by the list of file names."""
    if not cache_dir:
        return decode_all(dataset, num_workers)
    key = hashlib.sha256("\n".join(dataset.names).encode()).hexdigest()[:12]
    kind = "" if dataset.preprocess == "plain" else f"_{dataset.preprocess}"
    path = Path(os.path.expanduser(str(cache_dir))) / f"celeba_{split}_{dataset.image_size}px{kind}_{key}.npy"
    if path.exists():
        array = np.load(path)
        if array.shape == (len(dataset), 3, dataset.image_size, dataset.image_size):
            return array
    array = decode_all(dataset, num_workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)
    return array


# ------------------------------------------------------------------------------ metrics
class BinaryF1(Metric):
    """F1 of the positive class (label 1) over the labelled examples of a split, from TP/FP/FN
    counts accumulated on the device. 0 when there are no positives and none is predicted
    (scikit-learn's ``zero_division`` default)."""

    name = "f1"
    higher_is_better = True

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._counts = None

    def update(self, pred, target):
        labelled = target != IGNORE
        predicted = (pred.argmax(dim=1) == 1) & labelled
        actual = (target == 1) & labelled
        counts = torch.stack([(predicted & actual).sum(), (predicted & ~actual).sum(), (~predicted & actual).sum()])
        self._counts = counts if self._counts is None else self._counts + counts

    def compute(self) -> torch.Tensor:
        if self._counts is None:
            return torch.tensor(float("nan"), dtype=torch.float64)
        tp, fp, fn = self._counts.double()
        denominator = 2 * tp + fp + fn
        return torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), torch.zeros_like(tp))


def attribute_task(name: str) -> Task:
    """Two-way cross-entropy; metrics error % (primary), accuracy, F1, loss; batch accuracy as the
    KPI (dtp)."""
    return Task(name=name, loss=classification_loss, loss_count=labelled_count, kpi=batch_accuracy,
                metric_factories=[ErrorRate, Accuracy, BinaryF1, lambda: LossMetric(_per_example_ce)])


def build_celeba(cfg, tasks: list[str], batch_size: int, seed: int) -> Benchmark:
    """Benchmark from the ``dataset`` config node (configs/dataset/celeba.yaml)."""
    ann = read_annotations(cfg.root)
    size = int(cfg.image_size)
    limit = cfg.get("max_examples")
    cache = str(cfg.cache)
    if cache not in ("none", "memory"):
        raise ValueError(f"dataset.cache={cache!r}: choose none (stream with a DataLoader) or memory")
    eval_bs = int(cfg.eval_batch_size or batch_size)
    splits, counts = {}, {}
    for split, code in SPLIT_CODES.items():
        idx = np.flatnonzero(ann["split"] == code)
        if limit:
            idx = idx[: int(limit)]
        counts[split] = len(idx)
        if len(idx) == 0:
            if split == "train":
                raise _fail(f"{ann['partition']} assigns no image to the training split (code 0).")
            splits[split] = None
            continue
        names = [ann["names"][i] for i in idx]
        missing = check_images_present(ann["images"], names)
        if missing:
            raise _fail(f"{len(missing)} image(s) of the {split} split are missing from {ann['images']} "
                        f"(e.g. {', '.join(missing[:3])}).")
        dataset = CelebA(ann["images"], names, ann["labels"][idx], tasks, size, as_uint8=cache == "memory",
                         preprocess=str(cfg.get("preprocess", "plain")))
        train = split == "train"
        if cache == "memory":
            images = torch.from_numpy(cached_images(dataset, split, cfg.get("cache_dir"), int(cfg.num_workers)))
            targets = {t: dataset.labels[:, c].clone() for t, c in zip(tasks, dataset.columns)}
            splits[split] = Uint8ImageBatches(images, targets, batch_size if train else eval_bs, shuffle=train, seed=seed)
        else:
            splits[split] = StreamingBatches(dataset, batch_size if train else eval_bs, shuffle=train, seed=seed,
                                             num_workers=int(cfg.num_workers), pin_memory=cfg.pin_memory)
    return Benchmark(
        name="celeba",
        tasks=[attribute_task(t) for t in tasks],
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        info={"layout": ann["layout"], "image_size": size, "counts": counts, "cache": cache},
    )
