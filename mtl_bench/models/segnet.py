"""SegNet, split into a shared encoder-decoder and per-task heads: MTAN's "Split" multi-task
baseline (Liu et al., CVPR 2019, arXiv 1803.10704; ``im2im_pred/model_segnet_split.py`` of
lorenmt/mtan), the NYUv2 model of MTAN, CAGrad, Nash-MTL and FAMO.

Shared: a VGG-16-shaped encoder of five stages (64, 128, 256, 512, 512 channels; 2, 2, 3, 3, 3
conv-BN-ReLU layers), each followed by a 2x2 max-pool whose indices drive the mirrored decoder's
max-unpooling (3, 3, 3, 2, 2 conv-BN-ReLU layers, ending at 64 channels at full resolution). The
shared representation ``z`` is that 64-channel full-resolution map. Head per task: 3x3 conv
64->64, then 1x1 conv 64->out (13 class logits, 1 depth, 3 normal components; the normal head's
output is L2-normalised by the loss and the metrics, MTAN normalises it inside the model).

Variants (MTAN's ``--type``): ``standard``; ``wide`` (last stage 1024 channels); ``deep`` (every
conv-BN-ReLU layer doubled). Initialisation as MTAN: Xavier-normal conv weights, zero biases,
BatchNorm weight 1 and bias 0. The input size must be divisible by 32 for the five poolings to
invert exactly (288 x 384 is); other sizes work, the unpooling then restores each stage's size.
"""
from __future__ import annotations

from torch import nn
import torch.nn.functional as F

from .multitask import MultiTaskModel

CHANNELS = {"standard": (64, 128, 256, 512, 512), "wide": (64, 128, 256, 512, 1024), "deep": (64, 128, 256, 512, 512)}
# conv-BN-ReLU layers per encoder stage (decoder stages mirror 3, 3, 3, 2, 2 from deep to shallow)
ENCODER_DEPTH = (2, 2, 3, 3, 3)
DECODER_DEPTH = (2, 2, 3, 3, 3)  # stage s of the decoder undoes stage s of the encoder


def conv_bn_relu(cin: int, cout: int, deep: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    if deep:
        layers += [nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SegNetEncoderDecoder(nn.Module):
    """The shared part: ``x [B, 3, H, W] -> z [B, 64, H, W]``."""

    def __init__(self, variant: str = "standard", in_channels: int = 3):
        super().__init__()
        if variant not in CHANNELS:
            raise ValueError(f"model.variant={variant!r}: choose one of {', '.join(CHANNELS)}")
        ch = CHANNELS[variant]
        deep = variant == "deep"
        self.down = nn.ModuleList()
        cin = in_channels
        for s, (cout, depth) in enumerate(zip(ch, ENCODER_DEPTH)):
            self.down.append(nn.Sequential(*[conv_bn_relu(cin if i == 0 else cout, cout, deep) for i in range(depth)]))
            cin = cout
        # decoder stage s maps ch[s] -> ch[s-1] (ch[0] -> ch[0] for s = 0); run from s = 4 to 0
        self.up = nn.ModuleList()
        for s, depth in enumerate(DECODER_DEPTH):
            cout = ch[s - 1] if s > 0 else ch[0]
            self.up.append(nn.Sequential(*[conv_bn_relu(ch[s] if i == 0 else cout, cout, deep) for i in range(depth)]))
        self.out_channels = ch[0]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def last_conv(self) -> nn.Conv2d:
        """The last shared layer of weights (GradNorm's W): the decoder's final convolution."""
        return [m for m in self.up[0].modules() if isinstance(m, nn.Conv2d)][-1]

    def forward(self, x):
        pooled = []
        for stage in self.down:
            x = stage(x)
            size = x.shape[-2:]
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
            pooled.append((idx, size))
        for s in reversed(range(len(self.up))):
            idx, size = pooled[s]
            x = F.max_unpool2d(x, idx, 2, 2, output_size=size)
            x = self.up[s](x)
        return x


class DenseHead(nn.Sequential):
    """MTAN's task head: 3x3 conv C->C, then 1x1 conv C->out."""

    def __init__(self, channels: int, out: int):
        super().__init__(nn.Conv2d(channels, channels, 3, padding=1), nn.Conv2d(channels, out, 1))
        for m in self:
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)


def build_segnet(task_channels: dict[str, int], variant: str = "standard") -> MultiTaskModel:
    """``task_channels``: task name -> output channels (e.g. segmentation 13, depth 1, normal 3)."""
    encoder = SegNetEncoderDecoder(variant)
    heads = {t: DenseHead(encoder.out_channels, c) for t, c in task_channels.items()}
    return MultiTaskModel(encoder, heads, last_shared_layer=encoder.last_conv)
