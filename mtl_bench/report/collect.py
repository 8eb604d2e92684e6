"""Collect run directories into one tidy results table (README.md, "Tables, plots and paper reproductions").

One row per (run, epoch, step, split, task, metric) with the run's identity, status, protocol,
cost and flattened config (``cfg.*`` columns, values as text) repeated on every row, so scores,
tables and plots are pure functions of this one frame. Runs are found anywhere below the given
directories (a single run, a Hydra multirun sweep, a tree of sweeps) by their ``summary.json``
(or a ``metrics.jsonl`` without one). Only ``completed`` runs whose files agree enter the table
(:mod:`mtl_bench.report.integrity`); the others (running, failed, diverged, interrupted, damaged
files) are listed in :attr:`Collection.excluded` with their status and reason, never mixed in.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..protocol import SAME_EXPERIMENT, is_key_in
from ..train.run_dir import METRICS_FILE, SUMMARY_FILE
from .directions import higher_is_better
from .integrity import DAMAGED, RunFiles, read_run

RECORD_COLUMNS = ["epoch", "step", "split", "task", "metric", "value"]
RUN_COLUMNS = ["run", "status", "dataset", "model", "strategy", "strategy_config", "seed", "tasks", "n_tasks", "grad_space",
               "epochs", "epochs_completed", "seconds_per_epoch", "cpu_seconds_per_epoch", "epoch_statistic", "seconds_per_step",
               "peak_memory_mb",
               "backward_passes_per_step", "solver_calls", "solver_failures",
               "sel_rule", "sel_split", "sel_metric", "sel_k", "sel_average"]
# config keys that never tell two runs' settings apart (the seed, the preset's name, and the keys
# of mtl_bench.protocol.SAME_EXPERIMENT)
IGNORED_CONFIG = ("hydra", "seed", "experiment", *SAME_EXPERIMENT)


@dataclass
class Collection:
    """``results``: the tidy table of completed runs; ``runs``: one row per run found (any status)."""

    results: pd.DataFrame
    runs: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def excluded(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] != "completed"]

    def describe_excluded(self) -> str:
        if self.excluded.empty:
            return ""
        lines = [f"{len(self.excluded)} run(s) left out of the table (not completed, or damaged files):"]
        for _, row in self.excluded.iterrows():
            reason = f": {row['reason']}" if isinstance(row.get("reason"), str) and row["reason"] else ""
            lines.append(f"  {row['status']:<10} {row['run']}{reason}")
        return "\n".join(lines)


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every directory below ``paths`` holding a summary.json, a metrics.jsonl or a Hydra
    ``.hydra/config.yaml`` (a run that failed before training wrote anything), sorted."""
    found: set[Path] = set()
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        for name in (SUMMARY_FILE, METRICS_FILE, ".hydra/config.yaml"):
            depth = name.count("/") + 1
            if (path / name).exists():
                found.add(path)
            found.update(p.parents[depth - 1] for p in path.rglob(name))
    return sorted(found)


def flatten(node, prefix: str = "") -> dict[str, str]:
    """Dotted keys of a nested config -> text values (JSON for lists and null)."""
    out: dict[str, str] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and value:
                out.update(flatten(value, name))
            else:
                out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


def status_and_reason(run: RunFiles) -> tuple[str, str]:
    """A run's status for the report (``damaged`` when its files disagree) and why it is left out."""
    summary = run.summary or {}
    if run.problem:
        return DAMAGED, run.problem
    status = summary.get("status", "no summary") if run.summary is not None else "no summary"
    if not isinstance(status, str):
        return DAMAGED, f"{Path(run.run_dir) / SUMMARY_FILE} has no valid status ({status!r})"
    epochs = f"{summary.get('epochs_completed', 0)}/{summary.get('epochs', '?')} epochs"
    if status == "running":
        return status, f"{epochs} (killed or still running)"
    if status == "interrupted":
        return status, f"{epochs}, stopped by {summary.get('signal', 'a signal')}; start it again to resume"
    if status == "diverged":
        tasks = ", ".join(summary.get("diverged_tasks") or []) or "a task"
        return status, f"{tasks} diverged at step {summary.get('diverged_at_step', '?')}"
    if status == "no summary":
        return status, (f"{METRICS_FILE} without {SUMMARY_FILE}" if (Path(run.run_dir) / METRICS_FILE).exists()
                        else "config only: the run failed before training (see its log)")
    return status, str(summary.get("error") or "")


def config_choice(run_dir: Path, group: str) -> str | None:
    """The config a run chose for ``group`` (``uniform``, ``mgda_nash``: a variant's own name), as
    Hydra recorded it in ``.hydra/hydra.yaml``; None when the file is missing or unreadable."""
    import yaml

    path = Path(run_dir) / ".hydra" / "hydra.yaml"
    try:
        node = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        choice = node["hydra"]["runtime"]["choices"].get(group)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    return str(choice) if choice else None


def _epoch_times(cost: dict) -> dict:
    """A run's time per epoch: the median epoch after the first where the run records it (``*_warm``:
    the first epoch's one-off costs left out), else the mean over all its epochs (older runs)."""
    warm = "seconds_per_epoch_warm" in cost
    kind = "warm" if warm else "mean"
    return {"seconds_per_epoch": cost.get(f"seconds_per_epoch_{kind}"),
            "cpu_seconds_per_epoch": cost.get(f"cpu_seconds_per_epoch_{kind}"),
            "epoch_statistic": "median after the first" if warm else "mean"}


