"""Type checks of command-line overrides against the config files' own values.

Hydra rejects unknown keys (configs are in struct mode) but a plain YAML value takes any type, so
``trainer.epochs=ten`` would fail deep inside training. :func:`check_override_types` compares each
overridden leaf with the value the same groups give without the user's overrides and names the
key, the expected type and the bad value.
"""
from __future__ import annotations

from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf


def _kind(value: Any) -> str | None:
    if value is None:
        return None  # null accepts anything
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple, ListConfig)):
        return "list"
    if isinstance(value, (dict, DictConfig)):
        return "mapping"
    return None


# keys documented to take more than one form (a number or a per-task mapping)
FLEXIBLE_KEYS = {"dataset.label_fraction"}


def _compatible(key: str, expected: str, got: str) -> bool:
    if expected == got or (expected == "number" and got == "integer"):
        return True
    return key in FLEXIBLE_KEYS and {expected, got} <= {"number", "integer", "mapping"}


def check_override_types(cfg: DictConfig, reference: DictConfig, overridden_keys: Iterable[str]) -> None:
    """Raise ValueError for the first overridden key whose value's type differs from the default's."""
    for key in overridden_keys:
        key = key.lstrip("+~")
        if key.startswith("hydra.") or "=" in key:
            continue
        default = OmegaConf.select(reference, key, default=None, throw_on_missing=False)
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        expected, got = _kind(default), _kind(value)
        if expected is None or got is None or _compatible(key, expected, got):
            continue
        raise ValueError(
            f"{key}={value!r} has the wrong type: expected {_article(expected)} {expected} like the default "
            f"{default!r}. "
            f"Fix the override, e.g. {key}={_example(default)}"
        )


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _example(default: Any) -> str:
    if isinstance(default, (ListConfig, list)):
        return "[" + ",".join(str(v) for v in default) + "]"
    return str(default)
