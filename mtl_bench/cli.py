"""The ``mtl-bench`` command line: run | list | status | collect | table | plot | reproduce.

``mtl-bench run [overrides]`` and ``mtl-bench run -m [sweep overrides]`` hand everything after
``run`` to Hydra unchanged, so every Hydra flag works (``--cfg job``, ``--help``,
``hydra/launcher=joblib`` ...).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import traceback
from pathlib import Path

from . import sweep_stop
from .train.signals import take_noted_stop
from .paths import config_dir  # noqa: F401  (mtl_bench.cli.config_dir, as before)

USAGE = """usage: mtl-bench COMMAND [ARGS]

Benchmark harness for multi-task learning strategies.

commands:
  run [OVERRIDES]        train one run (Hydra overrides, e.g. dataset=multimnist strategy=mgda seed=1)
  run -m [OVERRIDES]     sweep with Hydra multirun (e.g. -m strategy=ew,uw,mgda seed=0,1,2)
  list [WHAT]            every config of every group, variants included (WHAT: strategies | datasets |
                         models | trainers | protocols | experiments | loggers | launchers)
  status DIR...          every run below DIR at a glance: completed / running / interrupted / failed /
                         diverged / damaged / not started, epochs reached, ETA from the step times
  collect DIR... [--out FILE.parquet|.csv]
                         one tidy results table from every run below DIR (failed/incomplete runs listed)
  table DIR... [--format md|latex|csv] [--baseline stl|published:NAME|none] [--delta-average metric|task]
               [--tune trainer.lr]   (choose trainer.lr per method on val)
               [--beside published:NAME]   (our rows beside the paper's printed numbers)
               [--ci t|bootstrap] [--correction none|holm] [--poi] [--aggregate]   (statistics)
                         rows strategies, columns task metrics, Delta_m%, MR, time per epoch vs ew
  plot DIR... --kind weights|curves|pareto|delta|cost|conflict|aggregate|profile|sensitivity [--out DIR]
               [--verbose] [--csv FILE]   (sensitivity: with --tune KEY, the val and test scores per value)
                         PNG and PDF figures (headless); --verbose prints and --csv writes the plotted data
  tune --dir DIR --methods ew,gradnorm --trials N [--space NAME] [--seeds 0,1] [--n-jobs K] [OVERRIDES]
                         Optuna tunes each method with the same number of trials on the val selection
                         metric (search space configs/tune/NAME.yaml); resumable; mtl-bench table DIR --tune
  reproduce NAME [OVERRIDES]
                         run a paper preset (configs/experiment/NAME.yaml) and print its table beside
                         the published one; NAME: sener_koltun_multimnist, sener_koltun_celeba,
                         nash_mtl_nyuv2, gong_multimnist_label_fraction, gradnorm_toy

  DIR may also be a table written by collect. Run `mtl-bench COMMAND --help` for every option.

  mtl-bench run --help   shows the config groups and every key that can be overridden.
"""

log = logging.getLogger("mtl_bench")




# The error policy of every subcommand: an error whose message says what is wrong and how to fix
# it ends as ONE line on stderr, ``mtl-bench: error: ...``, and exit status 2 (no traceback).
def _user_errors() -> tuple[type[BaseException], ...]:
    """User errors of a training run."""
    from .data import DatasetNotFoundError
    from .strategies import SolverError
    from .train.checkpoint import CheckpointError

    return (ValueError, DatasetNotFoundError, CheckpointError, SolverError, PermissionError)


def _command_errors() -> tuple[type[BaseException], ...]:
    """User errors of the other subcommands: a run's, plus a missing file or key they read."""
    return (*_user_errors(), FileNotFoundError, KeyError)


def _one_line(err: BaseException | str) -> str:
    """The error's message on one line (a KeyError's without its quotes)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args and isinstance(err.args[0], str) else str(err)
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _fail(err: BaseException | str) -> None:
    """Print the user error as one line on stderr and exit with status 2."""
    print(f"mtl-bench: error: {_one_line(err)}", file=sys.stderr)
    raise SystemExit(2) from None


_USER_ERRORS: list[str] = []  # the messages of single runs' user errors, for the Python API (mtl_bench.run)


def _task(cfg) -> dict | None:
    """The Hydra task: one run into Hydra's output directory.

    The run's ``.hydra/`` files are written once the run is accepted (``hydra.output_subdir`` is
    null in configs/config.yaml), so a resume refused for other settings changes nothing on disk.
    A user error (bad value, missing data ...) ends a single run with its message and exit code 2
    (a new run folder is removed again); inside a sweep it marks that run failed in its
    summary.json and the sweep goes on (:class:`SweepReport` tells at the end). SIGTERM or Ctrl-C
    marks the run ``interrupted``, prints how to resume and exits with the signal's code. A run
    that has ended (a sweep started again over its folder) is reported on the console and left as
    it is, its log file included.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    _SWEEP_PLAN.clear()  # a job started: the sweep's plan stays whatever happens next
    take_noted_stop()  # a signal that came before this job (to an idle worker) is not its own
    if hydra_cfg.mode == RunMode.MULTIRUN and sweep_stop.watches(hydra_cfg.launcher):
        if sweep_stop.stopped_by(_sweep_dir(hydra_cfg)):  # a signal stopped the sweep: this job is not started
            return _skip(hydra_cfg, run_dir)
    if _has_ended(cfg, run_dir):
        with _log_file_untouched(run_dir):
            return _report_ended(cfg, hydra_cfg, run_dir)
    return _run_task(cfg, hydra_cfg, run_dir)


