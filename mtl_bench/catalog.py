"""What the config tree offers: every config of every group, variants included (``mtl-bench list``)."""
from __future__ import annotations

from pathlib import Path

import yaml

GROUPS = {"strategy": "strategies", "dataset": "datasets", "model": "models", "trainer": "trainers",
          "protocol": "protocols", "experiment": "experiments", "logger": "loggers", "hydra/launcher": "launchers"}


def describe(path: Path) -> str:
    """A config's one-line description: its first comment line (an experiment's ``paper``)."""
    text = path.read_text()
    node = yaml.safe_load(text) or {}
    if isinstance(node.get("experiment"), dict) and node["experiment"].get("paper"):
        return str(node["experiment"]["paper"])
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#") and "@package" not in line:
            return line.lstrip("# ").rstrip()
    return ""


def variant_of(path: Path) -> tuple[str, dict] | None:
    """``(base config, the keys it sets)`` of a variant (a config whose defaults list names a sibling)."""
    node = yaml.safe_load(path.read_text()) or {}
    bases = [d for d in node.get("defaults", []) if isinstance(d, str) and d != "_self_" and not d.startswith("/")]
    if not bases:
        return None
    return bases[0], {k: v for k, v in node.items() if k != "defaults"}


def group_lines(config_dir: Path, group: str) -> list[str]:
    paths = sorted((config_dir / group).glob("*.yaml"))
    width = max((len(p.stem) for p in paths), default=0)
    lines = [f"{GROUPS[group]} ({group.split('/')[-1] if group != 'hydra/launcher' else 'hydra/launcher'}=NAME):"]
    for path in paths:
        lines.append(f"  {path.stem:<{width}}  {describe(path)}")
        variant = variant_of(path)
        if variant:
            base, keys = variant
            lines.append(f"  {'':<{width}}  variant of {base}: " + " ".join(f"{k}={v}" for k, v in keys.items()))
    return lines


def strategy_lines(config_dir: Path) -> list[str]:
    """Each strategy config: level, default space, paper and hyper-parameters; variants and what they set."""
    from .strategies import hyperparameters, level_of, strategy_class

    lines = ["strategies (strategy=NAME):"]
    for path in sorted((config_dir / "strategy").glob("*.yaml")):
        variant = variant_of(path)
        if variant:
            base, keys = variant
            lines.append(f"  {path.stem:<12} variant of {base}: " + " ".join(f"{k}={v}" for k, v in keys.items()))
            lines.append(f"  {'':<12} {describe(path)}")
            continue
        node = yaml.safe_load(path.read_text())
        cls = strategy_class(node.get("_target_") or node["name"])
        space = f" space={cls.default_space}" if cls.level == "gradient" else ""
        hp = ", ".join(f"{k}={v!r}" for k, v in hyperparameters(cls).items()) or "-"
        lines.append(f"  {path.stem:<12} {level_of(cls):<10}{space}  {cls.paper}")
        lines.append(f"  {'':<12} hyper-parameters: {hp}")
    return lines


def listing(config_dir: Path, what: str = "all") -> str:
    """The text of ``mtl-bench list WHAT`` (WHAT: all or one of :data:`GROUPS`' plural names)."""
    plural_to_group = {v: k for k, v in GROUPS.items()}
    if what != "all" and what not in plural_to_group:
        raise ValueError(f"mtl-bench list {what}: unknown group; choose all, {', '.join(GROUPS.values())}")
    groups = list(GROUPS) if what == "all" else [plural_to_group[what]]
    blocks = [strategy_lines(config_dir) if g == "strategy" else group_lines(config_dir, g) for g in groups]
    return "\n".join("\n".join(b) for b in blocks)


def dataset_choices(config_dir: Path, dataset: str, search: list[Path] = ()) -> dict[str, str]:
    """The groups a dataset config chooses (``override /model@_global_.model: multilenet``)."""
    path = find_config([config_dir, *search], "dataset", dataset)
    node = yaml.safe_load(path.read_text()) if path is not None else {}
    out = {}
    for item in (node or {}).get("defaults", []):
        if isinstance(item, dict):
            for key, value in item.items():
                group = key.replace("override", "").strip().lstrip("/").split("@")[0]
                out[group] = str(value)
    return out


