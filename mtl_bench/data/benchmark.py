"""The Benchmark type and a device-resident batch loader for datasets that fit in memory."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .tasks import Task


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing or malformed; the message names the files and the fix."""


@dataclass
class Benchmark:
    """Train/val/test data plus the tasks. Each split is an iterable of ``(x, {task: y})``
    batches (a :class:`TensorBatches` or a torch DataLoader yielding that shape)."""

    name: str
    tasks: list[Task]
    train: Iterable
    val: Iterable | None
    test: Iterable | None
    info: dict = field(default_factory=dict)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def splits(self) -> dict[str, Iterable]:
        """The evaluation splits that exist, in order val, test."""
        return {k: v for k, v in (("val", self.val), ("test", self.test)) if v is not None}

    def to(self, device: torch.device) -> "Benchmark":
        """Move resident splits to ``device`` (a no-op for streaming loaders)."""
        for split in (self.train, self.val, self.test):
            if isinstance(split, TensorBatches):
                split.to(device)
        return self


class TensorBatches:
    """Mini-batches over in-memory tensors, kept on one device (GPU when training there).

    Shuffling draws a permutation from its own generator on the CPU (seeded, so reproducible
    on any device and resumable from its state), moved once per epoch: no per-batch host sync.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: Mapping[str, torch.Tensor],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ):
        n = inputs.shape[0]
        for name, y in targets.items():
            if y.shape[0] != n:
                raise ValueError(f"target {name!r} has {y.shape[0]} rows, inputs have {n}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.inputs = inputs
        self.targets = dict(targets)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        n = self.inputs.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_examples(self) -> int:
        return self.inputs.shape[0]

    def to(self, device) -> "TensorBatches":
        self.inputs = self.inputs.to(device)
        self.targets = {k: v.to(device) for k, v in self.targets.items()}
        return self

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        n = self.inputs.shape[0]
        device = self.inputs.device
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(device)
        else:
            order = None
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, n)
            if order is None:
                yield self.inputs[lo:hi], {k: v[lo:hi] for k, v in self.targets.items()}
            else:
                idx = order[lo:hi]
                yield self.inputs[idx], {k: v[idx] for k, v in self.targets.items()}

    # The shuffling generator is part of a run's state: a resumed run draws the same orders.
    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def select_tasks(all_tasks: Sequence[str], requested: Sequence[str] | None, dataset: str) -> list[str]:
    """Validate ``dataset.tasks``: a non-empty subset of the benchmark's tasks, in the given order."""
    if requested is None or len(requested) == 0:
        return list(all_tasks)
    requested = [str(t) for t in requested]
    unknown = [t for t in requested if t not in all_tasks]
    if unknown:
        raise ValueError(
            f"dataset.tasks names unknown task(s) {unknown} for dataset {dataset!r}; "
            f"choose from {list(all_tasks)} (e.g. dataset.tasks=[{all_tasks[0]}] for a single-task baseline)"
        )
    if len(set(requested)) != len(requested):
        raise ValueError(f"dataset.tasks lists a task twice: {requested}")
    return requested


def split_validation(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of range(n) into (train, val) index arrays."""
    if not 0 <= val_size < n:
        raise ValueError(f"dataset.val_size={val_size} must be in [0, {n})")
    perm = np.random.Generator(np.random.PCG64([seed, 1])).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])