def _skip(hydra_cfg, run_dir: Path) -> dict:
    """A job of a sweep that did not start training (the sweep was stopped, or a signal came while
    its run was set up): the folder Hydra made for it goes again unless it holds a run (an
    interrupted one the sweep was to resume, which its summary counts)."""
    with _log_file_untouched(run_dir):
        if not _holds_a_run(run_dir):
            _remove_run_dir(run_dir, hydra_cfg.job.name)
            sweep_stop.note_not_started(_sweep_dir(hydra_cfg), run_dir)
    return {"status": "not started"}


def _sweep_dir(hydra_cfg) -> Path:
    """The sweep's folder, from where the sweep was started (a job may run in another folder:
    ``hydra.job.chdir=true``)."""
    sweep_dir = Path(hydra_cfg.sweep.dir)
    return sweep_dir if sweep_dir.is_absolute() else Path(hydra_cfg.runtime.cwd) / sweep_dir


def _report_ended(cfg, hydra_cfg, run_dir: Path) -> dict:
    """An ended run started again (a sweep over its folder): nothing is built or written. Its
    checkpoint's settings must be these (else it is refused, as a resume would be)."""
    from hydra.types import RunMode

    from .train.checkpoint import CheckpointError, ended_run
    from .train.experiment import run_settings

    try:
        summary = ended_run(run_dir, int(cfg.trainer.epochs), run_settings(cfg))
    except CheckpointError as err:
        if hydra_cfg.mode != RunMode.MULTIRUN:
            _USER_ERRORS.append(str(err))
            print(f"mtl-bench: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        log.error("error: %s", err)
        _note_refused(hydra_cfg, err)
        return {"status": "refused", "error": str(err)}
    log.info("run %s: %s (%s)", summary["status"], run_dir, _headline(summary))
    return summary


REFUSED_FILE = "refused_runs.txt"  # in a sweep's folder: one line per run the sweep refused


def _note_refused(hydra_cfg, err: BaseException) -> None:
    """Record a refused run of a sweep in the sweep's folder, not the run's: :class:`SweepReport`
    reads it at the sweep's end whatever process (joblib worker, SLURM job) ran the run."""
    with open(_sweep_dir(hydra_cfg) / REFUSED_FILE, "a") as f:
        f.write(_one_line(err) + "\n")


def _has_ended(cfg, run_dir: Path) -> bool:
    """The run in ``run_dir`` has ended and a start of it only reports it (a sweep skipping it)."""
    from .train.run_dir import has_ended, read_summary

    try:
        return has_ended(read_summary(run_dir), int(cfg.trainer.epochs), run_dir)
    except Exception:  # an unreadable summary or a bad epochs value: the run's own checks say so
        return False


@contextlib.contextmanager
def _log_file_untouched(run_dir: Path | None):
    """Messages go to the console only, not to the run's log file (``mtl-bench.log``; with None,
    to no log file): a sweep that skips an ended run leaves every file of it as it was, and the
    sweep's closing count (logged where a launcher left the last job's log file open) goes to
    no run's log."""
    root = logging.getLogger()
    files = [h for h in root.handlers if isinstance(h, logging.FileHandler)
             and (run_dir is None or Path(h.baseFilename).resolve().parent == run_dir.resolve())]
    for handler in files:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in files:
            root.addHandler(handler)


def _run_task(cfg, hydra_cfg, run_dir: Path) -> dict | None:
    from hydra.types import RunMode

    from .train import run_experiment
    from .train.checkpoint import SettingsMismatch
    from .train.run_dir import RunDirBusy
    from .train.signals import Interrupted

    fresh = not _holds_a_run(run_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    save_config = _HydraFiles(cfg, run_dir)
    try:
        _validate(cfg)
        summary = run_experiment(cfg, run_dir, on_resumable=save_config)
    except Interrupted as err:
        # the sweep goes on (its end names the run) when the signal was this run's alone: one to a
        # joblib worker (one to the sweep's process stops the sweep's jobs itself), or a rank
        # killed outright; otherwise a signal to the sweep's process stops it as it stops a run
        goes_on = multirun and (sweep_stop.in_worker(hydra_cfg) or err.how is not None)
        if _launched_rank() not in (None, 0):  # a rank of torchrun or of a SLURM job: rank 0 tells
            raise SystemExit(err.exit_code) from None
        if fresh and not _holds_a_run(run_dir):  # stopped while its data and model were built
            if goes_on:
                return _skip(hydra_cfg, run_dir)
            print(f"mtl-bench: {err} before training started; nothing to resume: start the run again",
                  file=sys.stderr)
            _remove_run_dir(run_dir, hydra_cfg.job.name)
            raise SystemExit(err.exit_code) from None
        sys.stderr.write(f"mtl-bench: {err} after epoch {_epochs_done(run_dir)}; the run is marked interrupted. "
                         f"Resume it with: {_resume_command(hydra_cfg, run_dir, multirun)}\n")  # one write: workers share stderr
        if goes_on:
            return {"status": "interrupted", "signal": err.name}
        raise SystemExit(err.exit_code) from None
    except _user_errors() as err:
        if not multirun:
            _USER_ERRORS.append(str(err))
            print(f"mtl-bench: error: {err}", file=sys.stderr)
            if fresh and not _holds_a_run(run_dir) and not isinstance(err, RunDirBusy):  # rejected before training wrote anything
                _remove_run_dir(run_dir, hydra_cfg.job.name)
            raise SystemExit(2) from None
        if isinstance(err, (SettingsMismatch, RunDirBusy)):  # the folder holds another run: leave it as it is
            with _log_file_untouched(run_dir):
                log.error("error: %s", err)
            _note_refused(hydra_cfg, err)
            return {"status": "refused", "error": str(err)}
        log.error("error: %s", err)
        if not (run_dir / ".hydra" / "config.yaml").exists():
            save_config()  # the failed run's settings, for its summary's reader
        return _mark_failed(cfg, run_dir, err)
    except Exception as err:  # not a user error (a bug, out of memory): one run's, not the sweep's
        if not multirun:
            raise  # a single run shows its traceback
        log.exception("failed: %s: %s", type(err).__name__, err)  # the traceback, in the run's log
        if not (run_dir / ".hydra" / "config.yaml").exists():
            save_config()
        return _mark_failed(cfg, run_dir, err)
    log.info("run %s: %s (%s)", summary["status"], run_dir, _headline(summary))
    return summary


def _holds_a_run(run_dir: Path) -> bool:
    from .train.run_dir import CHECKPOINT_FILE, METRICS_FILE, SUMMARY_FILE

    return any((run_dir / name).exists() for name in (SUMMARY_FILE, METRICS_FILE, CHECKPOINT_FILE))


class _HydraFiles:
    """Writes ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` as Hydra writes them,
    when called. The texts are made at construction, so that the call works in another process
    (rank 0 of a run launched with ``trainer.distributed.nproc``)."""

    def __init__(self, cfg, run_dir: Path):
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        full = HydraConfig.instance().cfg
        self.run_dir = run_dir
        self.texts = {name: OmegaConf.to_yaml(node) for name, node in
                      (("config.yaml", cfg), ("hydra.yaml", full), ("overrides.yaml", full.hydra.overrides.task))}

    def __call__(self) -> None:
        hydra_dir = self.run_dir / ".hydra"
        hydra_dir.mkdir(parents=True, exist_ok=True)
        for name, text in self.texts.items():
            (hydra_dir / name).write_text(text, encoding="utf-8")


def _remove_run_dir(run_dir: Path, job_name: str) -> None:
    """Remove a run folder made for a run rejected before training (and its empty parents below
    the working directory); anything else found in it is left in place."""
    (run_dir / f"{job_name}.log").unlink(missing_ok=True)
    run_dir, cwd = run_dir.resolve(), Path.cwd().resolve()
    for folder in [run_dir] + [p for p in run_dir.parents if cwd in p.parents]:
        try:
            folder.rmdir()
        except OSError:
            break


def _mark_failed(cfg, run_dir: Path, err: BaseException) -> dict:
    from .train.run_dir import read_summary, write_summary

    try:
        summary = read_summary(run_dir)
    except ValueError:
        summary = None
    summary = summary or {"identity": {"dataset": cfg.dataset.get("name"), "strategy": cfg.strategy.get("name"),
                                       "seed": cfg.get("seed")}}
    summary.update(status="failed", error=f"{type(err).__name__}: {err}")
    write_summary(run_dir, summary)
    return summary


def _epochs_done(run_dir: Path) -> str:
    from .report.integrity import load_summary

    summary = load_summary(run_dir)[0] or {}
    return f"{summary.get('epochs_completed', 0)}/{summary.get('epochs', '?')}"


def _launched_rank() -> int | None:
    """This process's rank when a launcher started it as one of several (torchrun, the tasks of a
    SLURM job), else None (one process, or the process that starts ``trainer.distributed.nproc`` ranks)."""
    from .train.distributed import environment

    try:
        env = environment()
    except ValueError:
        return None
    return env["rank"] if env else None


def _resume_command(hydra_cfg, run_dir: Path, multirun: bool) -> str:
    """The command that continues this run (or its sweep) from its last finished epoch."""
    import shlex

    if multirun:
        return (f"the same sweep command with hydra.sweep.dir={shlex.quote(str(hydra_cfg.sweep.dir))} "
                f"(completed runs are skipped)")
    if _launched_rank() is not None:  # its launcher's command line is not ours to rebuild
        launcher = "torchrun" if "TORCHELASTIC_RUN_ID" in os.environ else "srun" if "SLURM_PROCID" in os.environ else "launch"
        return f"the same {launcher} command with hydra.run.dir={shlex.quote(str(run_dir))}"
    words = ["mtl-bench", "run", *hydra_cfg.overrides.task, f"hydra.run.dir={run_dir}"]
    return " ".join(shlex.quote(w) for w in words)


def _validate(cfg) -> None:
    """Unknown keys and out-of-range values of the composed config: one line each (mtl_bench/schemas)."""
    from .schemas.check import validate

    validate(cfg, _task_names(cfg))


def _task_names(cfg) -> list[str] | None:
    """The configured dataset's task names, when they can be known without loading data."""
    from .data import dataset_tasks

    try:
        return dataset_tasks(cfg.dataset) if not cfg.dataset.get("_target_") else None
    except Exception:  # an unknown dataset or a bad key: its own check says so
        return None


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a dependency
    _HydraCallback = object


class SweepReport(_HydraCallback):
    """Hydra callback: before a sweep, keep the plan of an earlier sweep into the same folder
    (Hydra overwrites its ``multirun.yaml``: :mod:`mtl_bench.report.plans`); after it, count its
    runs by status; exit 1 when some failed or were refused (a folder holding a run of other
    settings, or one being trained by another process: each is a line of the sweep folder's
    ``refused_runs.txt``, written by whichever process ran it)."""

    def on_multirun_start(self, config, **kwargs) -> None:
        from omegaconf import OmegaConf

        from .report.plans import PLAN_FILE, keep_previous_plan

        sweep_dir = Path(config.hydra.sweep.dir)
        problem = _missing_sweep_data(config)
        if problem:  # every job would fail alike: say it once, start none
            print(f"mtl-bench: error: {problem}\n(no job of the sweep was started)", file=sys.stderr)
            raise SystemExit(2)
        (sweep_dir / REFUSED_FILE).unlink(missing_ok=True)  # a previous sweep's
        sweep_stop.clear(sweep_dir)  # and its stop
        if sweep_stop.watches(config.hydra.launcher):  # a cluster's jobs stop by its own signals
            sweep_stop.watch(sweep_dir)
        plan = sweep_dir / PLAN_FILE
        kept = keep_previous_plan(sweep_dir, OmegaConf.to_yaml(config))  # the text Hydra's sweeper saves
        _SWEEP_PLAN[:] = [plan, plan.read_text() if plan.is_file() else None, kept]
        if kept is not None:
            with _log_file_untouched(None):
                log.info("the plan of the previous sweep into %s is kept as %s", sweep_dir, kept.name)

    def on_multirun_end(self, config, **kwargs) -> None:
        from .report.integrity import load_summary
        from .train.run_dir import SUMMARY_FILE

        sweep_dir = Path(config.hydra.sweep.dir)
        statuses: dict[str, list[str]] = {}
        for path in sorted(sweep_dir.rglob(SUMMARY_FILE)):
            summary, problem = load_summary(path.parent)
            status = (summary or {}).get("status", "damaged")
            statuses.setdefault(status, []).append(str(path.parent))
        counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(statuses.items())) or "no runs"
        with _log_file_untouched(None):
            log.info("sweep %s: %s", sweep_dir, counts)
        failed = statuses.get("failed", [])
        if failed:
            print(f"mtl-bench: {len(failed)} run(s) of the sweep failed (see their summary.json and log):\n  "
                  + "\n  ".join(failed), file=sys.stderr)
        notes = sweep_dir / REFUSED_FILE
        refused = notes.read_text().splitlines() if notes.exists() else []
        if refused:
            print(f"mtl-bench: {len(refused)} run(s) of the sweep refused, their folders left as they were "
                  f"(listed in {notes}):\n  " + "\n  ".join(refused), file=sys.stderr)
        code = sweep_stop.report(sweep_dir, counts, statuses.get("interrupted", []))
        if code is not None:
            raise SystemExit(code)
        if failed or refused:
            raise SystemExit(1)


_SWEEP_PLAN: list = []  # [plan file, its text before this sweep (None: none), the copy kept of it (or None)]


def _undo_sweep_plan() -> None:
    """A sweep refused while its jobs were composed (a bad value in one of them) started no job:
    its plan file goes, and the plan of the sweep before it (if any) is back as it was."""
    if not _SWEEP_PLAN:
        return
    plan, before, kept = _SWEEP_PLAN
    _SWEEP_PLAN.clear()
    if before is None:
        plan.unlink(missing_ok=True)
    else:
        plan.write_text(before)
    if kept is not None:
        kept.unlink(missing_ok=True)


# a sweep over one of these may give its jobs different data: their own checks tell them apart
DATA_KEYS = ("dataset", "dataset.name", "dataset.root", "dataset.download", "dataset.path", "dataset._target_",
             "experiment")


def _missing_sweep_data(config) -> str:
    """Why the dataset every job of a sweep shares is not there ("" when it is, when the sweep
    may give its jobs different data, and when its jobs run on other machines: a SLURM cluster's
    nodes may see files this one does not)."""
    from .data import missing_files
    from .report.plans import swept_keys

    try:
        if "Slurm" in str(config.hydra.launcher.get("_target_", "")) or swept_keys(config.hydra) & set(DATA_KEYS):
            return ""
        return missing_files(config.dataset)
    except Exception:  # an unusual sweep or dataset node: each job's own checks say what is wrong
        return ""


def _check_writable(argv: list[str]) -> list[Path]:
    """Fail early, with the fix, when the run or sweep directory cannot be written; the folders
    made for the check (removed again when the run is refused before it starts)."""
    multirun = "-m" in argv or "--multirun" in argv
    key = "hydra.sweep.dir=" if multirun else "hydra.run.dir="
    given = [a.split("=", 1)[1] for a in argv if a.startswith(key)]
    target = Path(given[-1]) if given else Path.cwd()
    made = [p for p in [target, *target.parents] if not p.exists()]  # folders this check creates
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / f".mtl-bench-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        option = key.rstrip("=")
        raise SystemExit(
            f"mtl-bench: error: cannot write the output directory {str(target)!r} ({err.strerror or err}); "
            f"choose a writable place with {option}=PATH, or run from a writable folder"
        ) from None
    return made


def _headline(summary: dict) -> str:
    """One line on a run's end: where it diverged, else each task's test value of the metric the
    run selects by (else its first metric by name: a run read back from its summary.json says the same)."""
    if summary.get("status") == "diverged":
        tasks = ", ".join(summary.get("diverged_tasks") or []) or "?"
        return f"a non-finite loss of {tasks} at step {summary.get('diverged_at_step', '?')}"
    test = summary.get("final", {}).get("test", {})
    chosen = str((summary.get("selected") or {}).get("metric") or "").rpartition("/")[2]
    firsts = {task: chosen if chosen in m else min(m) for task, m in test.items() if m}
    return ", ".join(f"{task} {name}={test[task][name]:.4g}" for task, name in firsts.items()
                     if isinstance(test[task][name], (int, float)))


def run(argv: list[str]) -> None:
    import hydra

    from . import schemas  # noqa: F401  (registers the config schemas in Hydra's ConfigStore)

    made = []
    if not any(a in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c") for a in argv):
        made = _check_writable(argv)

    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")(_task)
    saved, saved_full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["mtl-bench run", *argv]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises composition errors to us instead of printing them
    wants_help = "--help" in argv or "-h" in argv
    try:
        app()
    except SystemExit as stop:
        if wants_help:  # Hydra ends its help with an exit
            _print_key_help(argv)
        if stop.code == 2:  # refused before any run started (a sweep without its data)
            _remove_empty(made)
        raise
    except Exception as err:
        message = _composition_error(err)
        if message is None:
            raise
        _USER_ERRORS.append(message)
        print(f"mtl-bench: error: {message}", file=sys.stderr)
        _undo_sweep_plan()
        _remove_empty(made)
        raise SystemExit(2) from None
    finally:
        sweep_stop.release()
        sys.argv = saved
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error
    if wants_help:
        _print_key_help(argv)


def _remove_empty(made: list[Path]) -> None:
    """Refused before the run: leave none of the (still empty) folders the write check made."""
    for folder in made:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _composition_error(err: BaseException) -> str | None:
    """The message of an error Hydra raised before the run (a bad override, an unknown config):
    one line for the schemas' errors, Hydra's own text for the others; None for anything else."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .schemas.check import explain

    if not isinstance(err, (HydraException, OmegaConfBaseException)):
        return None
    if any(frame.f_code is _task.__code__ for frame, _ in traceback.walk_tb(err.__traceback__)):
        return None  # raised inside a run, not while composing: a bug, shown with its traceback
    message = explain(err)
    if message is not None:
        return message
    text = str(err).split("\nConfig search path:")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    options = [line for line in lines[1:] if not line.startswith("Available options")]
    if any(line.startswith("Available options") for line in lines):  # an unknown config of a group
        return f"{lines[0]}; available: {', '.join(options)}"
    cause = err.__cause__
    reason = f" ({str(cause).splitlines()[0]})" if isinstance(cause, OmegaConfBaseException) else ""
    return " ".join(lines) + reason


def _print_key_help(argv: list[str]) -> None:
    """After Hydra's help: what each key of the chosen groups means (their config files' comments)."""
    from .catalog import dataset_choices, key_help

    choices = {"dataset": "synthetic", "model": "mlp", "strategy": "ew", "trainer": "default", "protocol": "last"}
    given = dict(arg.split("=", 1) for arg in argv if "=" in arg and arg.split("=", 1)[0] in choices)
    search = _searchpath_folders(argv)
    choices["dataset"] = given.get("dataset", choices["dataset"])
    choices.update(dataset_choices(config_dir(), choices["dataset"], search))  # a dataset picks its model, trainer, protocol
    choices.update(given)
    print("\n" + key_help(config_dir(), choices, search))


def _searchpath_folders(argv: list[str]) -> list[Path]:
    """The folders of ``hydra.searchpath=[file://conf,...]`` in ``argv`` (``pkg://`` entries are
    packages, not folders: left out)."""
    folders = []
    for arg in argv:
        if arg.startswith(("hydra.searchpath=", "+hydra.searchpath=")):
            for entry in arg.split("=", 1)[1].strip("[]").split(","):
                entry = entry.strip().strip("'\"")
                if entry.startswith("file://"):
                    folders.append(Path(entry[len("file://"):]))
    return folders


def list_command(argv: list[str]) -> None:
    """Every config of every group (``mtl-bench list``) or of one (``mtl-bench list strategies``)."""
    from .catalog import listing

    print(listing(config_dir(), argv[0] if argv else "all"))


def _parse(prog: str, argv: list[str], build):
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):  # one line, as every other user error, instead of usage + error
            _fail(f"{message} (see mtl-bench {prog} --help)")

    parser = Parser(prog=f"mtl-bench {prog}")
    build(parser)
    return parser.parse_args(argv)


def _table_args(parser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run dirs, sweep dirs or collected tables")
    parser.add_argument("--baseline", default="stl", help="stl (stored single-task runs) | published:NAME | none")
    parser.add_argument("--delta-average", default="metric", choices=["metric", "task"])
    parser.add_argument("--split", default="test", help="split reported (default test)")
    parser.add_argument("--metrics", help="comma-separated metric names shown (default: all but losses)")
    parser.add_argument("--columns", help="comma-separated task/metric or mean/metric columns")
    parser.add_argument("--reference", help="method for relative time and the paired test (default ew, when the "
                                            "table has it)")
    parser.add_argument("--bar", action="append", metavar="METRIC=VALUE",
                        help="mark (‡) every mean of METRIC worse than VALUE, in the table's units (accuracy=90: "
                             "below 90%%), e.g. the level a sanely trained run reaches; repeatable")
    group = parser.add_argument_group("model selection (default: each run's protocol config)")
    group.add_argument("--select", dest="sel_rule", choices=["last", "best", "mean_last_k", "delta_m"])
    group.add_argument("--select-split", dest="sel_split", help="split selected on (val; test only when named)")
    group.add_argument("--select-metric", dest="sel_metric", help="'task/metric' or 'mean/metric' for --select best")
    group.add_argument("--select-k", dest="sel_k", type=int, help="epochs averaged by --select mean_last_k")
    group.add_argument("--tune", action="append", metavar="KEY", nargs="?", const=STUDY_KEYS,
                       help="config key chosen per method on val, e.g. trainer.lr (repeatable or comma-separated); "
                            "alone: the keys of the mtl-bench tune studies in DIR, with the trials spent per method")
    group.add_argument("--tune-metric", help="'task/metric' or 'mean/metric' scored on val by --tune "
                       "(default: each run's protocol.selection.metric)")
    group = parser.add_argument_group("statistics (docs/statistics.md)")
    group.add_argument("--ci", default="t", choices=["t", "bootstrap"],
                       help="95%% intervals over seeds: t (Student t, mean ± half-width; default) or bootstrap "
                            "(percentile bootstrap of the mean, seeded, mean [low, high])")
    group.add_argument("--correction", default="none", choices=["none", "holm"],
                       help="multiple-comparison correction of the p-values against --reference (default none)")
    group.add_argument("--poi", action="store_true",
                       help="add P(Δm < reference): probability of improvement over the reference, ties 1/2")


def _bare_tune(argv: list[str]) -> list[str]:
    """``--tune DIR`` (a bare --tune before a folder) means the study's keys, not a key named DIR."""
    out = list(argv)
    for i, word in enumerate(out[:-1]):
        if word == "--tune" and ("/" in out[i + 1] or Path(out[i + 1]).exists()):
            out[i] = f"--tune={STUDY_KEYS}"
    return out


def _split(text):
    return [t for t in text.split(",") if t] if text else None


STUDY_KEYS = "<study>"  # `--tune` without a key: the keys an `mtl-bench tune` study tuned


def _table_inputs(a) -> dict:
    tune, tune_metric = [k for text in a.tune or [] for k in _split(text)], a.tune_metric
    if STUDY_KEYS in tune:
        from .tune.study import study_settings

        studies = study_settings(a.dirs)
        if not studies:
            raise ValueError("--tune without a key needs an mtl-bench tune study folder (with tune.yaml) among DIR; "
                             "else name the keys, e.g. --tune trainer.lr")
        keys = [k for s in studies for k in s.get("keys", [])]
        tune = list(dict.fromkeys(k for key in tune for k in (keys if key == STUDY_KEYS else [key])))
        metrics = {s.get("metric") for s in studies}
        if tune_metric is None and len(metrics) == 1:
            tune_metric = metrics.pop()  # the metric the study optimised, so the table keeps its best trial
    return dict(split=a.split, columns=_split(a.columns), metrics=_split(a.metrics), delta_average=a.delta_average,
                reference=a.reference, baseline=a.baseline,
                selection={"rule": a.sel_rule, "split": a.sel_split, "metric": a.sel_metric, "k": a.sel_k},
                tune=tune, tune_metric=tune_metric, ci=a.ci, correction=a.correction, poi=a.poi,
                bars=_bars(a.bar))


def _bars(texts) -> dict[str, float]:
    """``--bar accuracy=90`` (repeatable) -> ``{"accuracy": 90.0}``."""
    bars = {}
    for text in texts or []:
        metric, _, value = text.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not metric.strip() or not math.isfinite(number):
            raise ValueError(f"--bar {text!r}: write METRIC=VALUE in the table's units, e.g. --bar accuracy=90")
        bars[metric.strip()] = number
    return bars


def collect_command(argv: list[str]) -> None:
    from .report import collect, write_table
    from .report.collect import table_path

    def build(p):
        p.add_argument("dirs", nargs="+", metavar="DIR")
        p.add_argument("--out", help="write the table to FILE.parquet or FILE.csv")
    a = _parse("collect", argv, build)
    if a.out:
        table_path(a.out)  # a name it could not read back: refused before reading every run
    found = collect(a.dirs)
    if not found.excluded.empty:
        print(found.describe_excluded())
    if found.results.empty:
        raise ValueError(f"no completed runs below {', '.join(a.dirs)}" + (", nothing written" if a.out else ""))
    n = found.results["run"].nunique()
    print(f"{n} completed run(s), {len(found.results)} rows")
    if a.out:
        print(f"written to {write_table(found.results, a.out)}")


def status_command(argv: list[str]) -> None:
    from .report.status import describe_status, sweep_status

    def build(p):
        p.add_argument("dirs", nargs="+", metavar="DIR", help="a run, a sweep or a tree of sweeps")
    a = _parse("status", argv, build)
    print(describe_status(sweep_status(a.dirs)))


def table_command(argv: list[str]) -> None:
    from .report.pipeline import make_table

    def build(p):
        _table_args(p)
        p.add_argument("--format", default="md", choices=["md", "latex", "csv"])
        p.add_argument("--out", help="also write the table to this file")
        p.add_argument("--beside", metavar="published:NAME",
                       help="add our rows beside the paper's printed numbers (results/published/NAME.csv; md only)")
        p.add_argument("--aggregate", action="store_true",
                       help="across benchmarks (the panels): IQM and mean of Δm, probability of improvement over "
                            "--reference, stratified bootstrap CIs (Agarwal et al. 2021)")
    a = _parse("table", _bare_tune(argv), build)
    if a.beside and (not a.beside.startswith("published:") or a.format != "md"):
        raise ValueError(f"--beside {a.beside}: give published:NAME (e.g. published:sener_koltun_multimnist) "
                         "with --format md")
    if a.bar and a.aggregate:
        raise ValueError("--bar marks the comparison table's means; --aggregate shows Δm aggregates: use one of them")
    table, sel = make_table(a.dirs, **_table_inputs(a))
    if not sel.collection.excluded.empty:
        print(sel.collection.describe_excluded(), file=sys.stderr)
    if a.aggregate:
        from .report.aggregate import aggregate_table

        text = aggregate_table(table).render(a.format)
    else:
        text = table.render(a.format)
    if a.beside:
        from .report.beside import beside_published

        text += "\n" + beside_published(table, a.beside.split(":", 1)[1])
    print(text)
    if a.out:
        Path(a.out).write_text(text)


def plot_command(argv: list[str]) -> None:
    from .report import plots
    from .report.pipeline import make_table, select_all

    def build(p):
        _table_args(p)
        p.add_argument("--kind", required=True, choices=list(plots.KINDS))
        p.add_argument("--out", default="plots", help="directory for the PNG and PDF files (default plots/)")
        p.add_argument("--metric", help="metric of curves/pareto (default: the first non-loss metric)")
        p.add_argument("--curve-split", default="val", help="split of --kind curves (default val)")
        p.add_argument("--tasks", help="the two tasks of --kind pareto, e.g. left,right")
        p.add_argument("--task-label", action="append", metavar="TASK=LABEL",
                       help="draw TASK as LABEL in legends and axes, e.g. 'task1=task1 (sigma 100)'; repeatable")
        p.add_argument("--verbose", "-v", action="store_true", help="also print the plotted data")
        p.add_argument("--csv", metavar="FILE", help="also write the plotted data to FILE (CSV)")
    a = _parse("plot", _bare_tune(argv), build)
    if a.bar:
        raise ValueError("--bar marks means in `mtl-bench table`; plots draw no bar")
    if a.task_label and a.kind in ("delta", "cost", "aggregate", "profile", "sensitivity"):
        raise ValueError(f"--task-label: --kind {a.kind} names no task (it names methods); drop it, or use it with "
                         "--kind weights, conflict, curves or pareto")
    inputs = _table_inputs(a)
    if a.kind in ("delta", "cost", "aggregate", "profile"):
        table, _ = make_table(a.dirs, **inputs)
        draw = {"delta": plots.delta, "cost": plots.cost, "aggregate": plots.aggregate, "profile": plots.profile}
        data = draw[a.kind](table, out=a.out)
    else:
        sel = select_all(a.dirs, average=a.delta_average, baseline=a.baseline, tune=inputs["tune"],
                         tune_metric=inputs["tune_metric"], **inputs["selection"])
        sel = _labelled(sel, _task_labels(a.task_label, sel.results))
        if a.kind == "sensitivity":
            data = plots.sensitivity(sel.grid, sel.tuning, out=a.out)
        elif a.kind == "weights":
            data = plots.weights(sel.results, out=a.out)
        elif a.kind == "conflict":
            data = plots.conflict(sel.results, out=a.out)
        elif a.kind == "curves":
            data = plots.curves(sel.results, metric=a.metric, split=a.curve_split, out=a.out)
        else:
            labels = _task_labels(a.task_label, None)
            tasks = [labels.get(t, t) for t in _split(a.tasks)] if a.tasks else None
            data = plots.pareto(sel.selected, split=a.split, metric=a.metric, tasks=tasks, out=a.out)
    if a.verbose:
        print(data.to_string(index=False))
    if a.csv:
        data.to_csv(a.csv, index=False)
        print(f"data written to {a.csv}")
    print(f"{data.attrs['note']}\nwritten: " + ", ".join(data.attrs["files"]))


def _task_labels(texts, results) -> dict[str, str]:
    """``--task-label TASK=LABEL`` (repeatable) -> ``{TASK: LABEL}``; a TASK the runs do not have
    is one line naming the tasks they have (``results``: the runs' tidy table, None: not checked)."""
    labels = {}
    for text in texts or []:
        task, sep, label = text.partition("=")
        if not sep or not task.strip() or not label.strip():
            raise ValueError(f"--task-label {text!r}: give TASK=LABEL, e.g. --task-label 'task1=task1 (sigma 100)'")
        labels[task.strip()] = label.strip()
    same = sorted(label for label in set(labels.values()) if list(labels.values()).count(label) > 1)
    if same:
        raise ValueError(f"--task-label: two tasks labelled {same[0]!r}; give each task its own label")
    if results is not None:
        known = set(results["task"]) - {"mean", "all"}
        unknown = sorted(set(labels) - known)
        if unknown:
            raise ValueError(f"--task-label: no task {', '.join(map(repr, unknown))} in these runs; "
                             f"their tasks: {', '.join(sorted(known))}")
        taken = sorted((task, label) for task, label in labels.items()
                       if label != task and label in known and labels.get(label, label) == label)
        if taken:
            raise ValueError(f"--task-label {taken[0][0]}={taken[0][1]}: {taken[0][1]!r} is another task of these "
                             "runs; the two would be drawn as one: choose another label")
    return labels


def _labelled(sel, labels: dict[str, str]):
    """The selection with tasks renamed for drawing (legends, axes); the tables are not touched."""
    if not labels:
        return sel
    import dataclasses

    def rename(frame):
        if "task" not in frame:
            return frame
        return frame.assign(task=frame["task"].replace(labels))

    return dataclasses.replace(sel, results=rename(sel.results), selected=rename(sel.selected))


def tune_command(argv: list[str]) -> None:
    """``mtl-bench tune``: one Optuna study per method, equal budgets (mtl_bench/tune/study.py)."""
    from .tune.study import Stopped, Tuner

    def build(p):
        p.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                       help="Hydra overrides of every trial, e.g. dataset=multimnist trainer.epochs=10 "
                            "hydra/launcher=local (not strategy, seed or hydra.sweep.dir)")
        p.add_argument("--dir", required=True, help="study folder: optuna.db, tune.yaml, tune.json, METHOD/trial_K/")
        p.add_argument("--methods", required=True, help="comma-separated strategy configs, e.g. ew,gradnorm,cagrad")
        p.add_argument("--trials", type=int, required=True, help="finished trials per method (the same for all)")
        p.add_argument("--space", help="search space preset configs/tune/NAME.yaml or a YAML path "
                       "(default: the dataset's, e.g. synthetic)")
        p.add_argument("--seeds", default="0", help="seeds of every trial, scored by their mean (default 0)")
        p.add_argument("--metric", help="val metric tuned, task/metric or mean/metric (default: the preset's)")
        p.add_argument("--direction", choices=("maximize", "minimize"),
                       help="the metric's direction, for a metric mtl-bench does not know (one of your own)")
        p.add_argument("--n-jobs", type=int, default=1, help="trials run at once (default 1)")
        p.add_argument("--sampler-seed", type=int, default=0, help="seed of Optuna's TPE sampler (default 0)")
    a = _parse("tune", argv, build)
    dataset = next((o.split("=", 1)[1] for o in a.overrides if o.split("=", 1)[0] == "dataset"), "synthetic")
    try:
        tuner = Tuner(Path(a.dir), methods=_split(a.methods) or [], trials=a.trials, space_name=a.space or dataset,
                      seeds=[int(s) for s in _split(a.seeds) or []], overrides=a.overrides, metric=a.metric,
                      direction=a.direction, n_jobs=a.n_jobs, sampler_seed=a.sampler_seed, log=lambda line: print(f"mtl-bench tune: {line}", flush=True))
        state = tuner.run()
    except Stopped as err:
        print(f"mtl-bench: {err}; resume with the same command", file=sys.stderr)
        raise SystemExit(143) from None
    for method, info in state["methods"].items():
        best = info["best"]
        line = f"{method}: {info['trials']} trial(s) ({info['complete']} complete, {info['failed']} failed)"
        if best:
            line += f"; best trial {best['trial']}: val {state['metric']} = {best['value']:.6g} {best['params']}"
        print(line)
    print(f"table: mtl-bench table {a.dir} --tune")


