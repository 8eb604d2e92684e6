"""Experiment trackers (``logger=tensorboard``, ``mlflow``, ``wandb``, several at once): sinks of
the records written to metrics.jsonl, which stays the source of truth.

Each tracker is handed, by :class:`~mtl_bench.train.run_dir.MetricsLog`, the very records appended
to metrics.jsonl (per-task metrics per split and epoch, task weights, step losses, gradient
diagnostics) once they are in the file, and each summary written to summary.json (cost figures and
the final summary are logged when the run ends). A record ``{epoch, step, split, task, metric,
value}`` becomes the scalar ``split/task/metric`` at the optimiser step ``step``; a null value
(NaN or infinite in the run) is not logged.

Resume: ``MetricsLog.truncate_after`` tells the trackers the step after which the history restarts.
TensorBoard reopens its folder with ``purge_step`` at the next step (TensorBoard hides the events
of a killed attempt at or after it); MLflow and W&B go on with the same tracker run, whose id is
kept in the run folder (``trackers.json``), and get only the records written from then on. A kill
(SIGKILL: other signals are deferred) between metrics.jsonl's append and the checkpoint of the same
epoch makes that epoch's records reach MLflow and W&B twice, with the same values and steps.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import time
import uuid
from pathlib import Path

from .run_dir import atomic_write_text

log = logging.getLogger(__name__)

TRACKERS_FILE = "trackers.json"   # ids of the tracker runs of this run folder (for resume)
FINAL = ("completed", "diverged", "failed", "interrupted")
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # logger -> importable module


def tag(r: dict) -> str:
    return f"{r['split']}/{r['task']}/{r['metric']}"


def flat(node, prefix: str = "") -> dict:
    """Dotted keys of a nested dict -> leaf values."""
    out = {}
    for key, value in (node or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def summary_scalars(summary: dict) -> dict[str, float]:
    """The numeric figures of a summary's ``cost`` block, as ``summary/cost/KEY``."""
    return {f"summary/cost/{k}": float(v) for k, v in (summary.get("cost") or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _require(name: str) -> None:
    if importlib.util.find_spec(PACKAGES[name]) is None:
        raise ValueError(f"logger={name} needs the {PACKAGES[name]} package, which is not installed: "
                         f"pip install 'mtl-bench[{name}]' (or choose another logger, e.g. logger=none)")


def _ids(run_dir: Path) -> dict:
    path = Path(run_dir) / TRACKERS_FILE
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


def _save_id(run_dir: Path, name: str, value: dict) -> None:
    atomic_write_text(Path(run_dir) / TRACKERS_FILE, json.dumps({**_ids(run_dir), name: value}, indent=2) + "\n")


class Tracker:
    """A sink: ``resume`` opens it (after epoch ``epoch``, last kept step ``step``), then records and
    summaries arrive; ``close`` ends it."""

    name = ""

    def __init__(self, options: dict, run_dir: Path, config: dict, run_name: str):
        self.options, self.run_dir, self.config, self.run_name = dict(options or {}), Path(run_dir), config, run_name
        self.status = "running"
        self.opened = False

    def resume(self, epoch: int, step: int) -> None:
        self.close()
        try:
            self.open(epoch, step)
        except Exception as err:  # noqa: BLE001 - any tracker error, reported as one line
            message = " ".join(str(err).split())[:300]
            raise ValueError(f"logger={self.name} could not start ({type(err).__name__}: {message}); check the "
                             f"logger.{self.name}.* options (configs/logger/{self.name}.yaml) or choose "
                             f"another logger, e.g. logger=none") from err
        self.opened = True

    def log_records(self, records: list[dict]) -> None:
        if self.opened:
            self._guard(self.write, [r for r in records if isinstance(r.get("value"), (int, float))])

    def log_summary(self, summary: dict) -> None:
        if self.opened and summary.get("status") in FINAL:
            self.status = summary["status"]
            self._guard(self.write_summary, summary)

    def close(self) -> None:
        if self.opened:
            self.opened = False
            self._guard(self.finish)

    def _guard(self, method, *args) -> None:
        """A tracker failing mid-run (a server gone) is dropped with a warning; training and
        metrics.jsonl go on (a tracker that cannot start stops the run before training)."""
        try:
            method(*args)
        except Exception as err:  # noqa: BLE001 - any tracker error
            self.opened = False
            log.warning("logger=%s failed (%s: %s); it gets nothing more from this run, metrics.jsonl is "
                        "complete", self.name, type(err).__name__, err)

    # implemented by each tracker
    def open(self, epoch: int, step: int) -> None: ...
    def write(self, records: list[dict]) -> None: ...
    def write_summary(self, summary: dict) -> None: ...
    def finish(self) -> None: ...


def shared_root_name(run_dir: Path) -> str:
    """A run's folder in a root shared by many runs: its own folder's name and a short hash of its path."""
    digest = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:8]
    return f"{Path(run_dir).name}-{digest}"


class TensorBoardTracker(Tracker):
    """Event files in ``tensorboard/`` of the run folder, or ``DIR/<run folder name>-<hash>`` with
    ``logger.tensorboard.dir=DIR`` (one root for the runs of several sweeps; the hash of the run
    folder's absolute path keeps apart runs whose folders share a name, as every sweep's ``0`` or a
    tune study's ``seed_0``, and stays the same when the run resumes)."""

    name = "tensorboard"

    def open(self, epoch, step):
        from torch.utils.tensorboard import SummaryWriter

        root = self.options.get("dir")
        folder = Path(root) / shared_root_name(self.run_dir) if root else self.run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=step + 1)
        if epoch == 0:
            self.writer.add_text("config", "```\n" + json.dumps(self.config, indent=2, default=str) + "\n```", 0)
        self.writer.flush()

    def write(self, records):
        for r in records:
            self.writer.add_scalar(tag(r), r["value"], global_step=r["step"])
        self.writer.flush()

    def write_summary(self, summary):
        for key, value in summary_scalars(summary).items():
            self.writer.add_scalar(key, value, global_step=summary.get("steps", 0))
        self.writer.add_text("summary", "```\n" + json.dumps(summary, indent=2, sort_keys=True) + "\n```",
                             summary.get("steps", 0))
        self.writer.flush()

    def finish(self):
        self.writer.close()


