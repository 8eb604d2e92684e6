"""The building blocks of the config schemas: a key with its type, default, range and meaning.

Every key of a schema is a dataclass field made by :func:`setting`; its type is the field's
annotation (OmegaConf checks it while Hydra composes the config), its default the field's default,
and its range (``allowed``, checked by ``check``) and meaning (``help``) travel in the field's
metadata, so one line of a schema says everything about a key (docs/configuration.md).
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, ClassVar


def setting(default: Any, allowed: str, check: Callable[[Any], bool] | None = None, help: str = "",
            example: Any = dataclasses.MISSING) -> Any:
    """A schema key: ``default``; ``allowed`` says in words what ``check`` accepts; ``help`` is the
    key's meaning (``mtl-bench run --help``); ``example`` a value that passes (default: ``default``,
    or a function of the refused value)."""
    kwargs = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    example = default if example is dataclasses.MISSING else example
    return dataclasses.field(**kwargs, metadata={"allowed": allowed, "check": check, "help": help,
                                                 "example": example})


def text(value: Any) -> str:
    """A value as it is written on the command line (``null``, ``true``, ``[a,b]``, ``{a:0.1}``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{text(v)}" for k, v in value.items()) + "}"
    return str(value)


def example_of(field: dataclasses.Field, key: str, refused: Any = None) -> str:
    example = field.metadata.get("example")
    value = example(refused) if callable(example) else example
    return value if isinstance(value, str) and value.startswith(f"{key}=") else f"{key}={text(value)}"


@dataclasses.dataclass
class Schema:
    """A config group's node. ``GROUP``: the node's place in the composed config (``trainer``,
    ``protocol.selection``). Range checks run when OmegaConf builds the object
    (``OmegaConf.to_object``) and on direct construction."""

    GROUP: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check = field.metadata.get("check")
            value = getattr(self, field.name)
            if check is not None and not check(value):
                key = f"{self.GROUP}.{field.name}" if self.GROUP else field.name
                numeric = field.type in (int, float, "int", "float")
                problem = "has the wrong type" if numeric and not number(value) else "is out of range"
                raise ValueError(f"{key}={value!r} {problem}: {field.metadata['allowed']}, "
                                 f"e.g. {example_of(field, key, value)}")

    def check_task_names(self, task_names: list[str]) -> None:
        """Checks that need the dataset's task names (a per-task mapping); none by default."""

    @classmethod
    def field(cls, name: str) -> dataclasses.Field | None:
        return next((f for f in dataclasses.fields(cls) if f.name == name), None)


def unknown_key(schema: type, key: str) -> str:
    """The line for a key the schema does not have, with the closest one."""
    return unknown_name(key, [f.name for f in dataclasses.fields(schema)],
                        "(`mtl-bench run --cfg job` prints the whole config)")


def unknown_name(key: str, names: list[str], tail: str) -> str:
    """``KEY is not a key of GROUP: did you mean GROUP.NAME? its keys are ...`` and ``tail``."""
    parent, _, leaf = key.rpartition(".")
    close = difflib.get_close_matches(leaf, names, n=1)
    hint = f"did you mean {parent}.{close[0]}? " if close else ""
    return f"{key} is not a key of {parent}: {hint}its keys are {', '.join(names) or 'none'} {tail}"


def wrong_type(schema: type, key: str, value: str) -> str:
    field = schema.field(key.rpartition(".")[2])
    if field is None or "allowed" not in field.metadata:
        return f"{key}={value} has the wrong type for {key}"
    return (f"{key}={value} has the wrong type: {field.metadata['allowed']}, "
            f"e.g. {example_of(field, key, value)}")


# ------------------------------------------------------------------------------- checks
def integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def at_least(low):
    return lambda v: number(v) and v >= low


def positive_integer(v) -> bool:
    return integer(v) and v >= 1


def optional(check):
    return lambda v: v is None or check(v)


def one_of(*choices) -> tuple[str, Callable[[Any], bool]]:
    """``(allowed, check)`` of a key that takes one of ``choices``: ``setting(default, *one_of(...))``."""
    return "one of " + ", ".join(text(c) for c in choices), (lambda v: v in choices)


def task_list(v) -> bool:
    return v is None or (isinstance(v, (list, tuple)) and len(v) > 0)


TASKS_ALLOWED = "a non-empty list of task names (a subset for single-task baselines), or null for every task"
