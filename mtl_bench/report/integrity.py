"""Read one run folder for the report layer, trusting none of its files.

A run contributes numbers only when its files agree: ``summary.json`` parses, ``.hydra/config.yaml``
parses, every line of ``metrics.jsonl`` is a whole record, and (for a completed run) the history
holds every epoch the summary counts, with the summary's final metrics at its last epoch. Anything
else is a *damaged* run: :func:`read_run` returns it with a one-line ``problem`` naming the file
and what is wrong, so the caller can list it and go on.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..train.run_dir import METRICS_FILE, SUMMARY_FILE

CONFIG_FILE = ".hydra/config.yaml"
RECORD_KEYS = ("epoch", "step", "split", "task", "metric", "value")
DAMAGED = "damaged"


@dataclass
class RunFiles:
    """The parsed files of one run folder; ``problem`` is empty when they can be trusted."""

    run_dir: Path
    summary: dict | None = None
    config: dict = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    problem: str = ""


def load_summary(run_dir: Path) -> tuple[dict | None, str]:
    """``(summary or None, problem)``; a missing summary is not a problem here."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.exists():
        return None, ""
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"{path} is unreadable ({err}); the run's status and results are unknown"
    if not isinstance(summary, dict):
        return None, f"{path} holds a {type(summary).__name__}, not a JSON object"
    return summary, ""


def load_config(run_dir: Path) -> tuple[dict, str]:
    """``(config, problem)``: the run's composed Hydra config (``{}`` when missing)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        return {}, ""
    try:
        import yaml

        config = yaml.load(path.read_text(), Loader=config_loader())
    except Exception as err:  # yaml raises many types for a damaged file
        return {}, f"{path} is unreadable ({type(err).__name__}: {err})"
    if not isinstance(config, dict):
        return {}, f"{path} holds no config mapping"
    return config, ""


@functools.lru_cache(maxsize=1)
def config_loader():
    """OmegaConf's own YAML loader (a duplicate key is an error, ``1e-3`` is a float, a date stays
    text; interpolations are kept as text) on libyaml's parser when PyYAML has it: ten times
    faster, which a table over hundreds of runs feels. libyaml's parser comes first in the
    method order, OmegaConf's constructors and resolvers after it."""
    import yaml
    from omegaconf._utils import get_yaml_loader

    omegaconf_loader = get_yaml_loader()
    fast = getattr(yaml, "CSafeLoader", None)
    return type("ConfigLoader", (fast, omegaconf_loader), {}) if fast else omegaconf_loader


def load_records(run_dir: Path) -> tuple[list[dict], list[int]]:
    """``(records, numbers of malformed lines)`` of metrics.jsonl (1-based; blank lines skipped)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return [], []
    records, bad = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        item = _parsed(line.strip(" \t\r\n"))  # as json.loads: JSON's whitespace around a value, no other
        if item is _MALFORMED:
            bad.append(number)
            continue
        if not isinstance(item, dict) or any(k not in item for k in RECORD_KEYS) or not _is_int(item["epoch"]):
            bad.append(number)
            continue
        records.append(item)
    return records, bad


_MALFORMED = object()
_scan = json.JSONDecoder().scan_once  # json.loads without its per-call set-up: half the time on 10^5 lines


def _parsed(line: str):
    """The JSON value that is the whole of ``line`` (stripped), else ``_MALFORMED``."""
    try:
        item, end = _scan(line, 0)
    except (json.JSONDecodeError, StopIteration):
        return _MALFORMED
    return item if end == len(line) else _MALFORMED


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:5]))
    return shown + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")


def _epochs(epochs: list[int]) -> str:
    if not epochs:
        return "no epoch"
    if epochs == list(range(epochs[0], epochs[-1] + 1)):
        return f"epochs {epochs[0]}-{epochs[-1]}" if len(epochs) > 1 else f"epoch {epochs[0]}"
    return "epochs " + ", ".join(map(str, epochs))


def _same(logged, final) -> bool:
    """Equal as JSON writes them (NaN and inf are null in both files)."""
    missing = lambda v: v is None or (isinstance(v, float) and not math.isfinite(v))
    if missing(logged) or missing(final):
        return missing(logged) and missing(final)
    try:
        return math.isclose(float(logged), float(final), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def history_problem(run_dir: Path, summary: dict, records: list[dict]) -> str:
    """Why the history of a completed run disagrees with its summary ("" when it agrees)."""
    metrics, summary_path = Path(run_dir) / METRICS_FILE, Path(run_dir) / SUMMARY_FILE
    done, final = summary.get("epochs_completed"), summary.get("final")
    if not _is_int(done) or done < 1 or not isinstance(final, dict) or not final:
        return f"{summary_path} says completed but records no epochs_completed or final metrics"
    epochs = sorted({r["epoch"] for r in records if r["split"] != "train_step"})
    if epochs != list(range(1, done + 1)):
        return (f"{metrics} holds {_epochs(epochs)} but {summary_path} says {done} epoch(s) completed "
                f"(a truncated or mixed history)")
    last = {(r["split"], r["task"], r["metric"]): r["value"] for r in records
            if r["epoch"] == done and r["split"] != "train_step"}
    for split, tasks in final.items():
        for task, values in (tasks or {}).items():
            for metric, value in (values or {}).items():
                key = (split, task, metric)
                if key not in last or not _same(last[key], value):
                    logged = "missing" if key not in last else last[key]
                    return (f"{metrics} disagrees with {summary_path}: {split}/{task}/{metric} at epoch {done} is "
                            f"{logged} in the history but {value} in the summary")
    return ""


def read_run(run_dir: Path, statuses=("completed",)) -> RunFiles:
    """Parse a run folder; the history of a run whose status is in ``statuses`` is read and checked."""
    run = RunFiles(Path(run_dir))
    run.summary, summary_problem = load_summary(run_dir)
    run.config, config_problem = load_config(run_dir)
    run.problem = summary_problem or config_problem
    status = (run.summary or {}).get("status")
    if run.problem or status not in statuses:
        return run
    if not (Path(run_dir) / CONFIG_FILE).exists():
        run.problem = f"{Path(run_dir) / CONFIG_FILE} is missing; the run's settings are unknown"
        return run
    run.records, bad = load_records(run_dir)
    if bad:
        run.problem = f"{Path(run_dir) / METRICS_FILE}: malformed line(s) {_lines(bad)}"
    elif status == "completed":
        run.problem = history_problem(run_dir, run.summary, run.records)
    if run.problem:
        run.records = []
    return run
