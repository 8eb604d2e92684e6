"""CelebA encoders with one linear head per attribute.

``resnet18``: Sener & Koltun 2018 (arXiv 1810.04650, appendix): ResNet-18 with a CIFAR-style stem
(3x3 conv, stride 1, no max-pool), built from torchvision's ResNet-18 blocks; the ``layer4`` output
(8x8x512 for 64x64 inputs) is average-pooled to 2x2x512 and flattened to 2048 features; each head
is ``Linear(2048, 2)`` trained with cross-entropy.

``famo_cnn``: the 9-layer network of FAMO's CelebA experiment (Liu et al., NeurIPS 2023; file
``experiments/celeba/models.py`` of the official repository Cranial-XIX/FAMO): seven 3x3
conv-BN-ReLU layers without bias (64; 128, 128; 256, 256; 512, 512) with 2x2 max-pools after the
1st, 3rd and 5th, global average pooling, then two Linear(512, 512, no bias)-BN-ReLU layers: 512
shared features. FAMO's heads are Linear(512, 1) with a sigmoid and binary cross-entropy; ours are
Linear(512, 2) with cross-entropy, so every CelebA model shares the same loss and metrics
(a two-logit softmax is the same model family as one logit with a sigmoid).
"""
from __future__ import annotations

from torch import nn

from .multitask import MultiTaskModel


class CifarResNet18(nn.Module):
    """``x [B, 3, 64, 64] -> [B, 512 * pool * pool]``."""

    def __init__(self, pool: int = 2):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        self.layers = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.out_features = 512 * pool * pool
        nn.init.kaiming_normal_(self.stem[0].weight, mode="fan_out", nonlinearity="relu")

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.layers[-1][-1].conv2

    def forward(self, x):
        return self.pool(self.layers(self.stem(x))).flatten(1)


def _conv(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class FamoCelebaCNN(nn.Module):
    """FAMO's shared CelebA network: ``x [B, 3, H, W] -> [B, 512]``."""

    def __init__(self):
        super().__init__()
        pool = nn.MaxPool2d(2, 2)
        self.features = nn.Sequential(
            *_conv(3, 64), pool,
            *_conv(64, 128), *_conv(128, 128), nn.MaxPool2d(2, 2),
            *_conv(128, 256), *_conv(256, 256), nn.MaxPool2d(2, 2),
            *_conv(256, 512), *_conv(512, 512),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.mlp = nn.Sequential(nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                 nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(inplace=True))
        self.out_features = 512

    @property
    def last_linear(self) -> nn.Linear:
        return self.mlp[3]

    def forward(self, x):
        return self.mlp(self.features(x))


def build_celeba_model(tasks: list[str], arch: str = "resnet18", classes: int = 2) -> MultiTaskModel:
    if arch == "resnet18":
        encoder = CifarResNet18()
        last = encoder.last_conv
    elif arch == "famo_cnn":
        encoder = FamoCelebaCNN()
        last = encoder.last_linear
    else:
        raise ValueError(f"CelebA model {arch!r}: choose resnet18 or famo_cnn")
    heads = {t: nn.Linear(encoder.out_features, classes) for t in tasks}
    return MultiTaskModel(encoder, heads, last_shared_layer=last)
