"""The ``mtl-bench`` command line: run | list | status | collect | table | plot | reproduce.

``mtl-bench run [overrides]`` and ``mtl-bench run -m [sweep overrides]`` hand everything after
``run`` to Hydra unchanged, so every Hydra flag works (``--cfg job``, ``--help``,
``hydra/launcher=joblib`` ...).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

USAGE = """usage: mtl-bench COMMAND [ARGS]

Benchmark harness for multi-task learning strategies.

commands:
  run [OVERRIDES]        train one run (Hydra overrides, e.g. dataset=multimnist strategy=mgda seed=1)
  run -m [OVERRIDES]     sweep with Hydra multirun (e.g. -m strategy=ew,uw,mgda seed=0,1,2)
  list [WHAT]            every config of every group, variants included (WHAT: strategies | datasets |
                         models | trainers | protocols | experiments | launchers)
  status DIR...          every run below DIR at a glance: completed / running / interrupted / failed /
                         diverged / damaged / not started, epochs reached, ETA from the step times
  collect DIR... [--out FILE.parquet|.csv]
                         one tidy results table from every run below DIR (failed/incomplete runs listed)
  table DIR... [--format md|latex|csv] [--baseline stl|published:NAME|none] [--delta-average metric|task]
               [--tune trainer.lr]   (choose trainer.lr per method on val)
               [--beside published:NAME]   (our rows beside the paper's printed numbers)
                         rows strategies, columns task metrics, Delta_m%, MR, time per epoch vs ew
  plot DIR... --kind weights|curves|pareto|delta|cost [--out DIR] [--verbose] [--csv FILE]
                         PNG and PDF figures (headless); --verbose prints and --csv writes the plotted data
  reproduce NAME [OVERRIDES]
                         run a paper preset (configs/experiment/NAME.yaml) and print its table beside
                         the published one; NAME: sener_koltun_multimnist, sener_koltun_celeba,
                         nash_mtl_nyuv2, gong_multimnist_label_fraction, gradnorm_toy

  DIR may also be a table written by collect. Run `mtl-bench COMMAND --help` for every option.

  mtl-bench run --help   shows the config groups and every key that can be overridden.
"""

log = logging.getLogger("mtl_bench")


def config_dir() -> Path:
    """configs/ of a clone (or editable install), else the copy shipped inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "configs", here / "configs"):
        if (candidate / "config.yaml").exists():
            return candidate
    raise FileNotFoundError(f"mtl-bench's configs/ not found next to {here}; reinstall the package")


# Errors whose message says what is wrong and how to fix it: shown without a traceback.
def _user_errors() -> tuple[type[BaseException], ...]:
    from .data import DatasetNotFoundError
    from .strategies import SolverError
    from .train.checkpoint import CheckpointError

    return (ValueError, DatasetNotFoundError, CheckpointError, SolverError, PermissionError)


_USER_ERRORS: list[str] = []  # the messages of single runs' user errors, for the Python API (mtl_bench.run)


