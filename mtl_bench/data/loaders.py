"""Streaming batches from a map-style dataset: a torch DataLoader with a seeded, checkpointable
shuffling generator, for datasets too large to keep resident on the device."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


class StreamingBatches:
    """Iterates ``(x, {task: y})`` batches of ``dataset`` through a torch DataLoader.

    The DataLoader's generator draws both the shuffling order and the worker seeds (random
    augmentation inside workers), so a run is reproducible for a seed; ``state_dict()`` saves the
    generator so a resumed run draws the same epochs. Batches arrive on the CPU (pinned when
    ``pin_memory``); the trainer moves them to its device.
    """

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                 num_workers: int = 0, drop_last: bool = False, pin_memory: bool | str = "auto"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"dataset.num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(int(seed))
        if pin_memory == "auto":
            pin_memory = torch.cuda.is_available()
        self.loader = DataLoader(
            dataset, batch_size=self.batch_size, shuffle=shuffle, generator=self.generator,
            num_workers=int(num_workers), drop_last=drop_last, pin_memory=bool(pin_memory),
            # fresh workers each epoch: their seeds come from the generator, so resuming is exact
            persistent_workers=False,
        )

    @property
    def num_examples(self) -> int:
        return len(self.dataset)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
