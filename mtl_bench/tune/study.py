"""``mtl-bench tune``: Optuna tunes every method with the same number of trials (docs/tuning.md).

Xin et al. 2022 ("Do current multi-task optimization methods in deep learning even help?") and
Kurin et al. 2022 ("In defense of the unitary scalarization") found that tuning explains many
published gains; this gives each method one Optuna study with the same budget of trials, scored on
the validation selection metric (:mod:`.score`; test never), over the search space preset of
configs/tune/NAME.yaml (:mod:`.space`).

- Storage: ``DIR/optuna.db`` (SQLite), one study per method (the study name is the strategy
  config), and ``DIR/tune.yaml``, the study's settings: a restart with other settings is refused.
- Trials are ordinary run folders: trial ``k`` of method ``M`` is the Hydra multirun
  ``mtl-bench run -m strategy=M <drawn values> seed=S1,S2 <overrides>`` into
  ``DIR/M/trial_k/seed_S/`` (launcher overrides such as ``hydra/launcher=slurm`` apply to it).
  ``mtl-bench table DIR --tune`` reads them back.
- Budget: ``trials`` finished trials per method (complete or failed: a diverged run fails its
  trial, which counts). ``n_jobs`` trials run at once, methods interleaved so that a stopped study
  has spent about the same on each.
- Resume: start the same command again. Finished trials are kept; a trial that was running when
  the study was stopped (SIGTERM, SIGKILL, preemption) is run again with its drawn values in its
  own folder, where the harness resumes each run from its checkpoint (a completed run is not
  trained again).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import zlib
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..report.directions import higher_is_better
from ..report.selection import TRIAL_PREFIX
from .score import score_trial
from .space import load_space, method_params, override, suggest

_MISSING = object()
SETTINGS_FILE = "tune.yaml"
STATE_FILE = "tune.json"
STORAGE_FILE = "optuna.db"
FIXED = ("space", "metric", "seeds", "overrides", "sampler_seed")  # a restart must keep these


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ValueError("mtl-bench tune needs Optuna: pip install 'mtl-bench[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class Stopped(Exception):
    """SIGTERM: running trials were interrupted and stay running in the study (resumed next time)."""


@dataclass
class Item:
    method: str
    number: int
    params: dict
    trial: object = None   # the optuna Trial of a new draw (None for a resumed one)


@dataclass
class Tuner:
    directory: Path
    methods: list[str]
    trials: int
    space_name: str
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: list[str] = field(default_factory=list)
    metric: str | None = None
    n_jobs: int = 1
    direction: str | None = None  # "maximize" | "minimize": a metric whose direction mtl-bench does not know
    sampler_seed: int = 0
    log: object = print

    def __post_init__(self):
        if self.trials < 1:
            raise ValueError(f"--trials {self.trials}: give at least 1 trial per method")
        if self.n_jobs < 1:
            raise ValueError(f"--n-jobs {self.n_jobs}: give at least 1")
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"--methods {','.join(self.methods)}: give distinct strategy configs, e.g. ew,gradnorm")
        bad = [o for o in self.overrides if o.split("=", 1)[0].lstrip("+~") in ("strategy", "seed", "hydra.sweep.dir")]
        if bad:
            raise ValueError(f"override {bad[0]!r}: tune sets strategy (--methods), seed (--seeds) and the sweep "
                             f"folder (--dir) itself; remove it")
        self.space = load_space(self.space_name)
        if self.direction not in (None, "maximize", "minimize"):
            raise ValueError(f"--direction {self.direction}: choose maximize or minimize")
        self.metric = self.metric or self.space["metric"]  # null: the runs' protocol.selection.metric (preflight)
        self.higher = None if self.metric is None else self._metric_direction(self.metric)
        self.directory = Path(self.directory)
        self._children: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def _metric_direction(self, metric) -> bool:
        """Whether higher values of ``metric`` are better: ``--direction``, else mtl-bench's own table."""
        if not metric or "/" not in str(metric):
            raise ValueError(f"--metric {metric!r}: give the val metric to tune as task/metric or mean/metric "
                             f"(e.g. mean/accuracy), or set metric: in the search space preset")
        if self.direction:
            return self.direction == "maximize"
        name = metric.split("/", 1)[1]
        try:
            return higher_is_better(name)
        except ValueError:
            raise ValueError(f"--metric {metric}: mtl-bench does not know whether higher or lower {name!r} is better "
                             f"(a metric of your own); give --direction maximize or --direction minimize") from None

    # ------------------------------------------------------------------ settings and storage
    def settings(self) -> dict:
        return {"space": self.space, "metric": self.metric, "direction": "maximize" if self.higher else "minimize",
                "seeds": list(self.seeds), "overrides": list(self.overrides), "sampler_seed": self.sampler_seed,
                "methods": list(self.methods), "trials": self.trials, "keys": self.keys()}

    def keys(self) -> list[str]:
        """Every config key tuned for some method (the columns of ``mtl-bench table --tune``)."""
        return list(dict.fromkeys(k for m in self.methods for k in method_params(self.space, m)))

    def _check_settings(self) -> None:
        path = self.directory / SETTINGS_FILE
        mine = self.settings()
        if path.exists():
            stored = yaml.safe_load(path.read_text()) or {}
            for key in FIXED:
                if stored.get(key) != mine[key]:
                    raise ValueError(f"{self.directory} holds a study tuned with {key}={stored.get(key)!r}, not "
                                     f"{mine[key]!r}; resume it with the same settings or choose a new --dir")
            mine["methods"] = list(dict.fromkeys(stored.get("methods", []) + self.methods))
            mine["keys"] = list(dict.fromkeys(stored.get("keys", []) + mine["keys"]))
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(mine, sort_keys=False))
        tmp.replace(path)

    def _studies(self) -> dict:
        optuna = _optuna()
        storage = optuna.storages.RDBStorage(f"sqlite:///{(self.directory / STORAGE_FILE).resolve()}",
                                             engine_kwargs={"connect_args": {"timeout": 60}})
        direction = "maximize" if self.higher else "minimize"
        studies = {}
        for method in self.methods:
            study = optuna.create_study(study_name=method, storage=storage, direction=direction, load_if_exists=True)
            # seeded by (sampler seed, method, trials so far): a resumed study draws new values, not the
            # first draws of its first start again
            key = [self.sampler_seed, zlib.crc32(method.encode()), len(study.trials)]
            seed = int(np.random.SeedSequence(key).generate_state(1)[0])
            study.sampler = optuna.samplers.TPESampler(seed=seed)
            studies[method] = study
        return studies

    # ------------------------------------------------------------------ trials
    def trial_dir(self, method: str, number: int) -> Path:
        return self.directory / method / f"{TRIAL_PREFIX}{number:03d}"

    def command(self, item: Item) -> list[str]:
        drawn = [override(k, v) for k, v in item.params.items()]
        return ["run", "-m", *self.overrides, f"strategy={item.method}", *drawn,
                f"seed={','.join(map(str, self.seeds))}", f"hydra.sweep.dir={self.trial_dir(item.method, item.number)}",
                "hydra.sweep.subdir=seed_${seed}"]

    def _run(self, item: Item):
        folder = self.trial_dir(item.method, item.number)
        folder.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "mtl_bench.tune.child", str(os.getpid()), *self.command(item)]
        with open(folder / "trial.log", "a") as log, self._lock:
            if self._stopping:
                return None
            child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            self._children.add(child)
        try:
            child.wait()
        finally:
            with self._lock:
                self._children.discard(child)
        if child.returncode in (130, 143, -signal.SIGTERM, -signal.SIGINT) or self._stopping:
            return None  # interrupted: left running in the study, resumed next time
        return score_trial(folder, self.metric, len(self.seeds))

    def _pending(self, studies) -> dict[str, list[Item]]:
        """Per method: trials left running by a stopped study (run again first, same values)."""
        optuna = _optuna()
        stale = {}
        for method, study in studies.items():
            states = (optuna.trial.TrialState.RUNNING,)
            stale[method] = [Item(method, t.number, t.params) for t in study.get_trials(deepcopy=False, states=states)]
        return stale

    def _finished(self, study) -> int:
        optuna = _optuna()
        done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)
        return len(study.get_trials(deepcopy=False, states=done))

    def preflight(self) -> None:
        """Compose each method's config with the overrides (Hydra's compose API) before any trial runs:
        a bad override, a tuned key the strategy lacks or missing data is one clear error, not a budget of
        failed trials."""
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf

        from .. import schemas  # noqa: F401  (registers the config schemas in Hydra's ConfigStore)
        from ..data import dataset_tasks, missing_files
        from ..paths import config_dir
        from ..schemas.check import explain, validate

        # the run's own keys, and hydra.searchpath: a user's config folder (their strategies, models, data)
        plain = [o for o in self.overrides
                 if not o.lstrip("+~").startswith("hydra") or o.lstrip("+~").startswith("hydra.searchpath")]
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            for method in self.methods:
                try:
                    cfg = compose("config", overrides=[*plain, f"strategy={method}"])
                except Exception as err:  # Hydra's composition errors name the bad override
                    raise ValueError(explain(err) or f"strategy={method} {' '.join(plain)}: "
                                                     f"{str(err).splitlines()[0]}") from None
                tasks = None if cfg.dataset.get("_target_") else dataset_tasks(cfg.dataset)
                validate(cfg, tasks)  # the values a run would refuse
                for key in method_params(self.space, method):
                    if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
                        raise ValueError(f"search space {self.space_name}: {key} is not a config key of "
                                         f"strategy={method}; fix the preset's methods.{method} entry")
        selection = cfg.protocol.selection
        if self.metric is None:  # the search space's metric: null, the runs' own selection metric
            self.metric = selection.get("metric")
            self.higher = self._metric_direction(self.metric)
        if selection.get("rule") in ("best", "delta_m") and selection.get("split") == "test":
            raise ValueError("protocol.selection.split=test: tune scores each trial on val and never reads test, "
                             "so its runs must select their epochs on val too; drop the override (or set "
                             "protocol.selection.split=val)")
        task = self.metric.split("/", 1)[0]
        if tasks is not None and task != "mean" and task not in tasks:
            raise ValueError(f"--metric {self.metric}: the runs have no task {task!r}; their tasks: {', '.join(tasks)} "
                             f"(or mean/METRIC)")
        problem = missing_files(cfg.dataset)  # every trial would miss the same data
        if problem:
            raise ValueError(problem)

    def run(self) -> dict:
        """Run the study to ``trials`` finished trials per method; the state written to tune.json."""
        self.preflight()
        self._check_settings()
        studies = self._studies()
        stale = self._pending(studies)
        started = {m: self._finished(s) + len(stale[m]) for m, s in studies.items()}
        for method, items in stale.items():
            for item in items:
                self.log(f"{method} trial {item.number}: resumed in {self.trial_dir(method, item.number)}")

        def next_item() -> Item | None:
            open_methods = [m for m in self.methods if stale[m] or started[m] < self.trials]
            if not open_methods:
                return None
            method = min(open_methods, key=lambda m: (started[m] - len(stale[m]), self.methods.index(m)))
            if stale[method]:
                return stale[method].pop(0)
            trial = studies[method].ask()
            params = suggest(trial, method_params(self.space, method))
            trial.set_user_attr("run_dir", str(self.trial_dir(method, trial.number)))
            started[method] += 1
            return Item(method, trial.number, params, trial)

        previous = signal.signal(signal.SIGTERM, self._on_term) if threading.current_thread() is threading.main_thread() else None
        try:
            with ThreadPoolExecutor(self.n_jobs) as pool:
                running = {}
                while True:
                    while not self._stopping and len(running) < self.n_jobs and (item := next_item()):
                        running[pool.submit(self._run, item)] = item
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._tell(studies, running.pop(future), future.result())
                    self._write_state(studies)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        state = self._write_state(studies)
        if self._stopping:
            raise Stopped("tuning stopped by SIGTERM; the finished trials are kept and the interrupted ones run "
                          "again in their folders (from their checkpoints) when the study resumes")
        return state

    def _tell(self, studies, item: Item, score) -> None:
        optuna = _optuna()
        if score is None:
            return
        study = studies[item.method]
        if score.value is None:
            study.tell(item.number, state=optuna.trial.TrialState.FAIL)
            self.log(f"{item.method} trial {item.number}: failed ({score.reason}); counts towards the budget")
        else:
            study.tell(item.number, score.value)
            drawn = " ".join(override(k, v) for k, v in item.params.items())
            self.log(f"{item.method} trial {item.number}: val {self.metric} = {score.value:.6g} ({drawn})")

    def _on_term(self, signum, frame) -> None:
        with self._lock:
            self._stopping = True
            for child in self._children:
                child.terminate()

    def _write_state(self, studies) -> dict:
        """``DIR/tune.json``: per method the trials spent, their states and the best trial."""
        optuna = _optuna()
        state = {"metric": self.metric, "direction": "maximize" if self.higher else "minimize",
                 "budget": self.trials, "methods": {}}
        previous = {}
        path = self.directory / STATE_FILE
        if path.exists():
            previous = json.loads(path.read_text()).get("methods", {})
        for method, study in studies.items():
            trials = study.get_trials(deepcopy=False)
            count = lambda s: sum(t.state == s for t in trials)  # noqa: E731
            complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            best = (max if self.higher else min)(complete, key=lambda t: t.value) if complete else None
            state["methods"][method] = {
                "trials": count(optuna.trial.TrialState.COMPLETE) + count(optuna.trial.TrialState.FAIL)
                + count(optuna.trial.TrialState.PRUNED),
                "complete": count(optuna.trial.TrialState.COMPLETE), "failed": count(optuna.trial.TrialState.FAIL),
                "running": count(optuna.trial.TrialState.RUNNING),
                "best": None if best is None else {"trial": best.number, "value": best.value, "params": best.params,
                                                   "run_dir": str(self.trial_dir(method, best.number))}}
        state["methods"] = {**previous, **state["methods"]}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)
        return state