def _task(cfg) -> dict | None:
    """The Hydra task: one run into Hydra's output directory.

    The run's ``.hydra/`` files are written once the run is accepted (``hydra.output_subdir`` is
    null in configs/config.yaml), so a resume refused for other settings changes nothing on disk.
    A user error (bad value, missing data ...) ends a single run with its message and exit code 2
    (a new run folder is removed again); inside a sweep it marks that run failed in its
    summary.json and the sweep goes on (:class:`SweepReport` tells at the end). SIGTERM or Ctrl-C
    marks the run ``interrupted``, prints how to resume and exits with the signal's code.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .train import run_experiment
    from .train.checkpoint import SettingsMismatch
    from .train.signals import Interrupted

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    fresh = not _holds_a_run(run_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    save_config = _HydraFiles(cfg, run_dir)
    try:
        _check_types(cfg, hydra_cfg)
        summary = run_experiment(cfg, run_dir, on_resumable=save_config)
    except Interrupted as err:
        print(f"mtl-bench: {err} after epoch {_epochs_done(run_dir)}; the run is marked interrupted. "
              f"Resume it with: {_resume_command(hydra_cfg, run_dir, multirun)}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except _user_errors() as err:
        if not multirun:
            _USER_ERRORS.append(str(err))
            print(f"mtl-bench: error: {err}", file=sys.stderr)
            if fresh and not _holds_a_run(run_dir):  # rejected before training wrote anything
                _remove_run_dir(run_dir, hydra_cfg.job.name)
            raise SystemExit(2) from None
        log.error("error: %s", err)
        if isinstance(err, SettingsMismatch):
            return {"status": "refused", "error": str(err)}  # the folder holds another run: leave it as it is
        if not (run_dir / ".hydra" / "config.yaml").exists():
            save_config()  # the failed run's settings, for its summary's reader
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


def _resume_command(hydra_cfg, run_dir: Path, multirun: bool) -> str:
    """The command that continues this run (or its sweep) from its last finished epoch."""
    import shlex

    if multirun:
        return (f"the same sweep command with hydra.sweep.dir={shlex.quote(str(hydra_cfg.sweep.dir))} "
                f"(completed runs are skipped)")
    words = ["mtl-bench", "run", *hydra_cfg.overrides.task, f"hydra.run.dir={run_dir}"]
    return " ".join(shlex.quote(w) for w in words)


def _check_types(cfg, hydra_cfg) -> None:
    """Compare the user's overrides with the types of the same config composed without them."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from .config_check import check_new_keys, check_override_types, check_values

    task = set(hydra_cfg.overrides.task)
    # groups appended on the command line (+experiment=NAME) must be appended again
    choices = [f"+{group}={choice}" if f"+{group}={choice}" in task else f"{group}={choice}"
               for group, choice in hydra_cfg.runtime.choices.items()
               if choice is not None and not group.startswith("hydra")]
    # a user's config folder (hydra.searchpath=[file://conf]) holds groups the reference needs too
    searchpath = [o for o in hydra_cfg.overrides.hydra if o.startswith("hydra.searchpath=")]
    reference = GlobalHydra.instance().config_loader().load_configuration(
        config_name=hydra_cfg.job.config_name, overrides=choices + searchpath, run_mode=RunMode.RUN)
    keys = [o.split("=", 1)[0] for o in hydra_cfg.overrides.task]
    check_new_keys(reference, hydra_cfg.overrides.task)
    check_override_types(cfg, reference, keys)
    check_values(cfg, _task_names(cfg))


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
    """Hydra callback: after a sweep, count its runs by status; exit 1 when some failed or were
    refused (a folder holding a run of other settings; seen by launchers that run jobs in this
    process, the others log it in the job's log)."""

    def __init__(self):
        self.refused: list[str] = []

    def on_job_end(self, config, job_return, **kwargs) -> None:
        from hydra.core.utils import JobStatus

        if job_return.status == JobStatus.COMPLETED and isinstance(job_return.return_value, dict):
            if job_return.return_value.get("status") == "refused":
                self.refused.append(job_return.return_value.get("error", ""))

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
        log.info("sweep %s: %s", sweep_dir, counts)
        failed = statuses.get("failed", [])
        if failed:
            print(f"mtl-bench: {len(failed)} run(s) of the sweep failed (see their summary.json and log):\n  "
                  + "\n  ".join(failed), file=sys.stderr)
        if self.refused:
            print(f"mtl-bench: {len(self.refused)} run(s) of the sweep refused, their folders left as they were:\n  "
                  + "\n  ".join(self.refused), file=sys.stderr)
        if failed or self.refused:
            raise SystemExit(1)


def _check_writable(argv: list[str]) -> None:
    """Fail early, with the fix, when the run or sweep directory cannot be written."""
    multirun = "-m" in argv or "--multirun" in argv
    key = "hydra.sweep.dir=" if multirun else "hydra.run.dir="
    given = [a.split("=", 1)[1] for a in argv if a.startswith(key)]
    target = Path(given[-1]) if given else Path.cwd()
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


def _headline(summary: dict) -> str:
    test = summary.get("final", {}).get("test", {})
    return ", ".join(f"{task} {next(iter(m))}={next(iter(m.values())):.4g}" for task, m in test.items()
                     if m and next(iter(m.values())) is not None)


