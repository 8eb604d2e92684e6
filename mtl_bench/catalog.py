"""What the config tree offers: every config of every group, variants included (``mtl-bench list``)."""
from __future__ import annotations

from pathlib import Path

import yaml

GROUPS = {"strategy": "strategies", "dataset": "datasets", "model": "models", "trainer": "trainers",
          "protocol": "protocols", "experiment": "experiments", "hydra/launcher": "launchers"}


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
    bases = [d for d in node.get("defaults", []) if isinstance(d, str) and d != "_self_"]
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
        raise ValueError(f"mtl-bench list: unknown {what!r}; choose all, {', '.join(GROUPS.values())}")
    groups = list(GROUPS) if what == "all" else [plural_to_group[what]]
    blocks = [strategy_lines(config_dir) if g == "strategy" else group_lines(config_dir, g) for g in groups]
    return "\n".join("\n".join(b) for b in blocks)
