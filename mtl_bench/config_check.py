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


# ---------------------------------------------------------------------------------- values
def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _one_of(*choices):
    return (lambda v: v in choices), "one of " + ", ".join(map(str, choices))


#: key -> (accepts the value, what is allowed, an example); null is accepted where the default is null
VALUE_RULES = {
    "seed": (_integer, "an integer", "seed=0"),
    "trainer.epochs": (lambda v: _integer(v) and v >= 1, "an integer >= 1", "trainer.epochs=20"),
    "trainer.batch_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1", "trainer.batch_size=256"),
    "trainer.lr": (lambda v: _number(v) and v > 0, "a number > 0", "trainer.lr=0.01"),
    "trainer.momentum": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)", "trainer.momentum=0.9"),
    "trainer.weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0", "trainer.weight_decay=0"),
    "trainer.step_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1 (epochs)", "trainer.step_size=30"),
    "trainer.gamma": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]", "trainer.gamma=0.5"),
    "trainer.log_interval": (lambda v: _integer(v) and v >= 1, "an integer >= 1 (steps)", "trainer.log_interval=50"),
    "trainer.optimizer": (*_one_of("sgd", "adam", "adamw"), "trainer.optimizer=sgd"),
    "trainer.scheduler": (*_one_of("none", "step", "cosine"), "trainer.scheduler=step"),
    "trainer.precision": (*_one_of("fp32", "bf16"), "trainer.precision=fp32"),
    "trainer.progress": (*_one_of("auto", "always", "never"), "trainer.progress=never"),
    "grad.space": (*_one_of(None, "params", "representation", "last_shared_layer"), "grad.space=params"),
    "grad.method": (*_one_of("loop", "vmap", "auto"), "grad.method=auto"),
    "grad.chunk_size": (lambda v: v is None or (_integer(v) and v >= 1), "null or an integer >= 1", "grad.chunk_size=4"),
    "grad.vmap_max_bytes": (lambda v: v is None or (_integer(v) and v >= 1), "null or an integer >= 1 (bytes)",
                            "grad.vmap_max_bytes=2147483648"),
    "dataset.val_size": (lambda v: _integer(v) and v >= 0, "an integer >= 0", "dataset.val_size=6000"),
    "diagnostics.every": (lambda v: v is None or (_integer(v) and v >= 0), "null or 0 (off) or a number of steps >= 1",
                          "diagnostics.every=50"),
}


def check_values(cfg: DictConfig, task_names: list[str] | None = None) -> None:
    """Raise ValueError naming the key, the value, what is allowed and an example for the first
    out-of-range value of the composed config (``task_names``: the dataset's tasks, for the keys
    that name them)."""
    for key, (accepts, allowed, example) in VALUE_RULES.items():
        if OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
            continue
        value = OmegaConf.select(cfg, key)
        if not accepts(value):
            raise ValueError(f"{key}={value!r} is out of range: {allowed}, e.g. {example}")
    dataset = cfg.get("dataset") or {}
    tasks = dataset.get("tasks") if "tasks" in dataset else None
    if tasks is not None:
        if not isinstance(tasks, (list, ListConfig)) or len(tasks) == 0:
            name = tasks if isinstance(tasks, str) else (task_names or ["task"])[0]
            raise ValueError(f"dataset.tasks={tasks!r} must be a non-empty list of task names, e.g. "
                             f"dataset.tasks=[{name}] (a single-task baseline), or null for every task")
    if "label_fraction" in dataset:
        _check_label_fraction(dataset.label_fraction, task_names)


def _check_label_fraction(value, task_names) -> None:
    example = f"dataset.label_fraction=0.1 or dataset.label_fraction={{{task_names[0]}:0.1}}" if task_names else \
        "dataset.label_fraction=0.1"
    fractions = OmegaConf.to_container(value) if isinstance(value, DictConfig) else value
    items = fractions.items() if isinstance(fractions, dict) else [(None, fractions)]
    for task, fraction in items:
        if task is not None and task_names is not None and task not in task_names:
            raise ValueError(f"dataset.label_fraction names unknown task {task!r}; the tasks are "
                             f"{', '.join(task_names)}, e.g. {example}")
        if not (_number(fraction) and 0 < fraction <= 1):
            where = f"dataset.label_fraction.{task}" if task is not None else "dataset.label_fraction"
            raise ValueError(f"{where}={fraction!r} is out of range: a fraction in (0, 1], e.g. {example}")


def check_new_keys(reference: DictConfig, overrides: Iterable[str]) -> None:
    """``+group.key=value`` may not add a key the group does not have (a typo such as
    ``+trainer.epoch=1`` would otherwise run with the default and split the results table)."""
    import difflib

    for override in overrides:
        if not override.startswith("+") or "=" not in override:
            continue
        key = override.lstrip("+").split("=", 1)[0]
        if "." not in key or key.startswith("hydra."):
            continue  # a config group appended (+experiment=NAME)
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(reference, parent, default=None)
        if not isinstance(node, DictConfig) or leaf in node:
            continue
        close = difflib.get_close_matches(leaf, [str(k) for k in node.keys()], n=1)
        hint = f"did you mean {parent}.{close[0]}? " if close else ""
        raise ValueError(f"{key} is not a key of {parent}: {hint}its keys are {', '.join(map(str, node.keys()))} "
                         f"(`mtl-bench run --cfg job` prints the whole config)")
