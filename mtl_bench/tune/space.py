"""Search spaces of ``mtl-bench tune``: presets in configs/tune/NAME.yaml (docs/tuning.md).

A preset has ``metric`` (the val metric tuned, ``task/metric`` or ``mean/metric``, or null for the
runs' ``protocol.selection.metric``), ``params`` (tuned for every method) and ``methods.NAME``
(added for the strategy config NAME). A parameter is ``{low, high}`` (a float; ``log: true`` draws
log-uniformly, ``int: true`` integers, ``step`` a grid) or ``{choices: [...]}``.
"""
from __future__ import annotations

from pathlib import Path

import yaml

SPEC_KEYS = {"low", "high", "log", "int", "step", "choices"}


def space_file(name: str) -> Path:
    """configs/tune/NAME.yaml, or NAME itself when it is a path to a YAML file."""
    from ..paths import config_dir

    given = Path(name)
    if given.suffix in (".yaml", ".yml") and given.exists():
        return given
    path = config_dir() / "tune" / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in (config_dir() / "tune").glob("*.yaml")))
        raise ValueError(f"--space {name!r}: no search space preset of that name; choose one of {known} "
                         f"or give a path to a YAML file of the same form")
    return path


def load_space(name: str) -> dict:
    """The preset as a plain dict, checked: ``{"metric", "params", "methods"}``."""
    path = space_file(name)
    space = yaml.safe_load(path.read_text()) or {}
    unknown = set(space) - {"metric", "params", "methods"}
    if unknown:
        raise ValueError(f"search space {path}: unknown key(s) {', '.join(sorted(unknown))}; "
                         f"allowed: metric, params, methods")
    space = {"metric": space.get("metric"), "params": dict(space.get("params") or {}),
             "methods": {k: dict(v or {}) for k, v in (space.get("methods") or {}).items()}}
    for where, params in [("params", space["params"])] + [(f"methods.{m}", p) for m, p in space["methods"].items()]:
        for key, spec in params.items():
            check_spec(f"{path.name} {where}.{key}", spec)
    return space


def check_spec(where: str, spec) -> None:
    if not isinstance(spec, dict) or not (set(spec) <= SPEC_KEYS):
        raise ValueError(f"search space {where}={spec!r}: give {{low, high}} (with log, int, step) or {{choices: [...]}}")
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ValueError(f"search space {where}: choices must be a non-empty list")
        return
    if "low" not in spec or "high" not in spec or not float(spec["low"]) < float(spec["high"]):
        raise ValueError(f"search space {where}={spec!r}: needs low < high")
    if spec.get("log") and float(spec["low"]) <= 0:
        raise ValueError(f"search space {where}: log: true needs low > 0")


def method_params(space: dict, method: str) -> dict:
    """The parameters tuned for ``method``: the common ones, then the method's own."""
    return {**space["params"], **space["methods"].get(method, {})}


def suggest(trial, params: dict) -> dict:
    """Draw every parameter from an Optuna trial: ``{config key: value}``."""
    values = {}
    for key, spec in params.items():
        if "choices" in spec:
            values[key] = trial.suggest_categorical(key, list(spec["choices"]))
        elif spec.get("int"):
            values[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)),
                                            log=bool(spec.get("log", False)))
        else:
            values[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]),
                                              step=spec.get("step"), log=bool(spec.get("log", False)))
    return values


def override(key: str, value) -> str:
    """A Hydra command-line override of a drawn value (floats written exactly)."""
    if isinstance(value, float):
        return f"{key}={value!r}"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={value}"