def reproduce_command(argv: list[str]) -> None:
    from .report.papers import GridRefused, available_presets, reproduce

    if not argv:
        _fail(f"reproduce needs a preset name: mtl-bench reproduce NAME [OVERRIDES]; presets: "
              f"{', '.join(available_presets())}")
    if argv[0] in ("-h", "--help"):
        print("usage: mtl-bench reproduce NAME [OVERRIDES]\n\nRuns the grids of configs/experiment/NAME.yaml as "
              "Hydra multiruns with OVERRIDES appended (trainer.epochs=1, hydra/launcher=joblib, "
              "hydra.sweep.dir=DIR), then prints the regenerated table beside the published one.\n"
              f"presets: {', '.join(available_presets())}")
        return
    try:
        failures = reproduce(argv[0], argv[1:])
    except GridRefused:  # its error is printed above it, by the grid itself
        raise SystemExit(2) from None
    if failures:
        raise SystemExit(1)


COMMANDS = {"run": run, "list": list_command, "status": status_command, "collect": collect_command, "table": table_command,
            "plot": plot_command, "tune": tune_command, "reproduce": reproduce_command}


def _leave_if_a_rank() -> None:
    """A rank of torchrun that ran and ended its process group leaves now, everything written,
    without the interpreter's teardown, where torch's gloo threads now and then abort the process
    (exit -6 after a completed run; as the ranks of ``trainer.distributed.nproc`` leave)."""
    distributed = sys.modules.get("mtl_bench.train.distributed")
    if distributed is not None and distributed.group_ended():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def main(argv: list[str] | None = None) -> None:
    if hasattr(signal, "SIGPIPE"):  # `mtl-bench list | head` ends quietly, as Unix tools do
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command in ("--version", "version"):
        from . import __version__

        print(f"mtl-bench {__version__}")
        return
    if command not in COMMANDS:
        print(f"mtl-bench: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    try:
        if command == "run":  # a run reports its own errors (inside a sweep they mark the run failed)
            run(rest)
            _leave_if_a_rank()
        else:
            try:
                COMMANDS[command](rest)
            except _command_errors() as err:
                _fail(err)
    except KeyboardInterrupt:  # Ctrl-C outside training (which reports and exits by itself)
        print(f"mtl-bench {command}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
