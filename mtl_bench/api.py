"""The Python face of mtl-bench: one run from overrides, and a folder of runs as a DataFrame.

    import mtl_bench
    summary = mtl_bench.run("strategy=mgda", "seed=1", run_dir="runs/mgda-1")
    frame = mtl_bench.load_runs(["runs/"])

``run`` goes through exactly the path of ``mtl-bench run`` (Hydra composition onto the config
schemas and their checks, the run directory contract); ``load_runs`` is ``mtl-bench collect`` with typed config columns.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Sequence

import pandas as pd


class RunError(RuntimeError):
    """A run that could not start or did not complete (bad value, missing data, solver error)."""


def run(*overrides: str, run_dir: str | Path | None = None) -> dict:
    """Train one run configured by Hydra ``overrides`` (``"strategy=mgda"``, ``"trainer.epochs=3"``,
    ``"hydra.searchpath=[file://conf]"`` for a config folder of your own) into ``run_dir``
    (default ``runs/api/<time>``); returns its summary.json. A completed run in ``run_dir`` is
    returned as it is; an unfinished one resumes. Raises :class:`RunError` with the reason when the
    run is refused or fails."""
    from . import cli

    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / "api" / _dt.datetime.now().strftime(
        "%Y-%m-%d_%H-%M-%S-%f")
    argv = [o for o in overrides if not o.startswith("hydra.run.dir=")] + [f"hydra.run.dir={run_dir}"]
    cli._USER_ERRORS.clear()
    try:
        cli.run(argv)
    except SystemExit as err:  # a refused run, or Hydra's own refusal (an unknown key or config group)
        reason = cli._USER_ERRORS[-1] if cli._USER_ERRORS else f"exit status {err.code}; see the message above"
        raise RunError(f"mtl-bench run {' '.join(overrides)}: {reason}") from None
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        raise RunError(f"the run wrote no summary.json in {run_dir}")
    return json.loads(summary_path.read_text())


def load_runs(dirs: Sequence[str | Path] | str | Path) -> pd.DataFrame:
    """Every completed run below ``dirs`` as one tidy frame (one row per run, epoch, step, split,
    task and metric; see README "Tables"): ``mtl-bench collect`` with its ``cfg.*`` columns typed
    (numbers are numbers, booleans booleans; lists and mappings stay text)."""
    from .report import collect

    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    return typed_config_columns(collect([str(d) for d in dirs]).results)


def typed_config_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``cfg.*`` columns whose every value is a number (or a boolean) converted to that type."""
    out = frame.copy()
    for column in [c for c in out.columns if c.startswith("cfg.")]:
        values = out[column]
        present = values.dropna().astype(str)
        if present.empty:
            continue
        if present.isin(["True", "False", "true", "false"]).all():
            out[column] = values.map(lambda v: None if pd.isna(v) else str(v).lower() == "true").astype("boolean")
            continue
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.notna().all():
            converted = pd.to_numeric(values.astype(object).where(values.notna()), errors="coerce")
            integral = (converted.dropna() == converted.dropna().round()).all() and not present.str.contains(r"[.eE]").any()
            out[column] = converted.astype("Int64") if integral else converted.astype(float)
    return out
