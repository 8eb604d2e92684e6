"""MultiTaskModel: a shared encoder and one head per task (hard parameter sharing)."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


class MultiTaskModel(nn.Module):
    """``encoder(x) -> z`` (the shared representation), ``heads[task](z) -> prediction``.

    ``last_shared_layer`` names the encoder module whose parameters GradNorm balances
    (Chen et al. 2018, section 3: "the last shared layer of weights").
    """

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module], last_shared_layer: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(dict(heads))
        self._last_shared = last_shared_layer
        if last_shared_layer is not None and not any(m is last_shared_layer for m in encoder.modules()):
            raise ValueError("last_shared_layer must be a module of the encoder")

    @property
    def task_names(self) -> list[str]:
        return list(self.heads.keys())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        return {name: head(z) for name, head in self.heads.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def head_parameters(self, task: str) -> list[nn.Parameter]:
        return [p for p in self.heads[task].parameters() if p.requires_grad]

    @property
    def last_shared_layer(self) -> nn.Module | None:
        """The encoder module declared as the last shared layer, or None."""
        return self._last_shared

    def last_shared_parameters(self) -> list[nn.Parameter]:
        if self._last_shared is None:
            raise ValueError(
                f"{type(self.encoder).__name__} declares no last shared layer; "
                "use grad.space=params or grad.space=representation"
            )
        return [p for p in self._last_shared.parameters() if p.requires_grad]
