"""Models: encoders, heads and :class:`MultiTaskModel`.

``build_model(model_cfg, benchmark)`` builds the configured architecture for a benchmark's tasks;
``available_models()`` lists the built-in names. A user's model: ``_target_: my_mtl.build_model``
in a model config names a function called as ``build_model(benchmark=..., **other keys)`` that
returns a :class:`MultiTaskModel` (encoder + one head per task of ``benchmark.task_names``).
"""
from __future__ import annotations

from typing import Callable

from .multitask import MultiTaskModel

_MODELS: dict[str, Callable] = {}


def register_model(name: str, builder: Callable) -> None:
    """``builder(model_cfg, benchmark) -> MultiTaskModel``."""
    _MODELS[name] = builder


def available_models() -> list[str]:
    return sorted(_MODELS)


def build_model(cfg, benchmark) -> MultiTaskModel:
    if cfg.get("_target_"):
        from ..plugins import call_builder

        model = call_builder(cfg, "model", benchmark=benchmark)
        if not isinstance(model, MultiTaskModel):
            raise ValueError(f"model._target_={cfg._target_} returned {type(model).__name__}; it must return a "
                             "mtl_bench.models.MultiTaskModel(encoder, heads={task: head, ...})")
        missing = sorted(set(benchmark.task_names) - set(model.task_names))
        if missing:
            raise ValueError(f"model._target_={cfg._target_} has no head for task(s) {missing}; build one head per "
                             "name in benchmark.task_names")
        return model
    if cfg.name not in _MODELS:
        raise ValueError(f"unknown model {cfg.name!r}; available: {available_models()}, or a builder of your own "
                         "(model._target_=my_mtl.build_model)")
    return _MODELS[cfg.name](cfg, benchmark)


def _register_builtin() -> None:
    from .lenet import build_multilenet
    from .mlp import build_mlp

    register_model("mlp", lambda cfg, b: build_mlp(
        b.task_names, b.info["input_dim"], b.info.get("outputs") or b.info["output_dim"], cfg.hidden, cfg.layers,
        cfg.activation))
    register_model("multilenet", lambda cfg, b: build_multilenet(b.task_names, cfg.dropout, cfg.p))

    from .dense import build_dense_model
    from .celeba_nets import build_celeba_model

    register_model("segnet", build_dense_model)
    register_model("resnet50_dilated", build_dense_model)
    register_model("resnet18_celeba", lambda cfg, b: build_celeba_model(b.task_names, "resnet18"))
    register_model("famo_cnn", lambda cfg, b: build_celeba_model(b.task_names, "famo_cnn"))


_register_builtin()

__all__ = ["MultiTaskModel", "available_models", "build_model", "register_model"]
