"""Paper presets (configs/experiment/) and their published numbers (results/published/*.csv).

A preset is a Hydra config of the ``experiment`` group (``mtl-bench run -m +experiment=NAME``)
whose ``experiment`` node names its paper, its published table, its grids and its table
settings. :func:`reproduce` runs every grid of a preset as one Hydra multirun each (through
whatever launcher the overrides configure), then prints the regenerated table beside the
published one and writes both into the sweep directory.
``experiment.table.tune`` (e.g. ``[trainer.lr]``) lists config keys that the table chooses per
method on validation, as the papers do (:func:`mtl_bench.report.selection.tune`).

Published CSVs are wide: ``method`` (our strategy name, ``stl`` for single-task), ``label`` (the
paper's name), one ``task/metric`` column per metric in the paper's units (percent for
fractions), optional ``printed_mr`` / ``printed_delta_m`` columns as printed.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import math
import shlex
import subprocess
import sys
from pathlib import Path

from ..paths import config_dir
from ..protocol import SAME_EXPERIMENT, is_key_in
from .baselines import Baselines
from .pipeline import make_table
from .published import load_published, printed_scores, published_dir  # noqa: F401  (re-exported)
from .tables import FEW_SEEDS_NOTE, ScoreTable, score_table

TOLERANCE = 0.01  # printed Delta_m agrees with the recomputed one within this (two printed decimals)


def experiment_dir() -> Path:
    return config_dir() / "experiment"


def available_presets() -> list[str]:
    return sorted(p.stem for p in experiment_dir().glob("*.yaml"))


def load_preset(name: str) -> dict:
    """The ``experiment`` node of a preset plus its main grid (``hydra.sweeper.params``)."""
    from omegaconf import OmegaConf

    path = experiment_dir() / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(available_presets())}")
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    meta = dict(node.get("experiment") or {})
    meta["main_grid"] = ((node.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    meta.setdefault("grids", {"main": {}})
    meta.setdefault("table", {})
    return meta


def published_table(name: str, delta_average: str = "metric", columns=None) -> ScoreTable:
    """The published numbers as a :class:`ScoreTable`: Delta_m% recomputed against the paper's
    own ``stl`` row (Maninis et al. 2019), MR among the paper's methods, printed Delta_m beside it
    with rows that disagree by more than :data:`TOLERANCE` flagged ``inconsistent``."""
    long = load_published(name)
    selected = long.assign(run=long["method"], seed=0, split="test", panel=f"published: {name}",
                           is_baseline=long["method"] == "stl", strategy=long["method"],
                           selection="as published", seconds_per_epoch=math.nan)
    baselines = Baselines.from_published(long) if (long["method"] == "stl").any() else None
    table = score_table(selected, baselines, split="test", columns=columns, delta_average=delta_average,
                        reference=None)
    printed = printed_scores(name).set_index("method")
    frame = table.frame
    if printed["printed_delta_m"].notna().any():
        frame["printed_delta_m"] = frame["method"].map(printed["printed_delta_m"])
        frame["inconsistent"] = (frame["printed_delta_m"] - frame["delta_m"]).abs() > TOLERANCE
        bad = frame[frame["inconsistent"]]
        for _, row in bad.iterrows():
            table.notes.append(f"{row['method']}: printed Δm {row['printed_delta_m']:.2f} but the row's own "
                               f"numbers give {row['delta_m']:.2f} (flagged (!))")
    frame["n"] = math.nan
    table.notes = [note for note in table.notes if note != FEW_SEEDS_NOTE]  # published rows have no seeds
    table.caption = (f"Published numbers ({name}); Δm% recomputed from the rows against the paper's "
                     f"single-task row, averaged per {delta_average}; lower is better. MR among the rows shown.")
    return table


def align_with_published(table: ScoreTable, name: str) -> ScoreTable:
    """Order ``table``'s rows as the published table ``name`` lists its methods (others last) and
    show the paper's name of each row in a ``paper`` column."""
    printed = printed_scores(name)
    order = {method: i for i, method in enumerate(printed["method"])}
    frame = table.frame.assign(paper=table.frame["method"].map(dict(zip(printed["method"], printed["label"]))),
                               _order=table.frame["method"].map(order).fillna(len(order)))
    table.frame = frame.sort_values(["panel", "_order"], kind="stable").drop(columns="_order").reset_index(drop=True)
    table.label_column = "paper"
    return table


# ------------------------------------------------------------------------------ reproduce
# overrides that change where or how fast runs go, never what they compute
PROTOCOL_NEUTRAL = ("hydra", *SAME_EXPERIMENT)


