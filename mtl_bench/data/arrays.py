"""A user's own multi-task data from one file, no code: ``dataset=arrays``.

The file (``dataset.path``) holds the inputs and one target per task:

- ``.npz`` (numpy) or ``.pt`` (a dict of tensors): ``dataset.inputs`` names the input array
  ``[N, ...]`` (flattened to ``[N, D]`` for the MLP unless ``flatten=false``), each task's target
  is the array of its name;
- ``.parquet``: ``dataset.inputs`` lists the feature columns (null: every column that is not a
  target or the split column), each task's target is the column of its name.

``dataset.targets`` declares each task's type: ``classification`` (integer labels, -1 for an
unlabelled example; cross-entropy, accuracy), ``binary`` (0/1 labels; cross-entropy over two
logits, error %, accuracy, F1) or ``regression`` (real values ``[N]`` or ``[N, k]``; MSE).
Splits: a ``dataset.split`` array/column with ``train``/``val``/``test`` (or 0/1/2) per row, else
validation and test rows are carved from the file with ``dataset.seed``. Inputs are standardised
with the training rows' mean and std (``standardize``). The data stays resident on the device.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from .benchmark import Benchmark, DatasetNotFoundError, TensorBatches
from .tasks import Task, classification_task, regression_task

TASK_TYPES = ("classification", "binary", "regression")
SPLIT_NAMES = ("train", "val", "test")


def declared_targets(cfg) -> dict[str, str]:
    """``dataset.targets`` as ``{task: type}``, checked."""
    targets = cfg.get("targets")
    targets = OmegaConf.to_container(targets) if OmegaConf.is_config(targets) else targets
    if not isinstance(targets, dict) or not targets:
        raise ValueError(f"dataset.targets={targets!r}: declare each task and its type, e.g. "
                         "dataset.targets={digit:classification,size:regression}")
    bad = {k: v for k, v in targets.items() if v not in TASK_TYPES}
    if bad:
        raise ValueError(f"dataset.targets has unknown task type(s) {bad}; choose {', '.join(TASK_TYPES)}")
    return {str(k): str(v) for k, v in targets.items()}


def task_names(cfg) -> list[str]:
    if not cfg.get("path"):
        raise ValueError("dataset.path is not set: name your .npz, .pt or .parquet file, e.g. dataset.path=data.npz")
    return list(declared_targets(cfg))


def _no_file(path: Path) -> str:
    return f"dataset.path={path}: no such file; give a .npz, .pt or .parquet file"


def missing_files(cfg) -> str:
    """Why a run of ``cfg`` would not find its file ("" when it is there, or not set: that is its own error)."""
    path = Path(str(cfg.path)).expanduser() if cfg.get("path") else None
    return _no_file(path) if path is not None and not path.exists() else ""


def read_arrays(path: Path, inputs, targets: list[str], split_key) -> dict[str, np.ndarray]:
    """``{"x": inputs, task: target, ..., "split": split or absent}`` from a .npz, .pt or .parquet file."""
    if not path.exists():
        raise DatasetNotFoundError(_no_file(path))
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        named = [*targets, *([split_key] if split_key else [])]
        missing = [c for c in named + list(inputs or []) if c not in frame.columns]
        if missing:
            raise ValueError(f"{path} has no column(s) {missing}; its columns: {list(frame.columns)}")
        features = list(inputs) if inputs else [c for c in frame.columns if c not in named]
        text = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
        if text:
            raise ValueError(f"{path}: column(s) {text} are not numeric; list the feature columns with "
                             "dataset.inputs=[...] or name a split column with dataset.split=...")
        out = {"x": frame[features].to_numpy(dtype=np.float32)}
        out.update({name: frame[name].to_numpy() for name in named})
        return out
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    elif suffix == ".pt":
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} holds a {type(loaded).__name__}; save a dict of tensors: torch.save({{'x': ..., "
                             "'task': ...}}, path)")
        arrays = {k: np.asarray(v) for k, v in loaded.items()}
    else:
        raise ValueError(f"dataset.path={path}: unknown file type {suffix!r}; use .npz, .pt or .parquet")
    key = inputs or "x"
    named = [key, *targets, *([split_key] if split_key else [])]
    missing = [k for k in named if k not in arrays]
    if missing:
        raise ValueError(f"{path} has no array(s) {missing}; its arrays: {sorted(arrays)} (dataset.inputs names the "
                         "input array, dataset.targets the tasks, dataset.split the split array)")
    out = {"x": arrays[key]}
    out.update({name: arrays[name] for name in named[1:]})
    return out


def split_rows(n: int, split: np.ndarray | None, val_fraction: float, test_fraction: float, seed: int) -> dict:
    """Row indices of train/val/test: from the split array, else carved at random with ``seed``."""
    if split is not None:
        labels = np.asarray(split)
        if labels.dtype.kind in "iu":
            labels = np.asarray(SPLIT_NAMES, dtype=object)[labels]
        labels = labels.astype(str)
        unknown = sorted(set(labels) - set(SPLIT_NAMES))
        if unknown:
            raise ValueError(f"dataset.split holds {unknown}; use train, val, test (or 0, 1, 2) per row")
        return {name: np.flatnonzero(labels == name) for name in SPLIT_NAMES}
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"dataset.val_fraction={val_fraction} and dataset.test_fraction={test_fraction} must be in "
                         "[0, 1) with a sum below 1")
    order = np.random.Generator(np.random.PCG64([seed, 2])).permutation(n)
    n_val, n_test = int(round(val_fraction * n)), int(round(test_fraction * n))
    return {"val": np.sort(order[:n_val]), "test": np.sort(order[n_val:n_val + n_test]),
            "train": np.sort(order[n_val + n_test:])}


def make_task(name: str, kind: str) -> Task:
    if kind == "regression":
        return regression_task(name)
    if kind == "binary":
        from .celeba import attribute_task

        return attribute_task(name)
    return classification_task(name)


def target_tensor(name: str, kind: str, values: np.ndarray) -> torch.Tensor:
    if kind == "regression":
        tensor = torch.as_tensor(np.asarray(values, dtype=np.float32))
        return tensor.reshape(-1, 1) if tensor.dim() == 1 else tensor
    labels = np.asarray(values)
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise ValueError(f"dataset.targets.{name}={kind} but its values are not integer labels; "
                         f"declare it regression or store class indices")
    labels = labels.astype(np.int64)
    allowed = (-1, 0, 1) if kind == "binary" else None
    if allowed and not np.isin(labels, allowed).all():
        raise ValueError(f"dataset.targets.{name}=binary but it holds {sorted(set(labels.tolist()) - set(allowed))[:5]}; "
                         "use 0/1 (-1: unlabelled) or declare it classification")
    if labels.min() < -1:
        raise ValueError(f"dataset.targets.{name}: class labels must be >= 0 (-1 marks an unlabelled example)")
    return torch.as_tensor(labels)


def build_arrays(cfg, tasks: list[str], batch_size: int, seed: int) -> Benchmark:
    """Benchmark from the ``dataset`` config node (configs/dataset/arrays.yaml)."""
    task_names(cfg)
    kinds = declared_targets(cfg)
    inputs = cfg.get("inputs")
    inputs = OmegaConf.to_container(inputs) if OmegaConf.is_config(inputs) else inputs
    arrays = read_arrays(Path(str(cfg.path)).expanduser(), inputs, list(kinds), cfg.get("split"))
    x = torch.as_tensor(np.array(arrays["x"], dtype=np.float32))
    if cfg.get("flatten", True):
        x = x.reshape(x.shape[0], -1)
    n = x.shape[0]
    for name in kinds:
        if len(arrays[name]) != n:
            raise ValueError(f"target {name!r} has {len(arrays[name])} rows, the inputs have {n}")
    rows = split_rows(n, arrays.get(cfg.get("split")) if cfg.get("split") else None,
                      float(cfg.get("val_fraction", 0.1)), float(cfg.get("test_fraction", 0.1)), int(cfg.get("seed", 0)))
    if len(rows["train"]) == 0:
        raise ValueError(f"{cfg.path}: no training rows (check dataset.split or the fractions)")
    if cfg.get("standardize", True):
        train = x[torch.as_tensor(rows["train"])]
        x = (x - train.mean(0)) / train.std(0).clamp_min(1e-8)
    targets = {name: target_tensor(name, kinds[name], arrays[name]) for name in tasks}
    outputs = {name: (targets[name].shape[1] if kinds[name] == "regression"
                      else 2 if kinds[name] == "binary" else int(targets[name].max()) + 1) for name in tasks}

    def batches(split):
        index = torch.as_tensor(rows[split])
        if len(index) == 0:
            return None
        return TensorBatches(x[index], {k: v[index] for k, v in targets.items()}, batch_size,
                             shuffle=split == "train", seed=seed)

    return Benchmark(str(cfg.get("name", "arrays")), [make_task(name, kinds[name]) for name in tasks],
                     batches("train"), batches("val"), batches("test"),
                     info={"input_dim": int(x.shape[1]) if x.dim() == 2 else list(x.shape[1:]), "outputs": outputs,
                           "rows": {k: int(len(v)) for k, v in rows.items()}, "path": str(cfg.path)})