def read_state(directory: Path) -> dict | None:
    """The tune.json of a study folder (None when there is none)."""
    path = Path(directory) / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def study_settings(directories) -> list[dict]:
    """The tune.yaml settings of the studies in (or below) ``directories``."""
    return [yaml.safe_load(path.read_text()) or {} for directory in directories
            for path in _study_files(Path(directory), SETTINGS_FILE)]


def tuned_keys(directories) -> list[str]:
    """The keys tuned by the studies in (or below) ``directories``: ``table --tune`` alone."""
    return list(dict.fromkeys(k for s in study_settings(directories) for k in s.get("keys", [])))


def trials_spent(directories) -> dict[tuple[Path, str], int]:
    """Finished trials of each study found in ``directories``: ``{(study folder, method): trials}``."""
    spent: dict[tuple[Path, str], int] = {}
    for directory in directories:
        for path in _study_files(Path(directory), STATE_FILE):
            for method, info in json.loads(path.read_text()).get("methods", {}).items():
                spent[(path.parent.resolve(), method)] = int(info.get("trials", 0))
    return spent


def study_of_run(run_dir) -> tuple[Path, str]:
    """``(study folder, method)`` of a trial's run folder ``STUDY/METHOD/trial_K/seed_S``."""
    trial = Path(run_dir).resolve().parent
    return trial.parent.parent, trial.parent.name


def _study_files(directory: Path, name: str) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(directory.rglob(name)) if not (directory / name).exists() else [directory / name]
