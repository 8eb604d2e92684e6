"""The training loop: one model, one benchmark, one strategy, one run directory.

Per epoch: train (losses and task weights accumulated on the device; no host sync inside the step
except what a strategy's host solver needs), then evaluate val and test (metrics accumulated on the
device, read once per split), then write metrics.jsonl, the checkpoint and summary.json, in that
order, so a killed run resumes from its last finished epoch with nothing lost.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch
from tqdm.auto import tqdm

from ..protocol import check_selection, run_selection
from ..schemas import TrainerConfig  # the trainer group's schema: every key's type, default and range
from ..strategies.base import Strategy
from ..strategies.solvers import one_blas_thread_held
from .checkpoint import (SettingsMismatch, check_settings, ended_run, load_checkpoint, on_host, rng_state,
                         save_checkpoint, set_rng_state)
from .cost import StepTimer, peak_memory_mb, warm_epoch_seconds
from .diagnostics import GradientDiagnostics
from .gradients import GradientBackend, batch_kpis
from .optim import build_optimizer, build_scheduler, scheduler_node
from .signals import Interrupted, deferred_signals, interrupt_on_signals
from .run_dir import CHECKPOINT_FILE, MetricsLog, exclusive, record, write_summary

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """A task loss was NaN or infinite at optimiser ``step`` (counted over the run) of ``epoch``."""

    def __init__(self, step: int, epoch: int, tasks: list[str]):
        super().__init__(f"the loss of task(s) {', '.join(tasks)} became NaN or infinite at step {step} "
                         f"(epoch {epoch})")
        self.step, self.epoch, self.tasks = step, epoch, tasks


@torch.no_grad()
def evaluate_losses(model, tasks, x, targets, autocast=contextlib.nullcontext) -> torch.Tensor:
    """[T] task losses of a batch under the current model, without grad (FAMO's re-evaluation)."""
    with autocast():
        preds = model(x)
        return torch.stack([t.loss(preds[t.name], targets[t.name]).float() for t in tasks])


def training_step(model, strategy: Strategy, backend: GradientBackend, optimizer, tasks, x, targets,
                  autocast=contextlib.nullcontext, probe=None, dist=None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One optimiser step of any strategy: ``(losses [T], logged weights [T], encoder backward
    passes)``, all on the device. Shared by the trainer and scripts/bench_strategies.py.

    Loss weightings: one forward, ``strategy.combine``, one backward. Gradient methods: the
    backend. Strategies with ``needs_kpi`` get the batch KPIs (computed on the device from the
    detached predictions) before their weights; then the shared gradient is clipped at
    ``strategy.max_grad_norm`` (when set), the optimiser steps and ``after_step`` runs.
    ``autocast`` is a context factory for the forward passes (the trainer's bf16 option).
    ``probe`` (None on all but the diagnosed steps): :mod:`.diagnostics` measures the step.
    ``dist``: this rank's :class:`~.distributed.DistContext` when data-parallel (``x`` is the
    rank's shard of the global batch), else None."""
    optimizer.zero_grad(set_to_none=True)
    if strategy.level == "loss":
        with autocast():
            preds = model(x)
            task_losses = [t.loss(preds[t.name], targets[t.name]).float() for t in tasks]
            losses = torch.stack(task_losses)
        if dist is not None:
            losses = dist.global_losses(losses, tasks, targets)
        if strategy.needs_kpi:
            kpis = batch_kpis if dist is None else lambda *args: dist.global_kpis(batch_kpis, *args)
            strategy.feed_kpi(kpis(tasks, [preds[t.name].detach() for t in tasks], targets))
        total, weights = strategy.combine(losses)
        if probe is not None:  # T extra encoder backward passes, on the diagnosed steps only
            probe.measure_loss_weighting(task_losses, model.shared_parameters())
        total.backward()
        if dist is not None:
            dist.average_gradients(model.parameters())
        if probe is not None:
            probe.finish_loss_weighting(model.shared_parameters())
        passes = 1
        losses = losses.detach()
    else:
        with autocast():
            result = backend.step(model, strategy, x, targets, tasks, probe=probe)
        losses, weights, passes = result.losses.float(), result.weights.float(), result.encoder_backward_passes
    if strategy.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.shared_parameters(), strategy.max_grad_norm)
    optimizer.step()
    reevaluate = lambda: evaluate_losses(model, tasks, x, targets, autocast)  # noqa: E731
    if dist is not None:  # the global batch's losses under the updated model
        reevaluate = lambda local=reevaluate: dist.global_values(local(), tasks, targets)[0]  # noqa: E731
    strategy.after_step(losses, reevaluate)
    return losses, weights, passes


class Trainer:
    def __init__(self, model, benchmark, strategy: Strategy, config: TrainerConfig, run_dir: Path,
                 device: torch.device, backend: GradientBackend | None = None, identity: dict | None = None,
                 versions: dict | None = None, settings: dict | None = None, provenance: dict | None = None,
                 on_resumable=None, selection: dict | None = None,
                 diagnostics: GradientDiagnostics | None = None, trackers=None, dist=None):
        self.model = model.to(device)
        self.benchmark = benchmark.to(device)
        self.dist = dist  # a DistContext when data-parallel (.distributed); only its rank 0 writes the run dir
        self.strategy = strategy.to(device)
        self.config = config
        self.selection = selection or {"rule": "last", "split": "val", "metric": None, "k": 10}  # protocol.selection
        self.run_dir = Path(run_dir)
        self.device = device
        self.backend = backend or GradientBackend()
        self.identity = identity or {}
        self.versions = versions or {}
        self.settings = settings  # the resolved run config: stored in checkpoints, checked on resume
        self.provenance = provenance or {}
        self.on_resumable = on_resumable  # called once the run dir is accepted (before anything is written)
        self.tasks = benchmark.tasks
        if [t.name for t in self.tasks] != model.task_names:
            raise ValueError(f"model heads {model.task_names} do not match tasks {[t.name for t in self.tasks]}")
        if strategy.n_tasks != len(self.tasks):
            raise ValueError(f"strategy built for {strategy.n_tasks} tasks, benchmark has {len(self.tasks)}")
        if strategy.level == "gradient" and self.backend.space not in strategy.spaces:
            raise ValueError(
                f"strategy {type(strategy).__name__} cannot run in grad.space={self.backend.space}; "
                f"choose one of {', '.join(strategy.spaces)}"
            )
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}] + strategy.optimizer_groups()
        self.optimizer = build_optimizer(config, groups)
        self.scheduler = build_scheduler(config, self.optimizer)
        if config.compile:
            for module in (self.model.encoder, *self.model.heads.values()):
                module.compile()
        self._check_selection()
        self.metrics_log = MetricsLog(self.run_dir, sinks=trackers)  # trackers get its records (trackers.py)
        self.diagnostics = diagnostics or GradientDiagnostics(None, [t.name for t in self.tasks])
        if dist is not None:
            from .distributed import attach

            attach(self, dist)
        self.timer = StepTimer(device)
        self.epoch = 0            # epochs finished
        self.step = 0             # optimiser steps taken
        self.checkpointed_step = 0  # the steps of the last finished epoch, which a resume continues from
        self.history: dict[int, dict] = {}
        self.epoch_seconds: list[float] = []
        self.epoch_cpu_seconds: list[float] = []  # CPU runs: the process's CPU time per epoch (robust to other load)
        self.encoder_passes = 0
        self.started_at = time.time()

    # ----------------------------------------------------------------------------------- API
    def fit(self) -> dict:
        """Train to ``config.epochs``, resuming from the run dir's checkpoint when there is one; one
        process at a time per run directory (:func:`.run_dir.exclusive`)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with exclusive(self.run_dir) if self.dist is None or self.dist.is_main else contextlib.nullcontext(), \
                one_blas_thread_held():  # the host solvers' BLAS, for the whole run (strategies/solvers.py)
            return self._fit()

    def _fit(self) -> dict:
        ended = ended_run(self.run_dir, self.config.epochs, self.settings)
        if ended is not None:
            return ended
        self._resume()
        if self.on_resumable is not None and (self.dist is None or self.dist.is_main):
            self.on_resumable()
        self._write_summary("running")
        # the outcome is written inside the block too: a stop signal that comes again meanwhile (Ctrl-C
        # reaches a rank twice, from the terminal and from the launcher) is ignored, not raised mid-write
        with interrupt_on_signals():
            try:
                while self.epoch < self.config.epochs:
                    self.train_epoch()
                    self.end_epoch()
            except Diverged as err:
                log.error("%s; the run is marked diverged, its history kept in %s", err, self.run_dir)
                return self._write_summary("diverged", diverged_at_step=err.step, diverged_epoch=err.epoch,
                                           diverged_tasks=err.tasks)
            except KeyboardInterrupt as err:
                self._stop(err)
            except Exception as err:
                try:
                    self._write_summary("failed", error=f"{type(err).__name__}: {err}")
                except Interrupted as stop:  # a stop signal handled only now: in a distributed run a
                    self._stop(stop)         # collective fails when a peer stopped first, then the signal runs
                raise
        return self._write_summary("completed")

    def _stop(self, err: KeyboardInterrupt) -> NoReturn:
        """Mark the run interrupted (its last finished epoch is checkpointed) and raise the stop."""
        stop = err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT)
        # its steps are those of the finished epochs (a resume redoes the unfinished one's)
        self._write_summary("interrupted", signal=stop.name, steps=self.checkpointed_step)
        raise stop from None

    # ------------------------------------------------------------------------------ training
    def train_epoch(self) -> None:
        """Train one epoch over the training split (no evaluation: :meth:`end_epoch` evaluates,
        logs and checkpoints it)."""
        self.model.train()
        T = len(self.tasks)
        loss_sum = torch.zeros(T, device=self.device)
        weight_sum = torch.zeros(T, device=self.device)
        nonfinite_step = torch.full((), -1, dtype=torch.long, device=self.device)
        # the first non-finite step's losses and weights (NaN until then): which task, and a record of it
        nonfinite_values = torch.full((2, T), math.nan, device=self.device)
        step_records: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        batches = 0
        started, cpu_started = time.perf_counter(), time.process_time()
        for x, targets in self._progress(self.benchmark.train, f"epoch {self.epoch + 1}/{self.config.epochs}"):
            x, targets = self.to_device(x, targets)
            t0 = self.timer.start()
            losses, weights = self.train_step(x, targets)
            self.timer.stop(t0)
            self.step += 1
            batches += 1
            loss_sum += losses
            weight_sum += weights
            first_bad = ~torch.isfinite(losses).all() & (nonfinite_step < 0)
            nonfinite_step = torch.where(first_bad, self.step, nonfinite_step)
            nonfinite_values = torch.where(first_bad, torch.stack([losses, weights.to(losses.dtype)]),
                                           nonfinite_values)
            if self.step % self.config.log_interval == 0:
                # copies: a strategy may hand out its own buffer (DWA's), which on_epoch_end changes
                step_records.append((self.step, losses.detach().clone(), weights.detach().clone()))
                self._check_finite(nonfinite_step, nonfinite_values, step_records)
        self._check_finite(nonfinite_step, nonfinite_values, step_records)
        self.epoch_seconds.append(time.perf_counter() - started)
        if self.device.type == "cpu":
            self.epoch_cpu_seconds.append(time.process_time() - cpu_started)
        self.timer.collect()
        if self.scheduler is not None:
            self.scheduler.step()
        mean_losses = loss_sum / max(batches, 1)
        self.strategy.on_epoch_end(self.epoch, mean_losses)
        self._pending_train = (mean_losses, weight_sum / max(batches, 1), step_records)

    def to_device(self, x, targets):
        """Batches of streaming loaders arrive on the CPU; resident ones are already in place."""
        if x.device == self.device:
            return x, targets
        return (x.to(self.device, non_blocking=True),
                {k: v.to(self.device, non_blocking=True) for k, v in targets.items()})

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def train_step(self, x, targets) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on the batch ``(x, targets)`` (on the run's device): ``(task losses,
        weights)``, both [T] tensors left on the device. The step counter is the caller's."""
        losses, weights, passes = training_step(self.model, self.strategy, self.backend, self.optimizer,
                                                self.tasks, x, targets, autocast=self._autocast,
                                                probe=self.diagnostics.probe(self.step + 1), dist=self.dist)
        self.encoder_passes += passes
        return losses, weights

    def _evaluate_losses(self, x, targets) -> torch.Tensor:
        return evaluate_losses(self.model, self.tasks, x, targets, self._autocast)

    def _check_finite(self, nonfinite_step: torch.Tensor, nonfinite_values: torch.Tensor, step_records: list) -> None:
        """Raise :class:`Diverged` once a loss was not finite, keeping the epoch's step records and
        writing the first non-finite step's own record (the step the message names)."""
        step = int(nonfinite_step)
        if step < 0:
            return
        losses, weights = nonfinite_values
        tasks = [t.name for t, loss in zip(self.tasks, losses.tolist()) if not math.isfinite(loss)]
        logged = [item for item in step_records if item[0] != step]
        records = sorted([*logged, (step, losses, weights)], key=lambda item: item[0])
        self.metrics_log.append(self._step_records(self.epoch + 1, records)
                                + self.diagnostics.records(self.epoch + 1))
        raise Diverged(step, self.epoch + 1, tasks)

    def _step_records(self, epoch: int, step_records: list) -> list[dict]:
        records = []
        for step, losses, weights in step_records:
            for task, loss, w in zip(self.tasks, losses.tolist(), weights.tolist()):
                records.append(record(epoch, step, "train_step", task.name, "loss", loss))
                records.append(record(epoch, step, "train_step", task.name, "weight", w))
        return records

    # ---------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, batches) -> dict[str, dict[str, float]]:
        self.model.eval()
        metrics = {t.name: t.new_metrics() for t in self.tasks}
        if self.dist is not None:
            from .distributed import ShardedBatches

            batches = ShardedBatches(batches, self.dist)
        for x, targets in batches:
            x, targets = self.to_device(x, targets)
            with self._autocast():
                preds = self.model(x)
            preds = {name: p.float() for name, p in preds.items()}
            for task in self.tasks:
                for metric in metrics[task.name]:
                    metric.update(preds[task.name], targets[task.name])
        if self.dist is not None:  # the split's sums, counts and confusion matrices over all ranks
            for ms in metrics.values():
                for metric in ms:
                    self.dist.reduce_metric(metric)
        keys = [(task, m.name) for task, ms in metrics.items() for m in ms]
        values = torch.stack([m.compute().to(self.device, torch.float64) for ms in metrics.values() for m in ms])
        values = values.tolist()  # the one host sync of the evaluation
        out: dict[str, dict[str, float]] = {t.name: {} for t in self.tasks}
        for (task, name), value in zip(keys, values):
            out[task][name] = value
        return out

    def end_epoch(self) -> None:
        """Evaluate the epoch :meth:`train_epoch` trained, log it, checkpoint it, update summary.json."""
        mean_losses, mean_weights, step_records = self._pending_train
        evaluation = {split: self.evaluate(batches) for split, batches in self.benchmark.splits().items()}
        epoch = self.epoch + 1
        train_losses = mean_losses.tolist()
        train_weights = mean_weights.tolist()
        records = self._step_records(epoch, step_records) + self.diagnostics.records(epoch)
        evaluation = {"train": {t.name: {"loss": l, "weight": w} for t, l, w in zip(self.tasks, train_losses, train_weights)},
                      **evaluation}
        for split, tasks in evaluation.items():
            for task, metrics in tasks.items():
                for name, value in metrics.items():
                    records.append(record(epoch, self.step, split, task, name, value))
        if self.dist is not None:
            self.dist.end_epoch(self.model)
        with deferred_signals():  # the epoch's history, checkpoint and summary agree when a signal comes
            self.metrics_log.append(records)
            self.history[epoch] = evaluation
            self.epoch = epoch
            if self.config.checkpoint and (self.dist is None or self.dist.is_main):
                save_checkpoint(self.run_dir / CHECKPOINT_FILE, self._state())
            self.checkpointed_step = self.step
            self._write_summary("running")
        log.info("epoch %d/%d %s", epoch, self.config.epochs, _brief(evaluation))

    # ----------------------------------------------------------------------- checkpointing
    def _state(self) -> dict:
        train = self.benchmark.train
        return {
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "strategy": self.strategy.state_dict(),
            "rng": rng_state(),
            "train_loader": train.state_dict() if hasattr(train, "state_dict") else None,
            "history": self.history,
            "settings": self.settings,
            "cost": {"step_seconds": self.timer.seconds, "epoch_seconds": self.epoch_seconds,
                     "epoch_cpu_seconds": self.epoch_cpu_seconds,
                     "encoder_passes": self.encoder_passes},
            "gradient_backend": self.backend.state_dict(),
            **({"distributed": self.dist.checkpoint_state()} if self.dist is not None else {}),
        }

    def _resume(self) -> None:
        path = self.run_dir / CHECKPOINT_FILE
        if self.dist is None or self.dist.is_main:  # copies a kill left half-written (save_checkpoint)
            for stale in self.run_dir.glob(f".{CHECKPOINT_FILE}.tmp*"):
                stale.unlink(missing_ok=True)
        if not path.exists():
            self.metrics_log.truncate_after(0)
            return
        state = load_checkpoint(path, map_location=self.device)
        check_settings(self.run_dir, state.get("settings"), self.settings)  # the run there must be this one
        self._check_epochs(state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.strategy.load_state_dict(state["strategy"])
        set_rng_state(on_host(state["rng"]))
        if state["train_loader"] is not None and hasattr(self.benchmark.train, "load_state_dict"):
            self.benchmark.train.load_state_dict(on_host(state["train_loader"]))
        self.epoch, self.step, self.history = state["epoch"], state["step"], state["history"]
        self.checkpointed_step = self.step
        self.timer.seconds = list(state["cost"]["step_seconds"])
        self.epoch_seconds = list(state["cost"]["epoch_seconds"])
        self.epoch_cpu_seconds = list(state["cost"].get("epoch_cpu_seconds", []))  # absent before 0.2
        self.encoder_passes = state["cost"]["encoder_passes"]
        self.backend.load_state_dict(state.get("gradient_backend", {}))
        if self.dist is not None:
            self.dist.load_checkpoint_state(on_host(state.get("distributed")))
        self.metrics_log.truncate_after(self.epoch)
        log.info("resuming %s after epoch %d (step %d)", self.run_dir, self.epoch, self.step)

    def _check_epochs(self, state: dict) -> None:
        """A resumed run may be given more epochs (README "Resume a single run"), never fewer than it
        has trained, and not when its learning-rate schedule is laid out over them (cosine)."""
        done, epochs = state["epoch"], self.config.epochs
        if done > epochs:
            raise SettingsMismatch(
                f"{self.run_dir} has trained {done} epochs; trainer.epochs={epochs} is fewer. Resume it with "
                f"trainer.epochs={done} or more, or start this one in a fresh folder (hydra.run.dir=...)")
        stored = ((state.get("settings") or {}).get("trainer") or {}).get("epochs")
        if isinstance(stored, int) and stored != epochs:
            before = scheduler_node(dataclasses.replace(self.config, epochs=stored))
            if before != scheduler_node(self.config):
                raise SettingsMismatch(
                    f"{self.run_dir}: trainer.epochs {stored} -> {epochs} changes the learning-rate schedule "
                    f"(trainer.scheduler={self.config.scheduler} is laid out over the epochs), so the run would "
                    f"follow neither schedule. Resume it with trainer.epochs={stored}, or train {epochs} epochs in "
                    f"a fresh folder (hydra.run.dir=...)")

    # ----------------------------------------------------------------------------- summary
    def _check_selection(self) -> None:
        """Reject a selection rule this benchmark cannot satisfy before any epoch is trained."""
        check_selection(self.selection, list(self.benchmark.splits()), self._directions())

    def _directions(self) -> dict[str, dict[str, bool]]:
        return {t.name: dict(t.metric_directions) for t in self.tasks}

    def _safe_selection(self) -> dict:
        """The selection for the summary; a selection error is reported there, never lost."""
        if not self.history:
            return {}
        try:
            return self._selection()
        except ValueError as err:
            return {"error": str(err)}

    def _selection(self) -> dict:
        return run_selection(self.selection, self.history, self._directions())

    def _write_summary(self, status: str, **extra) -> dict:
        steps = max(self.step, 1)
        summary = {
            "status": status,
            "identity": self.identity,
            # metric -> higher_is_better per task, so the report layer knows directions without torch
            "directions": {t.name: t.metric_directions for t in self.tasks},
            "epochs": self.config.epochs,
            "epochs_completed": self.epoch,
            "steps": self.step,
            "final": {s: v for s, v in self.history[self.epoch].items()} if self.epoch in self.history else {},
            "selected": self._safe_selection(),
            "cost": {
                "seconds_per_step_median": self.timer.median(),
                "seconds_per_epoch_mean": sum(self.epoch_seconds) / len(self.epoch_seconds) if self.epoch_seconds else None,
                # the report's time column: the median epoch after the first (one-off costs left out)
                "seconds_per_epoch_warm": warm_epoch_seconds(self.epoch_seconds),
                "seconds_total_train": sum(self.epoch_seconds),
                # CPU runs: process CPU time per epoch (all threads), which other processes on the
                # machine disturb far less than the wall clock (null on GPUs)
                "cpu_seconds_per_epoch_mean": (sum(self.epoch_cpu_seconds) / len(self.epoch_cpu_seconds)
                                               if self.epoch_cpu_seconds else None),
                "cpu_seconds_per_epoch_warm": warm_epoch_seconds(self.epoch_cpu_seconds),
                "epoch_seconds": self.epoch_seconds, "epoch_cpu_seconds": self.epoch_cpu_seconds,
                "peak_memory_mb": peak_memory_mb(self.device),
                "memory_kind": "cuda_allocated" if self.device.type == "cuda" else "process_max_rss",
                "encoder_backward_passes_per_step": self.encoder_passes / steps,
                "solver_calls": 0, "solver_failures": 0, **self.strategy.stats(),
                "vmap_chunk": self.backend.last_chunk,  # tasks per batched backward (0: loop; null: not used)
                # grad.method=auto, per device type and input shape: the path kept and the best timed step of each
                "grad_method_auto": self.backend.auto_decisions,
                **({"distributed": self.dist.cost()} if self.dist is not None else {}),
            },
            "versions": self.versions,
            "provenance": self.provenance,
            "started_at": self.started_at,
            "updated_at": time.time(),
            **extra,
        }
        if self.dist is None or self.dist.is_main:
            write_summary(self.run_dir, summary)
            self.metrics_log.summary(summary)
        return summary

    def _progress(self, iterable, desc: str):
        mode = self.config.progress
        disable = mode == "never" or (mode == "auto" and not sys.stderr.isatty())
        return tqdm(iterable, desc=desc, leave=False, disable=disable, dynamic_ncols=True)


def _brief(evaluation: dict) -> str:
    parts = []
    for split in ("val", "test"):
        for task, metrics in evaluation.get(split, {}).items():
            name, value = next(iter(metrics.items()))
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                parts.append(f"{split}/{task}/{name}={value:.4g}")
    return " ".join(parts)
