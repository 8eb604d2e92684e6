"""Schemas of the built-in datasets (configs/dataset/*.yaml; docs/protocols.md for each protocol).

A dataset of your own (``_target_: my_mtl.load_data``) has no schema here: its keys are checked
against its loader's signature (mtl_bench/plugins.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from .base import (TASKS_ALLOWED, Schema, at_least, integer, number, one_of, optional, positive_integer, setting,
                   task_list)

DATA_ROOT = "${oc.env:MTL_BENCH_DATA,'~/.local/share/mtl-bench/data'}"
PIN_MEMORY = ("auto", True, False)


def tasks_setting(first_task: str, meaning: str):
    """``dataset.tasks``: null (every task) or a non-empty list of the dataset's task names."""
    return setting(None, TASKS_ALLOWED, task_list, meaning,
                   example=lambda refused: f"dataset.tasks=[{refused if isinstance(refused, str) else first_task}]")


def _fraction(v) -> bool:
    return number(v) and 0 < v <= 1


def _label_fraction(v) -> bool:
    if isinstance(v, dict):
        return len(v) > 0 and all(_fraction(f) for f in v.values())
    return _fraction(v)


@dataclass
class DatasetConfig(Schema):
    GROUP = "dataset"


@dataclass
class SyntheticConfig(DatasetConfig):
    name: str = "synthetic"
    root: str = setting(DATA_ROOT, "a folder", None, "unused: generated in memory")
    tasks: Optional[List[str]] = tasks_setting("task0", "subset of task0..task{T-1}; null = all")
    preset: str = setting("slaw", *one_of("slaw", "paper", "spread"),
                          help="slaw: sigma (1, 10) for T=2 | paper: sigma (1, 100); sigma_i = i for other T | "
                               "spread: log-spaced 1..100 for any T")
    num_tasks: int = setting(2, "an integer >= 1", positive_integer, "T, the number of regression tasks")
    sigmas: Optional[Any] = setting(None, "null or a list of one number > 0 per task",
                                    optional(lambda v: isinstance(v, list) and all(number(s) and s > 0 for s in v)),
                                    "explicit list overrides the preset", example=[1, 10])
    num_samples: int = setting(10000, "an integer >= 1", positive_integer, "train + val")
    num_val: int = setting(1000, "an integer >= 0", lambda v: integer(v) and v >= 0,
                           "validation rows carved from num_samples")
    num_test: int = setting(1000, "an integer >= 1", positive_integer, "test rows, drawn afresh from the same law")
    input_dim: int = setting(250, "an integer >= 1", positive_integer, "dimension of x")
    output_dim: int = setting(100, "an integer >= 1", positive_integer, "outputs per task")
    input_std: float = setting(0.01, "a number > 0", lambda v: number(v) and v > 0, "std of the Gaussian inputs x")
    standardize: bool = setting(True, "true or false", None, "feed x / input_std to the model; false: the raw x")
    noise: float = setting(0.0, "a number >= 0", at_least(0), "std of Gaussian noise added to the targets")
    seed: int = setting(0, "an integer", integer, "data seed (B, eps_i, inputs)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_val >= self.num_samples:
            raise ValueError(f"dataset.num_val={self.num_val} is out of range: fewer than dataset.num_samples="
                             f"{self.num_samples} (the rest trains), e.g. dataset.num_val={self.num_samples // 10}")


@dataclass
class MultiMNISTConfig(DatasetConfig):
    name: str = "multimnist"
    root: str = setting(DATA_ROOT, "a folder", None, "holds MNIST/raw/*-ubyte")
    tasks: Optional[List[str]] = tasks_setting("left", "[left], [right] or null = both")
    download: bool = setting(False, "true or false", None, "true: fetch MNIST with torchvision (needs internet)")
    cache: bool = setting(True, "true or false", None, "cache the generated pairs (in cache_dir/MultiMNIST)")
    cache_dir: Optional[str] = setting(None, "null or a folder", None,
                                       "null: $XDG_CACHE_HOME/mtl-bench, else ~/.cache/mtl-bench")
    seed: int = setting(0, "an integer", integer, "data seed: pairs, validation split, label subsets")
    val_size: int = setting(6000, "an integer >= 0", lambda v: integer(v) and v >= 0,
                            "validation examples carved from the 60,000 training pairs")
    label_fraction: Any = setting(1.0, "a fraction in (0, 1], or {task: fraction} per task", _label_fraction,
                                  "fraction of training labels kept per task: a number, or {left: 0.1, right: 1.0}",
                                  example="dataset.label_fraction=0.1 or dataset.label_fraction={left:0.1}")

    def check_task_names(self, task_names: list[str]) -> None:
        if isinstance(self.label_fraction, dict):
            unknown = [t for t in self.label_fraction if t not in task_names]
            if unknown:
                raise ValueError(f"dataset.label_fraction names unknown task {unknown[0]!r}; the tasks are "
                                 f"{', '.join(task_names)}, e.g. dataset.label_fraction={{{task_names[0]}:0.1}}")

    def __post_init__(self) -> None:
        fractions = self.label_fraction
        if isinstance(fractions, dict):  # name the task whose fraction is out of range
            for task, fraction in fractions.items():
                if not _fraction(fraction):
                    raise ValueError(f"dataset.label_fraction.{task}={fraction!r} is out of range: a fraction in "
                                     f"(0, 1], e.g. dataset.label_fraction={{{task}:0.1}}")
        super().__post_init__()


@dataclass
class CelebAConfig(DatasetConfig):
    name: str = "celeba"
    root: str = setting(DATA_ROOT, "a folder", None, "holds celeba/ (torchvision) or Anno/ Eval/ Img/")
    tasks: Optional[List[str]] = tasks_setting("Smiling", "any subset of the 40 attributes; null = all 40")
    image_size: int = setting(64, "an integer >= 1 (pixels)", positive_integer, "images resized to S x S")
    preprocess: str = setting("plain", *one_of("plain", "sener_koltun"),
                              help="plain: RGB in [0, 1] | sener_koltun: BGR minus the mean, each image "
                                   "stretched to its full range (their loader)")
    cache: str = setting("none", *one_of("none", "memory"),
                         help="none: stream JPEGs with a DataLoader | memory: decode once into a resident tensor")
    cache_dir: Optional[str] = setting(None, "null or a folder", None, "with cache=memory: keep the decoded arrays here")
    num_workers: int = setting(4, "an integer >= 0", lambda v: integer(v) and v >= 0, "DataLoader workers (decoding)")
    pin_memory: Any = setting("auto", *one_of(*PIN_MEMORY), help="auto (on a GPU) | true | false")
    eval_batch_size: Optional[int] = setting(None, "null or an integer >= 1", optional(positive_integer),
                                             "null = trainer.batch_size", example=256)
    max_examples: Optional[int] = setting(None, "null or an integer >= 1", optional(positive_integer),
                                          "use only the first N images of each split (smoke tests)", example=1000)


@dataclass
class AugmentationConfig(Schema):
    GROUP = "dataset.augmentation"
    enabled: bool = setting(True, "true or false", None, "training only: random scale-crop, then horizontal flip")
    scales: List[float] = setting([1.0, 1.2, 1.5], "a non-empty list of numbers >= 1",
                                  lambda v: len(v) > 0 and all(number(s) and s >= 1 for s in v),
                                  "random scale-crop factors of the training augmentation")
    flip: bool = setting(True, "true or false", None, "p = 0.5; negates the normals' x component")


@dataclass
class NYUv2Config(DatasetConfig):
    name: str = "nyuv2"
    root: str = setting(f"{DATA_ROOT}/nyuv2", "a folder", None, "holds train/ and val/")
    tasks: Optional[List[str]] = tasks_setting("segmentation", "subset of [segmentation, depth, normal]; null = all")
    image_size: List[int] = setting([288, 384], "[H, W], two integers >= 1",
                                    lambda v: len(v) == 2 and all(positive_integer(s) for s in v),
                                    "H x W every .npy file must have")
    val_size: int = setting(0, "an integer >= 0", lambda v: integer(v) and v >= 0,
                            "images carved from train as a validation split; 0 = none (standard protocol)")
    seed: int = setting(0, "an integer", integer, "data seed: the validation split")
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    miou_absent: str = setting("skip", *one_of("skip", "nan"), help="classes absent from targets and predictions")
    cache: str = setting("none", *one_of("none", "memory"),
                         help="none: a DataLoader reads .npy files | memory: every array resident on the device")
    num_workers: int = setting(2, "an integer >= 0", lambda v: integer(v) and v >= 0, "DataLoader worker processes")
    pin_memory: Any = setting("auto", *one_of(*PIN_MEMORY), help="auto (on a GPU) | true | false")
    drop_last: bool = setting(False, "true or false", None, "true drops the last short training batch")
    eval_batch_size: Optional[int] = setting(None, "null or an integer >= 1", optional(positive_integer),
                                             "null = trainer.batch_size", example=8)


@dataclass
class ArraysConfig(DatasetConfig):
    name: str = "arrays"
    path: Optional[str] = setting(None, "a .npz, .pt or .parquet file", None, "the file", example="data.npz")
    inputs: Any = setting("x", "an array name, or a list of feature columns (.parquet), or null",
                          lambda v: v is None or isinstance(v, (str, list)), ".npz/.pt: the input array's name")
    targets: Optional[Any] = setting(None, "{task: classification | binary | regression}",
                                     optional(lambda v: isinstance(v, dict)), "{task: type}",
                                     example="dataset.targets={digit:classification}")
    split: Optional[str] = setting(None, "null or the name of a split array/column", None,
                                   "train/val/test (or 0/1/2) per row; null: carved with `seed`")
    val_fraction: float = setting(0.1, "a number in [0, 1)", lambda v: number(v) and 0 <= v < 1,
                                  "without `split`: share of rows for validation")
    test_fraction: float = setting(0.1, "a number in [0, 1)", lambda v: number(v) and 0 <= v < 1,
                                   "without `split`: share of rows for test")
    seed: int = setting(0, "an integer", integer, "data seed of the carved split")
    flatten: bool = setting(True, "true or false", None, "flatten inputs [N, ...] to [N, D]")
    standardize: bool = setting(True, "true or false", None, "scale inputs with the training rows' statistics")
    tasks: Optional[List[str]] = tasks_setting("digit", "a subset of the declared tasks")