def protocol_departures(overrides: list[str]) -> list[str]:
    """The overrides that change what a preset computes (epochs, seeds, lr grid, data sizes ...)."""
    keys = [(o, o.lstrip("+~").split("=", 1)[0]) for o in overrides]
    return [o for o, key in keys if not is_key_in(key, PROTOCOL_NEUTRAL)]


def departure_banner(name: str, departures: list[str]) -> str:
    if not departures:
        return ""
    return (f"!! NOT the paper's protocol: {', '.join(departures)} override(s) configs/experiment/{name}.yaml; "
            f"the regenerated numbers are not comparable with the published ones.")


def _grid_args(grid: dict) -> list[str]:
    out = []
    for key, value in grid.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        out.append(f"{key}={value}")
    return out


def grid_commands(name: str, sweep_dir: Path, overrides: list[str]) -> list[tuple[str, list[str]]]:
    """``(grid name, argv)`` of each Hydra multirun of a preset; user overrides come last and win."""
    meta = load_preset(name)
    out = []
    for grid, params in meta["grids"].items():
        argv = [sys.executable, "-m", "mtl_bench", "run", "-m", f"+experiment={name}",
                f"hydra.sweep.dir={sweep_dir / grid}", *_grid_args(params or {}), *overrides]
        out.append((grid, argv))
    return out


class GridRefused(Exception):
    """A grid of a preset was refused before any of its runs started (its error printed by it)."""


def reproduce(name: str, overrides: list[str] | None = None, out=print) -> int:
    """Run every grid of preset ``name``, then print and write the regenerated and published tables.

    ``overrides`` are appended to every grid (``trainer.epochs=1``, ``hydra/launcher=joblib``,
    ``hydra.sweep.dir=DIR`` picks the output directory). Returns the number of failed grids; stops
    at a grid refused before any of its runs started (exit status 2), whose error the others
    share, by raising :class:`GridRefused`.
    """
    overrides = list(overrides or [])
    meta = load_preset(name)
    sweep_dir = None
    for item in overrides:
        if item.startswith("hydra.sweep.dir="):
            sweep_dir = Path(item.split("=", 1)[1])
    overrides = [o for o in overrides if not o.startswith("hydra.sweep.dir=")]
    if sweep_dir is None:
        sweep_dir = Path("reproduce") / name / _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    sweep_dir = sweep_dir.resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    banner = departure_banner(name, protocol_departures(overrides))
    if banner:
        out(banner)
    failures = 0
    commands = []
    for grid, argv in grid_commands(name, sweep_dir, overrides):
        shown = "mtl-bench " + " ".join(shlex.quote(a) for a in argv[3:])
        commands.append(shown)
        out(f"== {name}: grid {grid}: {shown}")
        rc = subprocess.call(argv)
        if rc == 2:  # refused before any run started (a bad override, missing data): so would the others be
            out(f"!! grid {grid} was refused before any run started (the error above); nothing to tabulate")
            with contextlib.suppress(OSError):  # leave no empty output folder behind
                sweep_dir.rmdir()
            raise GridRefused(grid)
        if rc != 0:
            failures += 1
            out(f"!! grid {grid} exited with status {rc}; tabulating the runs that completed")
    (sweep_dir / "commands.txt").write_text("\n".join(commands) + "\n")
    settings = dict(meta["table"])
    table, sel = make_table([sweep_dir], split=settings.get("split", "test"), columns=settings.get("columns"),
                            metrics=settings.get("metrics"), delta_average=settings.get("delta_average", "metric"),
                            reference=settings.get("reference"), tune=settings.get("tune") or (),
                            tune_metric=settings.get("tune_metric"))
    if meta.get("published"):
        align_with_published(table, meta["published"])
    excluded = sel.collection.describe_excluded()
    regenerated = f"## Regenerated: {meta.get('paper', name)}\n\n" + (f"{banner}\n\n" if banner else "")
    regenerated += table.to_markdown()
    if excluded:
        regenerated += f"\n{excluded}\n"
    out(regenerated)
    (sweep_dir / "table.md").write_text(regenerated)
    (sweep_dir / "table.csv").write_text(table.to_csv())
    (sweep_dir / "table.tex").write_text(table.to_latex())
    if meta.get("published"):
        published = align_with_published(published_table(meta["published"], settings.get("delta_average", "metric"),
                                                          columns=settings.get("columns")), meta["published"])
        text = f"## Published: {meta.get('paper', name)}\n\n{published.to_markdown()}"
        if meta.get("published_note"):
            text += f"\n\nNote: {meta['published_note']}\n"
        (sweep_dir / "published.md").write_text(text)
    else:
        text = (f"## Published: none\n\n{meta.get('paper', name)}: "
                f"{meta.get('published_note', 'no published numbers for this preset')}\n")
    out(text)
    out(f"tables written to {sweep_dir}")
    return failures