def run(argv: list[str]) -> None:
    import hydra

    if not any(a in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c") for a in argv):
        _check_writable(argv)

    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")(_task)
    saved = sys.argv
    sys.argv = ["mtl-bench run", *argv]
    wants_help = "--help" in argv or "-h" in argv
    try:
        app()
    except SystemExit:
        if wants_help:  # Hydra ends its help with an exit
            _print_key_help(argv)
        raise
    finally:
        sys.argv = saved
    if wants_help:
        _print_key_help(argv)


def _print_key_help(argv: list[str]) -> None:
    """After Hydra's help: what each key of the chosen groups means (their config files' comments)."""
    from .catalog import dataset_choices, key_help

    choices = {"dataset": "synthetic", "model": "mlp", "strategy": "ew", "trainer": "default", "protocol": "last"}
    given = dict(arg.split("=", 1) for arg in argv if "=" in arg and arg.split("=", 1)[0] in choices)
    choices["dataset"] = given.get("dataset", choices["dataset"])
    choices.update(dataset_choices(config_dir(), choices["dataset"]))  # a dataset picks its model, trainer, protocol
    choices.update(given)
    print("\n" + key_help(config_dir(), choices))


def list_command(argv: list[str]) -> None:
    """Every config of every group (``mtl-bench list``) or of one (``mtl-bench list strategies``)."""
    from .catalog import listing

    try:
        print(listing(config_dir(), argv[0] if argv else "all"))
    except ValueError as err:
        raise SystemExit(str(err)) from None


def _parse(prog: str, argv: list[str], build):
    import argparse

    parser = argparse.ArgumentParser(prog=f"mtl-bench {prog}")
    build(parser)
    return parser.parse_args(argv)


def _table_args(parser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run dirs, sweep dirs or collected tables")
    parser.add_argument("--baseline", default="stl", help="stl (stored single-task runs) | published:NAME | none")
    parser.add_argument("--delta-average", default="metric", choices=["metric", "task"])
    parser.add_argument("--split", default="test", help="split reported (default test)")
    parser.add_argument("--metrics", help="comma-separated metric names shown (default: all but losses)")
    parser.add_argument("--columns", help="comma-separated task/metric or mean/metric columns")
    parser.add_argument("--reference", default="ew", help="method for relative time and the paired test")
    group = parser.add_argument_group("model selection (default: each run's protocol config)")
    group.add_argument("--select", dest="sel_rule", choices=["last", "best", "mean_last_k", "delta_m"])
    group.add_argument("--select-split", dest="sel_split", help="split selected on (val; test only when named)")
    group.add_argument("--select-metric", dest="sel_metric", help="'task/metric' or 'mean/metric' for --select best")
    group.add_argument("--select-k", dest="sel_k", type=int, help="epochs averaged by --select mean_last_k")
    group.add_argument("--tune", action="append", metavar="KEY",
                       help="config key chosen per method on val, e.g. trainer.lr (repeatable or comma-separated)")
    group.add_argument("--tune-metric", help="'task/metric' or 'mean/metric' scored on val by --tune "
                       "(default: each run's protocol.selection.metric)")


def _split(text):
    return [t for t in text.split(",") if t] if text else None


def _table_inputs(a) -> dict:
    return dict(split=a.split, columns=_split(a.columns), metrics=_split(a.metrics), delta_average=a.delta_average,
                reference=a.reference, baseline=a.baseline,
                selection={"rule": a.sel_rule, "split": a.sel_split, "metric": a.sel_metric, "k": a.sel_k},
                tune=[k for text in a.tune or [] for k in _split(text)], tune_metric=a.tune_metric)


def _report_errors(fn):
    def wrapped(argv):
        try:
            fn(argv)
        except (ValueError, FileNotFoundError, KeyError) as err:
            print(f"mtl-bench: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
    return wrapped


@_report_errors
def collect_command(argv: list[str]) -> None:
    from .report import collect, write_table

    def build(p):
        p.add_argument("dirs", nargs="+", metavar="DIR")
        p.add_argument("--out", help="write the table to FILE.parquet or FILE.csv")
    a = _parse("collect", argv, build)
    found = collect(a.dirs)
    if not found.excluded.empty:
        print(found.describe_excluded())
    n = found.results["run"].nunique() if not found.results.empty else 0
    print(f"{n} completed run(s), {len(found.results)} rows")
    if a.out:
        print(f"written to {write_table(found.results, a.out)}")


@_report_errors
def status_command(argv: list[str]) -> None:
    from .report.status import describe_status, sweep_status

    def build(p):
        p.add_argument("dirs", nargs="+", metavar="DIR", help="a run, a sweep or a tree of sweeps")
    a = _parse("status", argv, build)
    print(describe_status(sweep_status(a.dirs)))


@_report_errors
def table_command(argv: list[str]) -> None:
    from .report.pipeline import make_table

    def build(p):
        _table_args(p)
        p.add_argument("--format", default="md", choices=["md", "latex", "csv"])
        p.add_argument("--out", help="also write the table to this file")
        p.add_argument("--beside", metavar="published:NAME",
                       help="add our rows beside the paper's printed numbers (results/published/NAME.csv; md only)")
    a = _parse("table", argv, build)
    if a.beside and (not a.beside.startswith("published:") or a.format != "md"):
        raise ValueError(f"--beside {a.beside}: give published:NAME (e.g. published:sener_koltun_multimnist) "
                         "with --format md")
    table, sel = make_table(a.dirs, **_table_inputs(a))
    if not sel.collection.excluded.empty:
        print(sel.collection.describe_excluded(), file=sys.stderr)
    text = table.render(a.format)
    if a.beside:
        from .report.beside import beside_published

        text += "\n" + beside_published(table, a.beside.split(":", 1)[1])
    print(text)
    if a.out:
        Path(a.out).write_text(text)


@_report_errors
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
        p.add_argument("--verbose", "-v", action="store_true", help="also print the plotted data")
        p.add_argument("--csv", metavar="FILE", help="also write the plotted data to FILE (CSV)")
    a = _parse("plot", argv, build)
    inputs = _table_inputs(a)
    if a.kind in ("delta", "cost"):
        table, _ = make_table(a.dirs, **inputs)
        data = plots.delta(table, out=a.out) if a.kind == "delta" else plots.cost(table, out=a.out)
    else:
        sel = select_all(a.dirs, average=a.delta_average, baseline=a.baseline, tune=inputs["tune"],
                         tune_metric=inputs["tune_metric"], **inputs["selection"])
        if a.kind == "weights":
            data = plots.weights(sel.results, out=a.out)
        elif a.kind == "curves":
            data = plots.curves(sel.results, metric=a.metric, split=a.curve_split, out=a.out)
        else:
            data = plots.pareto(sel.selected, split=a.split, metric=a.metric, tasks=_split(a.tasks), out=a.out)
    if a.verbose:
        print(data.to_string(index=False))
    if a.csv:
        data.to_csv(a.csv, index=False)
        print(f"data written to {a.csv}")
    print(f"{data.attrs['note']}\nwritten: " + ", ".join(data.attrs["files"]))


def reproduce_command(argv: list[str]) -> None:
    from .report.papers import available_presets, reproduce

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mtl-bench reproduce NAME [OVERRIDES]\n\nRuns the grids of configs/experiment/NAME.yaml as "
              "Hydra multiruns with OVERRIDES appended (trainer.epochs=1, hydra/launcher=joblib, "
              "hydra.sweep.dir=DIR), then prints the regenerated table beside the published one.\n"
              f"presets: {', '.join(available_presets())}")
        return
    try:
        failures = reproduce(argv[0], argv[1:])
    except (ValueError, FileNotFoundError) as err:
        print(f"mtl-bench: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if failures:
        raise SystemExit(1)


COMMANDS = {"run": run, "list": list_command, "status": status_command, "collect": collect_command, "table": table_command,
            "plot": plot_command, "reproduce": reproduce_command}


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
        COMMANDS[command](rest)
    except KeyboardInterrupt:  # Ctrl-C outside training (which reports and exits by itself)
        print(f"mtl-bench {command}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
