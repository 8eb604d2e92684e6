"""MultiLeNet of Sener & Koltun 2018 (arXiv 1810.04650, appendix; official ``multi_lenet.py``).

Encoder: conv(1->10, k5) -> maxpool2 -> relu; conv(10->20, k5) -> dropout2d(0.5) -> maxpool2
-> relu; flatten 320 -> fc 50 -> relu. Head per task: fc 50->50 -> relu -> dropout(0.5) -> fc 50->10.

``dropout="faithful"`` reproduces the official code: Bernoulli(0.5) masks without the 1/(1-p)
rescaling, one channel mask shared by the whole batch in the conv layer and an element-wise mask in
the heads; ``"standard"`` uses nn.Dropout2d / nn.Dropout (rescaled by 1/(1-p)).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .multitask import MultiTaskModel


class UnscaledDropout(nn.Module):
    """Multiply by a Bernoulli(1 - p) mask without rescaling. ``per_batch=True`` draws one mask
    over dim 1 (channels) shared by the whole batch; otherwise one value per element."""

    def __init__(self, p: float = 0.5, per_batch: bool = False):
        super().__init__()
        self.p = p
        self.per_batch = per_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2) if self.per_batch else list(x.shape)
        mask = torch.bernoulli(torch.full(shape, 1 - self.p, device=x.device, dtype=x.dtype))
        return x * mask


def _dropouts(kind: str, p: float):
    if kind == "faithful":
        return UnscaledDropout(p, per_batch=True), UnscaledDropout(p)
    if kind == "standard":
        return nn.Dropout2d(p), nn.Dropout(p)
    raise ValueError(f"model.dropout={kind!r} is unknown; choose 'faithful' or 'standard'")


class MultiLeNetEncoder(nn.Module):
    def __init__(self, dropout: str = "standard", p: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.drop = _dropouts(dropout, p)[0]
        self.fc = nn.Linear(320, 50)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.drop(self.conv2(x)), 2))
        return F.relu(self.fc(x.flatten(1)))


def lenet_head(dropout: str = "standard", p: float = 0.5, classes: int = 10) -> nn.Sequential:
    return nn.Sequential(nn.Linear(50, 50), nn.ReLU(), _dropouts(dropout, p)[1], nn.Linear(50, classes))


def build_multilenet(tasks: list[str], dropout: str = "standard", p: float = 0.5, classes: int = 10) -> MultiTaskModel:
    encoder = MultiLeNetEncoder(dropout, p)
    return MultiTaskModel(encoder, {t: lenet_head(dropout, p, classes) for t in tasks}, last_shared_layer=encoder.fc)
