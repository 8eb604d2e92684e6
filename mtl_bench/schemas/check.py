"""One line for every bad config: unknown keys, values of the wrong type, out-of-range values.

:func:`validate` runs on the composed config before a run starts; :func:`explain` turns the
errors Hydra raises while composing (an override of the wrong type, or of a key the schema lacks)
into the same kind of line.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .base import Schema, text, unknown_key, unknown_name, wrong_type
from .run import GradConfig, TopLevelConfig

#: nodes of the composed config that may hold a schema (user plug-ins hold none: no schema, no check here)
GROUPS = ("trainer", "grad", "diagnostics", "protocol", "dataset", "model")


def schema_of(node: Any) -> type[Schema] | None:
    kind = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    return kind if isinstance(kind, type) and issubclass(kind, Schema) else None


def _unknown_keys(node: DictConfig, path: str) -> None:
    schema = schema_of(node)
    if schema is None:
        return
    names = {f.name for f in dataclasses.fields(schema)}
    for key in node.keys():
        if key not in names:
            raise ValueError(unknown_key(schema, f"{path}.{key}"))
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            _unknown_keys(child, f"{path}.{key}")


def validate(cfg: DictConfig, task_names: list[str] | None = None) -> dict[str, Schema]:
    """The typed node of each group that has a schema; ValueError (one line: key, value, what is
    allowed, an example) for the first unknown key or out-of-range value. ``task_names``: the
    dataset's tasks, for the keys that name them."""
    typed = {}
    for group in GROUPS:
        node = cfg.get(group)
        if schema_of(node) is None:
            continue
        _unknown_keys(node, group)
        typed[group] = OmegaConf.to_object(node)
    TopLevelConfig(seed=cfg.get("seed"))
    strategy = cfg.get("strategy")
    if isinstance(strategy, DictConfig):
        _strategy_keys(strategy)
        if strategy.get("space") is not None:
            GradConfig(space=strategy.space)  # a variant's own space takes grad.space's values
    if task_names and "dataset" in typed:
        typed["dataset"].check_task_names(task_names)
    return typed


def _hyperparameters_hint(key: str, known: dict) -> str:
    """``did you mean strategy.temp? its hyper-parameters are temp=2.0, ...`` for an unknown ``key``."""
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"did you mean strategy.{close[0]}? " if close else ""
    return f"{hint}its hyper-parameters are {', '.join(f'{k}={v!r}' for k, v in known.items()) or 'none'}"


def _strategy_keys(node: DictConfig) -> None:
    """A strategy's schema is its constructor: every key but ``name``, ``_target_`` and ``space``
    must be one of its hyper-parameters (a user's class included)."""
    from ..strategies import hyperparameters

    known = hyperparameters(node.get("_target_") or node.get("name"))
    values = OmegaConf.to_container(node, resolve=True)
    for key, value in values.items():
        if key in ("name", "_target_", "space"):
            continue
        if key not in known:
            raise ValueError(f"strategy.{key} is not a hyper-parameter of strategy {node.get('name') or node._target_}: "
                             f"{_hyperparameters_hint(str(key), known)}")
        expected, got = _kind(known[key]), _kind(value)
        if expected and got and expected != got and not (expected == "a number" and got == "an integer"):
            raise ValueError(f"strategy.{key}={value!r} has the wrong type: {expected} like the default, "
                             f"e.g. strategy.{key}={text(known[key])}")


def _unknown_strategy_key(node: DictConfig, key: str) -> str:
    """``strategy.tmpe=2`` where the strategy's config has no ``tmpe``: a typo (the closest
    hyper-parameter) or one its config does not list (given with ``+``)."""
    from ..strategies import hyperparameters

    name = node.get("name") or node.get("_target_")
    try:
        known = hyperparameters(node.get("_target_") or name)
    except Exception:  # an unknown strategy: its own check says so
        known = {}
    short = key.split(".", 1)[1]
    if short.split(".", 1)[0] in known:
        return (f"{key} is a hyper-parameter of strategy {name} that its config does not list: give it with "
                f"+{key}=... (the + adds a key to a config)")
    return (f"{key} is not in the config of strategy {name}: {_hyperparameters_hint(short, known)} "
            f"(one its config does not list is given with +{key}=...)")


def _unknown_plain_key(node: DictConfig, key: str) -> str:
    """``model.hiden=3`` on a config of one's own (no schema): the closest of its keys."""
    return unknown_name(key, [str(k) for k in node.keys()], f"(one it does not list is given with +{key}=...)")


def _kind(value) -> str | None:
    """The kind of a constructor default or a config value (None: no default to compare with)."""
    if value is None or value is inspect.Parameter.empty:
        return None
    for kind, types in (("a boolean", bool), ("an integer", int), ("a number", float), ("a string", str),
                        ("a list", (list, tuple)), ("a mapping", dict)):
        if isinstance(value, types):
            return kind
    return None


def typed_node(node, schema: type[Schema]):
    """``node`` as an instance of ``schema`` (validated), whether or not it was composed onto it."""
    from omegaconf.errors import ConfigKeyError, ValidationError

    if isinstance(node, schema):
        return node
    if schema_of(node) is not schema:
        try:
            node = OmegaConf.merge(OmegaConf.structured(schema), node)
        except ConfigKeyError as err:
            raise ValueError(unknown_key(schema, f"{schema.GROUP}.{err.key}")) from None
        except ValidationError as err:
            raise ValueError(wrong_type(schema, f"{schema.GROUP}.{err.key}", repr(err.value))) from None
    return OmegaConf.to_object(node)


def explain(error: BaseException) -> str | None:
    """The one-line message of a Hydra composition error caused by a schema, else None."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = error.__cause__ or error.__context__ or error  # an override's error, or a config file's
    schema = getattr(cause, "object_type", None)
    key = getattr(cause, "full_key", None)
    strategy = getattr(cause, "parent_node", None)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and isinstance(key, str) \
            and key.startswith("strategy.") and key.count(".") == 1 and isinstance(strategy, DictConfig):
        return _unknown_strategy_key(strategy, key)  # a key the strategy's config file does not list
    has_schema = isinstance(schema, type) and issubclass(schema, Schema)
    if not has_schema and isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and isinstance(key, str) \
            and "." in key and isinstance(strategy, DictConfig):
        return _unknown_plain_key(strategy, key)  # a config without a schema: a user's model or dataset
    if not (has_schema and key):
        return None
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        return unknown_key(schema, key)
    if isinstance(cause, ValidationError):
        message = str(error).splitlines()[0]
        if message.startswith("Error merging override") and "=" in message:
            value = message.split("=", 1)[1]  # as the user typed it
        else:
            value = f"{getattr(cause, 'value', '?')} (in {message.split(':')[0].removeprefix('In ')})"
        return wrong_type(schema, key, value)
    return f"{key}: {str(cause).splitlines()[0]}"
