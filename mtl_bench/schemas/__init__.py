"""Config schemas: every key of every built-in config group with its type, default, range and
meaning (docs/configuration.md).

Each schema is a dataclass registered in Hydra's ConfigStore under ``schema/...``; each config
file of the group names it first in its defaults list (``- /schema/trainer@_here_``), so Hydra
composes the file onto the schema: a value of the wrong type is refused while composing, and
:func:`mtl_bench.schemas.check.validate` refuses unknown keys and out-of-range values before a run
starts. A new group adds its dataclass to :data:`SCHEMAS` and the line to its config files.
"""
from __future__ import annotations

from .base import Schema, setting
from .datasets import ArraysConfig, CelebAConfig, MultiMNISTConfig, NYUv2Config, SyntheticConfig
from .models import FamoCNNConfig, MLPConfig, MultiLeNetConfig, ResNet18CelebAConfig, ResNet50DilatedConfig, SegNetConfig
from .run import OPTIMIZERS, SCHEDULERS, GradConfig, ProtocolConfig, SelectionConfig, TopLevelConfig, TrainerConfig

#: ConfigStore name (under ``schema/``) -> schema: ``- /schema/NAME@_here_`` in a config file
SCHEMAS: dict[str, type[Schema]] = {
    "trainer": TrainerConfig,
    "grad": GradConfig,
    "protocol": ProtocolConfig,
    "dataset/synthetic": SyntheticConfig,
    "dataset/multimnist": MultiMNISTConfig,
    "dataset/celeba": CelebAConfig,
    "dataset/nyuv2": NYUv2Config,
    "dataset/arrays": ArraysConfig,
    "model/mlp": MLPConfig,
    "model/multilenet": MultiLeNetConfig,
    "model/segnet": SegNetConfig,
    "model/resnet50_dilated": ResNet50DilatedConfig,
    "model/resnet18_celeba": ResNet18CelebAConfig,
    "model/famo_cnn": FamoCNNConfig,
}


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent); needed before composing configs/."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        group, _, leaf = f"schema/{name}".rpartition("/")
        store.store(group=group, name=leaf, node=schema)


register()

__all__ = ["OPTIMIZERS", "SCHEDULERS", "SCHEMAS", "GradConfig", "ProtocolConfig", "Schema", "SelectionConfig",
           "TopLevelConfig", "TrainerConfig", "register", "setting"]
