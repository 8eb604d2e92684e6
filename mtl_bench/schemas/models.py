"""Schemas of the built-in models (configs/model/*.yaml; docs/protocols.md names each paper's).

A model of your own (``_target_: my_mtl.build_model``) has no schema here: its keys are checked
against its builder's signature (mtl_bench/plugins.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import Schema, number, one_of, positive_integer, setting


@dataclass
class ModelConfig(Schema):
    GROUP = "model"


@dataclass
class MLPConfig(ModelConfig):
    name: str = "mlp"
    hidden: int = setting(100, "an integer >= 1", positive_integer, "units per hidden layer")
    layers: int = setting(4, "an integer >= 1", positive_integer, "fully connected layers of the shared trunk")
    activation: str = setting("relu", *one_of("relu", "tanh"), help="relu (paper) | tanh (SLAW's re-implementation)")


@dataclass
class MultiLeNetConfig(ModelConfig):
    name: str = "multilenet"
    dropout: str = setting("standard", *one_of("standard", "faithful"),
                           help="standard (nn.Dropout2d/nn.Dropout) | faithful (official code: unscaled masks)")
    p: float = setting(0.5, "a number in [0, 1)", lambda v: number(v) and 0 <= v < 1, "dropout probability")


@dataclass
class SegNetConfig(ModelConfig):
    name: str = "segnet"
    variant: str = setting("standard", *one_of("standard", "wide", "deep"),
                           help="standard | wide (last stage 1024 channels) | deep (conv layers doubled)")


@dataclass
class ResNet50DilatedConfig(ModelConfig):
    name: str = "resnet50_dilated"
    pretrained: bool = setting(False, "true or false", None,
                               "true: ImageNet weights from torch.hub.get_dir()/checkpoints (never downloaded)")


@dataclass
class ResNet18CelebAConfig(ModelConfig):
    name: str = "resnet18_celeba"


@dataclass
class FamoCNNConfig(ModelConfig):
    name: str = "famo_cnn"
