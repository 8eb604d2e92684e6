"""The ``mtl-bench`` command line: run | list (report commands join as they land).

``mtl-bench run [overrides]`` and ``mtl-bench run -m [sweep overrides]`` hand everything after
``run`` to Hydra unchanged, so every Hydra flag works (``--cfg job``, ``--help``,
``hydra/launcher=joblib`` ...).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

USAGE = """usage: mtl-bench COMMAND [ARGS]

Benchmark harness for multi-task learning strategies.

commands:
  run [OVERRIDES]        train one run (Hydra overrides, e.g. dataset=multimnist strategy=mgda seed=1)
  run -m [OVERRIDES]     sweep with Hydra multirun (e.g. -m strategy=ew,uw,mgda seed=0,1,2)
  list [WHAT]            list strategies, datasets and models (WHAT: strategies | datasets | models)

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


def _task(cfg) -> dict | None:
    """The Hydra task: one run into Hydra's output directory."""
    from hydra.core.hydra_config import HydraConfig

    from .train import run_experiment

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run_experiment(cfg, run_dir)
    except _user_errors() as err:
        log.error("error: %s", err)
        print(f"mtl-bench: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    log.info("run %s: %s (%s)", summary["status"], run_dir, _headline(summary))
    return summary


def _headline(summary: dict) -> str:
    test = summary.get("final", {}).get("test", {})
    return ", ".join(f"{task} {next(iter(m))}={next(iter(m.values())):.4g}" for task, m in test.items()
                     if m and next(iter(m.values())) is not None)


def run(argv: list[str]) -> None:
    import hydra

    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")(_task)
    saved = sys.argv
    sys.argv = ["mtl-bench run", *argv]
    try:
        app()
    finally:
        sys.argv = saved


def list_command(argv: list[str]) -> None:
    what = argv[0] if argv else "all"
    if what not in ("all", "strategies", "datasets", "models"):
        raise SystemExit(f"mtl-bench list: unknown {what!r}; choose strategies, datasets or models")
    if what in ("all", "strategies"):
        from .strategies import available_strategies, hyperparameters, level_of, strategy_class

        print("strategies (strategy=NAME):")
        for name in available_strategies():
            cls = strategy_class(name)
            hp = ", ".join(f"{k}={v!r}" for k, v in hyperparameters(name).items()) or "-"
            space = f" space={cls.default_space}" if cls.level == "gradient" else ""
            print(f"  {name:<10} {level_of(name):<10}{space}  {cls.paper}")
            print(f"  {'':<10} hyper-parameters: {hp}")
    if what in ("all", "datasets"):
        from .data import available_datasets

        print("datasets (dataset=NAME):")
        for name in available_datasets():
            print(f"  {name}")
    if what in ("all", "models"):
        from .models import available_models

        print("models (model=NAME):")
        for name in available_models():
            print(f"  {name}")


COMMANDS = {"run": run, "list": list_command}


def main(argv: list[str] | None = None) -> None:
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
    COMMANDS[command](rest)


if __name__ == "__main__":
    main()