def key_comments(path: Path, prefix: str) -> list[tuple[str, str, str]]:
    """``(key, default, meaning)`` of each ``key: value  # meaning`` line of a config file (nested
    keys joined with dots under ``prefix``)."""
    out, stack = [], []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith(("#", "-")) or ":" not in line:
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        if key == "defaults" or key.startswith("_"):
            continue
        stack = [(i, k) for i, k in stack if i < indent]
        meaning = raw.split(" #", 1)[1].strip() if " #" in raw else ""
        if value.strip() == "" and not meaning:
            stack.append((indent, key))
            continue
        full = ".".join([prefix, *[k for _, k in stack], key]) if prefix else ".".join([*[k for _, k in stack], key])
        out.append((full, value.strip(), meaning))
    return out


def group_meanings(folder: Path, prefix: str) -> dict[str, str]:
    """Each key's meaning as any config of the group states it (a variant inherits its base's)."""
    meanings: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        for key, _, meaning in key_comments(path, prefix):
            if meaning:
                meanings.setdefault(key, meaning)
    return meanings


def schema_of(path: Path):
    """The schema a config file names (``- /schema/NAME@_here_``), its base's for a variant; or None."""
    from .schemas import SCHEMAS

    node = yaml.safe_load(path.read_text()) or {}
    for entry in node.get("defaults", []):
        if isinstance(entry, str) and entry.startswith("/schema/"):
            return SCHEMAS.get(entry[len("/schema/"):].split("@")[0])
    base = variant_of(path)
    return schema_of(path.parent / f"{base[0]}.yaml") if base and (path.parent / f"{base[0]}.yaml").exists() else None


def schema_keys(schema, prefix: str) -> list[tuple[str, str, str]]:
    """``(key, default, meaning)`` of every key of a schema (nested schemas flattened)."""
    import dataclasses

    from .schemas.base import text

    out = []
    for f in dataclasses.fields(schema):
        key = f"{prefix}.{f.name}"
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            out += schema_keys(f.default_factory, key)
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append((key, text(default), f.metadata.get("help", "")))
    return out


def _file_chain(path: Path) -> list[Path]:
    base = variant_of(path)
    parent = path.parent / f"{base[0]}.yaml" if base else None
    return (_file_chain(parent) if parent is not None and parent.exists() else []) + [path]


def section_entries(path: Path, prefix: str) -> list[tuple[str, str, str]]:
    """What ``mtl-bench run --help`` lists for one chosen config: every key of its schema with the
    value the config (or its base) gives it, else the schema's default, and its meaning (the
    file's comment, else the schema's); a config without a schema: the keys its file states."""
    meanings = group_meanings(path.parent, prefix) if prefix else {}
    stated = {}
    for file in _file_chain(path):
        stated.update({k: (v, m) for k, v, m in key_comments(file, prefix)})
    schema = schema_of(path) if prefix else None
    if schema is None:
        return [(k, v, m or meanings.get(k, "")) for k, v, m in key_comments(path, prefix)]
    entries = []
    for key, default, meaning in schema_keys(schema, prefix):
        value, comment = stated.get(key, (default, ""))
        entries.append((key, value, comment or meaning or meanings.get(key, "")))
    return entries


def find_config(dirs: list[Path], group: str, name: str) -> Path | None:
    """The file of config ``group/name`` in the first of ``dirs`` that has it."""
    return next((d / group / f"{name}.yaml" for d in dirs if (d / group / f"{name}.yaml").is_file()), None)


def key_help(config_dir: Path, choices: dict[str, str], search: list[Path] = ()) -> str:
    """What each key of the composed groups means (``mtl-bench run --help``): the top-level
    config's keys, then every key of each chosen group's config (``choices``), from the group's
    schema (mtl_bench/schemas) and the config files' comments. ``search``: the folders of
    ``hydra.searchpath`` (a user's own configs: the keys their files state, with their comments)."""
    sections = [("config", config_dir / "config.yaml", "")]
    for group in ("dataset", "model", "strategy", "trainer", "protocol"):
        path = find_config([config_dir, *search], group, choices[group])
        if path is not None:
            sections.append((f"{group}={choices[group]}" + ("" if path.is_relative_to(config_dir) else f" ({path})"),
                             path, group))
    lines = ["== What each key means (from the config schemas and files) =="]
    for title, path, prefix in sections:
        entries = [e for e in section_entries(path, prefix) if not e[0].startswith("hydra.")]
        if not entries:
            continue
        lines.append(f"\n{title}:")
        width = max(len(k) for k, _, _ in entries)
        lines += [f"  {k:<{width}}  {v:<12} {m}".rstrip() for k, v, m in entries]
    return "\n".join(lines)