def _run_row(run: RunFiles) -> dict:
    run_dir, config = run.run_dir, run.config
    summary = run.summary or {}
    ident = summary.get("identity") or {}
    cost = summary.get("cost") or {}
    sel = (config.get("protocol") or {}).get("selection") or summary.get("selected") or {}
    tasks = ident.get("tasks") or []
    status, reason = status_and_reason(run)
    row = {
        "run": str(run_dir), "status": status, "reason": reason,
        "dataset": ident.get("dataset", (config.get("dataset") or {}).get("name")),
        "model": ident.get("model"), "strategy": ident.get("strategy", (config.get("strategy") or {}).get("name")),
        "strategy_config": config_choice(run_dir, "strategy"),
        "seed": ident.get("seed", config.get("seed")), "tasks": ",".join(tasks), "n_tasks": len(tasks),
        "grad_space": ident.get("grad_space"), "epochs": summary.get("epochs"),
        "epochs_completed": summary.get("epochs_completed"),
        **_epoch_times(cost), "seconds_per_step": cost.get("seconds_per_step_median"),
        "peak_memory_mb": cost.get("peak_memory_mb"),
        "backward_passes_per_step": cost.get("encoder_backward_passes_per_step"),
        "solver_calls": cost.get("solver_calls"), "solver_failures": cost.get("solver_failures"),
        "sel_rule": sel.get("rule", "last"), "sel_split": sel.get("split", "val"), "sel_metric": sel.get("metric"),
        "sel_k": int(sel.get("k", 10) or 10), "sel_average": sel.get("average", "metric"),
    }
    row.update({f"cfg.{k}": v for k, v in flatten(config).items()
                if not is_key_in(k, IGNORED_CONFIG)})
    return row


def _records(records: list[dict], summary: dict) -> pd.DataFrame:
    """The run's records (their columns and ``higher_is_better``); the run's own columns are joined
    to every run's records at once in :func:`collect` (one take per column for all runs: building
    a hundred config columns per run is what made collecting slow)."""
    columns = {name: [record[name] for record in records] for name in RECORD_COLUMNS}
    columns["value"] = pd.to_numeric(pd.Series(columns["value"], dtype=object), errors="coerce")
    directions = summary.get("directions", {})
    hib = {}
    for task, metric in dict.fromkeys(zip(columns["task"], columns["metric"])):
        hib[(task, metric)] = higher_is_better(metric, directions.get(task, {}).get(metric))
    columns["higher_is_better"] = [hib[(t, m)] for t, m in zip(columns["task"], columns["metric"])]
    return pd.DataFrame(columns, index=pd.RangeIndex(len(records)))


def _with_run_columns(frames: list[pd.DataFrame], rows: list[dict]) -> list[pd.DataFrame]:
    """The records of every run (``frames[i]`` of ``rows[i]``) with their run's columns, as one frame."""
    if not frames:
        return []
    # one frame per run, then one concat: a column's type is inferred per run as the records'
    # frames were built before (an integer setting that one run leaves None stays an object column)
    runs = pd.concat([pd.DataFrame([{k: v for k, v in row.items() if k not in RECORD_COLUMNS and k != "reason"}])
                      for row in rows], ignore_index=True)
    records = pd.concat(frames, ignore_index=True)
    which = np.repeat(np.arange(len(frames)), [len(frame) for frame in frames])
    return [pd.concat([runs.take(which).reset_index(drop=True), records], axis=1)]


def collect(paths: Sequence[str | Path], statuses: Sequence[str] = ("completed",)) -> Collection:
    """Collect every run below ``paths``; runs whose status is not in ``statuses`` are excluded.

    A path may also be a table written by ``mtl-bench collect`` (``.parquet`` or ``.csv``).
    """
    frames, rows, tables = [], [], []
    kept = []  # the rows of the runs whose records are in frames
    dirs = []
    for path in paths:
        if Path(path).is_file() and Path(path).suffix in (".parquet", ".csv"):
            tables.append(read_table(path))
        else:
            dirs.append(path)
    for run_dir in find_run_dirs(dirs):
        run = read_run(run_dir, statuses)
        row = _run_row(run)
        rows.append(row)
        if row["status"] in statuses:
            if not run.records:
                row["status"], row["reason"] = "empty", "no metrics recorded"
                continue
            frames.append(_records(run.records, run.summary))
            kept.append(row)
    # one concat of what was found: an empty frame in it would make every column of a table read
    # back (epoch, value) an object column, on which plots fail
    parts = _with_run_columns(frames, kept) + tables
    results = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RUN_COLUMNS + RECORD_COLUMNS)
    run_parts = ([pd.DataFrame(rows)] if rows else []) + [
        table.drop_duplicates("run")[[c for c in table.columns if c not in RECORD_COLUMNS and c != "higher_is_better"]]
        for table in tables]
    runs = pd.concat(run_parts, ignore_index=True) if run_parts else pd.DataFrame(columns=RUN_COLUMNS + ["reason"])
    if "reason" not in runs:
        runs["reason"] = ""
    ordered = RUN_COLUMNS + RECORD_COLUMNS + ["higher_is_better"]
    results = results[[c for c in ordered if c in results] + sorted(c for c in results if c not in ordered)]
    return Collection(results=results.reset_index(drop=True), runs=runs.reset_index(drop=True))


def table_path(path: str | Path) -> Path:
    """``path`` of a tidy table to write: ``.parquet`` or ``.csv``, the two ``table`` and ``plot`` read back."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        raise ValueError(f"--out {path}: name a .parquet or a .csv file (the suffix picks the format)")
    return path


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the tidy table as Parquet (``.parquet``) or CSV (``.csv``)."""
    path = table_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    cfg = [c for c in frame.columns if c.startswith("cfg.")]
    frame[cfg] = frame[cfg].astype(object).where(frame[cfg].notna(), None)
    return frame
