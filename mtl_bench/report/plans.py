"""What the sweeps run into a folder planned, kept across every command that swept into it.

Hydra writes the sweep's plan (the composed config and the command's overrides) to the sweep
folder's ``multirun.yaml`` and overwrites it when a second sweep runs into the same folder: a
partial re-run (say the one seed that was missing) would erase the command of the whole sweep,
and ``mtl-bench status`` would then count only the partial plan's jobs. So before a sweep starts,
:func:`keep_previous_plan` copies the folder's plan to ``multirun.1.yaml``, ``multirun.2.yaml``, ...
(oldest first; a plan already kept is not kept twice), and :func:`planned_jobs` reads all of them.

A job is identified by its overrides, as Hydra's basic sweeper expands them (``key=value`` strings,
the keys that do not change a run, ``hydra.job.config.override_dirname.exclude_keys``, left out),
and a run folder by its ``.hydra/overrides.yaml``: a job is launched when some run below the
folder has its overrides, whatever the folder is named.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterable

import yaml

PLAN_FILE = "multirun.yaml"
_KEPT = re.compile(r"^multirun\.(\d+)\.yaml$")

Job = frozenset  # of "key=value" override strings


def kept_plans(sweep_dir: Path) -> list[Path]:
    """The plans kept from earlier sweeps into ``sweep_dir``, oldest first."""
    found = [(int(m.group(1)), p) for p in Path(sweep_dir).glob("multirun.*.yaml") if (m := _KEPT.match(p.name))]
    return [p for _, p in sorted(found)]


def plan_files(sweep_dir: Path) -> list[Path]:
    """Every plan of ``sweep_dir``: the kept ones, then the current ``multirun.yaml`` (if any)."""
    current = Path(sweep_dir) / PLAN_FILE
    return kept_plans(sweep_dir) + ([current] if current.is_file() else [])


def keep_previous_plan(sweep_dir: Path, new_plan: str | None = None) -> Path | None:
    """Copy ``sweep_dir``'s plan aside before a new sweep (whose plan file will read ``new_plan``)
    overwrites it; the copy (None when there is no plan, it is the new plan, or it is kept already)."""
    current = Path(sweep_dir) / PLAN_FILE
    if not current.is_file():
        return None
    text = current.read_text()
    kept = kept_plans(sweep_dir)
    if text == new_plan or any(p.read_text() == text for p in kept):
        return None
    number = int(_KEPT.match(kept[-1].name).group(1)) + 1 if kept else 1
    target = Path(sweep_dir) / f"multirun.{number}.yaml"
    shutil.copyfile(current, target)
    return target


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def job_identity(overrides: Iterable[str], exclude_keys: Iterable[str]) -> Job:
    """A job's overrides without those of keys that do not change a run."""
    excluded = set(exclude_keys)
    return frozenset(o for o in overrides if _key(o) not in excluded)


def sweep_overrides(hydra) -> list:
    """The parsed overrides of a sweep (its ``hydra`` node): the sweeper's params, then the
    command line's, in the order Hydra's basic sweeper reads them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    params = hydra.sweeper.get("params")
    params = OmegaConf.to_container(params, resolve=False) if params else {}
    overrides = [f"{key}={value}" for key, value in params.items()] + list(hydra.overrides.task)
    return OverridesParser.create().parse_overrides(overrides)


def swept_keys(hydra) -> set[str]:
    """The keys a sweep gives several values (``strategy``, ``seed``, ``dataset.tasks``)."""
    return {o.get_key_element().lstrip("+~") for o in sweep_overrides(hydra) if o.is_sweep_override()}


def read_plan(plan: Path) -> tuple[list[list[str]], list[str]] | None:
    """The jobs one plan file expands to (sweeper params and command-line overrides, as Hydra's
    basic sweeper expands them) and the keys that do not change a run; None when it cannot be
    told (an unreadable or unusual plan)."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from omegaconf import OmegaConf

        hydra = OmegaConf.load(plan).hydra
        batches = BasicSweeper.split_arguments(sweep_overrides(hydra), None)
        excluded = [str(k) for k in hydra.job.config.override_dirname.get("exclude_keys") or []]
    except Exception:
        return None
    return [job for batch in batches for job in batch], excluded


def planned_jobs(sweep_dir: Path) -> tuple[set[Job], list[str]] | None:
    """The union of the jobs of every plan of ``sweep_dir`` and the keys left out of their
    identities; None when some plan cannot be read."""
    plans = [read_plan(p) for p in plan_files(sweep_dir)]
    if any(plan is None for plan in plans):
        return None
    excluded = sorted({key for _, keys in plans for key in keys})
    return {job_identity(job, excluded) for jobs, _ in plans for job in jobs}, excluded


def run_job(run_dir: Path, exclude_keys: Iterable[str]) -> Job | None:
    """The job a run folder holds (its ``.hydra/overrides.yaml``); None when it has none."""
    try:
        overrides = yaml.safe_load((Path(run_dir) / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(overrides, list):
        return None
    return job_identity([str(o) for o in overrides], exclude_keys)


def unlaunched_jobs(sweep_dir: Path, run_dirs: Iterable[Path]) -> int:
    """How many jobs that the plans of ``sweep_dir`` name have no run folder below it. Runs
    without their overrides (not made by a sweep) are matched by count; an unreadable plan counts
    nothing (the runs found are all that is known)."""
    plans = planned_jobs(sweep_dir)
    if plans is None:
        return 0
    jobs, excluded = plans
    inside = [d for d in run_dirs if Path(sweep_dir) in Path(d).parents]
    found = [run_job(d, excluded) for d in inside]
    launched = {job for job in found if job is not None}
    anonymous = sum(job is None for job in found)
    return max(0, len(jobs - launched) - anonymous)
