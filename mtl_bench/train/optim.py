"""The optimiser and the lr scheduler of a run, built from Hydra ``_target_`` nodes.

``trainer.optimizer`` and ``trainer.scheduler`` take a name (``sgd | adam | adamw``,
``none | step | cosine``: :data:`mtl_bench.schemas.OPTIMIZERS` / ``SCHEDULERS`` map each to its
class and the trainer keys it reads) or a node of the user's own, e.g.
``{_target_: torch.optim.RMSprop, alpha: 0.9}``. Either becomes a ``_partial_: true`` node,
instantiated with ``hydra.utils.instantiate`` and called with the parameter groups (the model's
and the strategy's own, ``strategy.optimizer_groups()``) or with the optimiser
(docs/configuration.md#optimisers-and-schedulers).
"""
from __future__ import annotations

from ..schemas import OPTIMIZERS, SCHEDULERS, TrainerConfig


def optimizer_node(config: TrainerConfig) -> dict:
    """The ``_partial_`` node of the configured optimiser; a user's node gets ``lr: trainer.lr``
    unless it sets its own."""
    if isinstance(config.optimizer, str):
        target, keys = OPTIMIZERS[config.optimizer]
        return {"_target_": target, "_partial_": True, **{k: getattr(config, k) for k in keys}}
    return {"lr": config.lr, **dict(config.optimizer), "_partial_": True}


def scheduler_node(config: TrainerConfig) -> dict | None:
    """The ``_partial_`` node of the configured scheduler (None: a constant lr)."""
    if isinstance(config.scheduler, str):
        named = SCHEDULERS[config.scheduler]
        if named is None:
            return None
        target, arguments = named
        values = {arg: getattr(config, key) for arg, key in arguments.items()}
        if "T_max" in values:
            values["T_max"] = max(1, values["T_max"])
        return {"_target_": target, "_partial_": True, **values}
    return {**dict(config.scheduler), "_partial_": True}


def _build(node: dict, key: str, first, first_name: str):
    """``node._target_(first, **the node's other keys)`` (through Hydra's ``instantiate``); a
    target that cannot be found, cannot take these arguments or refuses their values is one error
    naming ``key``."""
    import inspect

    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from ..plugins import locate

    path = node.get("_target_")
    target = locate(path, f"{key}._target_")
    keys = [k for k in node if k not in ("_target_", "_partial_")]
    try:
        inspect.signature(target).bind(first, **dict.fromkeys(keys))
    except TypeError as err:
        raise ValueError(f"{key}._target_={path} cannot be called with ({', '.join([first_name, *keys])}): {err}; "
                         f"it is called with the {first_name} and the node's other keys") from None
    except ValueError:  # no signature to check: the call says what is wrong
        pass
    try:
        return instantiate(node, _convert_="all")(first)
    except InstantiationException as err:
        raise ValueError(f"{key}._target_={path}: {str(err).splitlines()[0]}") from None
    except (TypeError, ValueError) as err:  # e.g. torch's "Invalid learning rate: -1"
        raise ValueError(f"{key}._target_={path} with {', '.join(f'{k}={node[k]}' for k in keys) or 'no keys'}: "
                         f"{err}") from None


def build_optimizer(config: TrainerConfig, param_groups: list[dict]):
    return _build(optimizer_node(config), "trainer.optimizer", param_groups, "parameter groups")


def build_scheduler(config: TrainerConfig, optimizer):
    node = scheduler_node(config)
    return None if node is None else _build(node, "trainer.scheduler", optimizer, "optimizer")