_MLFLOW_KEY = re.compile(r"[^/\w.\- ]")


class MLflowTracker(Tracker):
    """One MLflow run per run folder (its id kept in ``trackers.json``: a resumed run goes on
    with it). ``tracking_uri`` null: ``$MLFLOW_TRACKING_URI``, else a file store ``mlruns/`` in the
    folder mtl-bench was started from. MLflow 3 keeps file stores in maintenance mode behind
    ``MLFLOW_ALLOW_FILE_STORE``, which is set for a ``file:`` URI (it needs no database;
    ``mlflow-skinny`` suffices); a ``sqlite:`` URI needs SQLAlchemy and Alembic too (full ``mlflow``)."""

    name = "mlflow"
    STATUS = {"completed": "FINISHED", "interrupted": "KILLED", "diverged": "FAILED", "failed": "FAILED",
              "running": "FAILED"}

    def uri(self) -> str:
        uri = self.options.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
        return uri or (Path.cwd() / "mlruns").resolve().as_uri()

    def open(self, epoch, step):
        from mlflow.tracking import MlflowClient

        uri = self.uri()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        known = _ids(self.run_dir).get(self.name, {})
        self.run_id = known.get("run_id") if known.get("tracking_uri") == uri else None
        if self.run_id is not None and self._exists(self.run_id):
            self.client.update_run(self.run_id, status="RUNNING")
            return
        name = self.options.get("experiment") or "mtl-bench"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        run = self.client.create_run(experiment_id, run_name=self.run_name, tags={"run_dir": str(self.run_dir)})
        self.run_id = run.info.run_id
        _save_id(self.run_dir, self.name, {"tracking_uri": uri, "run_id": self.run_id})
        from mlflow.entities import Param

        params = [Param(_MLFLOW_KEY.sub("_", k), json.dumps(v) if not isinstance(v, str) else v)
                  for k, v in flat(self.config).items()]
        for lo in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[lo : lo + 100])
        self.client.log_dict(self.run_id, self.config, "config.json")

    def _exists(self, run_id: str) -> bool:
        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except Exception:  # deleted or from another store
            return False

    def _log(self, values: list[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_MLFLOW_KEY.sub("_", key), value, now, step) for key, value, step in values]
        for lo in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[lo : lo + 1000])

    def write(self, records):
        self._log([(tag(r), float(r["value"]), int(r["step"])) for r in records])

    def write_summary(self, summary):
        steps = int(summary.get("steps", 0))
        self._log([(key, value, steps) for key, value in summary_scalars(summary).items()])
        self.client.log_dict(self.run_id, summary, "summary.json")
        self.client.set_tag(self.run_id, "status", summary["status"])

    def finish(self):
        self.client.set_terminated(self.run_id, status=self.STATUS.get(self.status, "FAILED"))


class WandbTracker(Tracker):
    """One W&B run per run folder (id kept in ``trackers.json``, resumed with ``resume="allow"``);
    its files under the run folder. Records are plotted against ``trainer/step``."""

    name = "wandb"

    def open(self, epoch, step):
        import wandb

        known = _ids(self.run_dir).get(self.name, {})
        run_id = known.get("run_id") or uuid.uuid4().hex[:12]
        kwargs = {k: self.options[k] for k in ("project", "entity", "mode") if self.options.get(k) is not None}
        self.run = wandb.init(id=run_id, resume="allow", name=self.run_name, dir=str(self.run_dir),
                              config=self.config, **kwargs)
        if not known:  # once W&B took the run (a refused start leaves no id, nor a folder, behind)
            _save_id(self.run_dir, self.name, {"run_id": run_id})
        self.run.define_metric("trainer/step")
        self.run.define_metric("*", step_metric="trainer/step")

    def write(self, records):
        by_step: dict[int, dict] = {}
        for r in records:
            row = by_step.setdefault(int(r["step"]), {"trainer/step": int(r["step"])})
            row[tag(r)] = r["value"]
            row["trainer/epoch"] = r["epoch"]
        for step in sorted(by_step):
            self.run.log(by_step[step])

    def write_summary(self, summary):
        self.run.summary.update({**summary_scalars(summary), "status": summary["status"],
                                 "final": summary.get("final"), "selected": summary.get("selected")})

    def finish(self):
        self.run.finish(exit_code=0 if self.status == "completed" else 1)


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}


def build_trackers(logger: dict | None, run_dir: Path, config: dict, run_name: str) -> list[Tracker]:
    """The trackers the ``logger`` node names (``{tensorboard: {...}, mlflow: {...}}``); a missing
    package is refused here, before any data is loaded."""
    out = []
    for name, options in (logger or {}).items():
        if name not in TRACKERS:
            raise ValueError(f"logger: unknown tracker {name!r}; choose {', '.join(TRACKERS)} "
                             f"(configs/logger/), e.g. logger=[tensorboard,mlflow]")
        _require(name)
        out.append(TRACKERS[name](options or {}, run_dir, config, run_name))
    return out


def close_trackers(trackers: list[Tracker]) -> None:
    for tracker in trackers:
        tracker.close()
