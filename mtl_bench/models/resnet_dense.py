"""Dilated ResNet-50 with DeepLab-v3 ASPP heads: LibMTL's NYUv2 model (Lin & Zhang, LibMTL,
JMLR 2023), built from torchvision parts.

Shared: torchvision's ResNet-50 up to ``layer4`` with ``replace_stride_with_dilation=[False,
True, True]`` (output stride 8): ``z = [B, 2048, H/8, W/8]``. Head per task: torchvision's
``DeepLabHead`` (ASPP with rates 12/24/36 and image pooling, 3x3 conv, 1x1 conv to the task's
channels), then bilinear upsampling by 8 to the input size (align_corners=True, as LibMTL).
Input sizes must be divisible by 8 (288 x 384 is).

``pretrained=True`` loads torchvision's ImageNet weights from the local torch hub cache
(``torch.hub.get_dir()/checkpoints/resnet50-*.pth``); nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from .multitask import MultiTaskModel

OUTPUT_STRIDE = 8
WEIGHT_FILES = ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth")  # torchvision IMAGENET1K_V1, V2


class PretrainedWeightsNotFoundError(FileNotFoundError, ValueError):
    """ImageNet weights were asked for but are not in the local torch hub cache."""


def find_resnet50_weights() -> Path:
    """The cached torchvision ResNet-50 ImageNet checkpoint (V1 preferred), else a clear error."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    for name in WEIGHT_FILES:
        if (checkpoints / name).exists():
            return checkpoints / name
    others = sorted(checkpoints.glob("resnet50-*.pth")) if checkpoints.is_dir() else []
    if others:
        return others[0]
    raise PretrainedWeightsNotFoundError(
        f"model.pretrained=true needs torchvision's ImageNet ResNet-50 weights at {checkpoints / WEIGHT_FILES[0]} "
        f"(or any {checkpoints}/resnet50-*.pth); nothing is downloaded here. On a machine with internet run\n"
        f"  python -c \"import torchvision; torchvision.models.resnet50(weights='IMAGENET1K_V1')\"\n"
        f"and copy the file from that machine's torch hub cache (~/.cache/torch/hub/checkpoints/{WEIGHT_FILES[0]}) "
        f"to {checkpoints}/ (or point TORCH_HOME at a folder holding hub/checkpoints/), or use model.pretrained=false."
    )


class DilatedResNet50(nn.Module):
    """ResNet-50 stem and layers 1-4 with dilation in layers 3 and 4 (output stride 8)."""

    def __init__(self, pretrained: bool = False):
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
        if pretrained:
            path = find_resnet50_weights()
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = 2048

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.layer4[-1].conv3

    def forward(self, x):
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


class DeepLabUpsampleHead(nn.Module):
    """torchvision's DeepLabHead, then bilinear upsampling by the encoder's output stride."""

    def __init__(self, in_channels: int, out: int, stride: int = OUTPUT_STRIDE):
        super().__init__()
        from torchvision.models.segmentation.deeplabv3 import DeepLabHead

        self.head = DeepLabHead(in_channels, out)
        self.stride = stride

    def forward(self, z):
        y = self.head(z)
        size = (z.shape[-2] * self.stride, z.shape[-1] * self.stride)
        return F.interpolate(y, size=size, mode="bilinear", align_corners=True)


def build_resnet50_dilated(task_channels: dict[str, int], pretrained: bool = False) -> MultiTaskModel:
    encoder = DilatedResNet50(pretrained)
    heads = {t: DeepLabUpsampleHead(encoder.out_channels, c) for t, c in task_channels.items()}
    return MultiTaskModel(encoder, heads, last_shared_layer=encoder.last_conv)
