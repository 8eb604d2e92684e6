"""Build and run one experiment from a composed config (the Python face of ``mtl-bench run``)."""
from __future__ import annotations

import dataclasses
import logging
import platform
import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .. import __version__
from ..data import build_benchmark
from ..models import build_model
from ..schemas import ProtocolConfig, TrainerConfig
from ..schemas.check import typed_node
from ..strategies import strategy_from_config
from . import host_memory
from .diagnostics import GradientDiagnostics
from .gradients import GradientBackend
from .provenance import library_versions, provenance
from .run_dir import read_summary, write_summary
from .signals import Interrupted, interrupt_on_signals
from .trackers import build_trackers, close_trackers
from .trainer import Trainer

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("trainer.device=cuda but no CUDA GPU is visible; use trainer.device=auto or cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"trainer.device={name!r}: choose auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def strategy_hparams(strategy_cfg: DictConfig) -> dict:
    """The strategy node minus its identity keys (``name``, ``_target_``, ``space``)."""
    from ..plugins import node_params

    return node_params(strategy_cfg, drop=("space",))


def versions() -> dict:
    import hydra

    return {"mtl_bench": __version__, "torch": torch.__version__, "hydra": hydra.__version__,
            "python": platform.python_version(), **library_versions(("numpy", "scipy", "quadprog"))}


def run_experiment(cfg: DictConfig, run_dir: str | Path, on_resumable=None) -> dict:
    """Train the configured run into ``run_dir`` (resuming when it holds a checkpoint).

    ``on_resumable()`` is called once the run dir is accepted (a checkpoint of other settings is
    refused before it), before anything is written there."""
    from . import distributed
    from .distributed import check_sync_batchnorm, environment, launch_local, setup

    config = typed_node(cfg.trainer, TrainerConfig)  # the validated trainer node itself (mtl_bench/schemas)
    nproc = config.distributed.nproc
    env = environment()
    joined = torch.distributed.is_available() and torch.distributed.is_initialized()
    processes = torch.distributed.get_world_size() if joined else env["world"] if env else nproc
    check_sync_batchnorm(config.distributed.sync_batchnorm, resolve_device(config.device), processes, joined)
    if nproc > 1 and env is None and not joined:
        device = resolve_device(config.device)
        if device.type == "cuda" and nproc > torch.cuda.device_count():
            raise ValueError(f"trainer.distributed.nproc={nproc} needs one GPU per process, and "
                             f"{torch.cuda.device_count()} are visible; lower it, or use trainer.device=cpu")
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))  # no Hydra resolvers in the ranks
        try:
            return launch_local(nproc, _rank_of_local_run, (resolved, str(run_dir), on_resumable),
                                cpu=device.type == "cpu")
        except Interrupted as stop:
            if stop.how:  # a rank was killed outright: rank 0 could not say so (or died before it could)
                _mark_ended(Path(run_dir), status="interrupted", signal=stop.name, stopped_by=stop.how)
            raise
        except distributed.RankCrashed as crash:
            _mark_ended(Path(run_dir), status="failed", error=f"{type(crash).__name__}: {crash}")
            raise
    seed_everything(cfg.seed, config.deterministic)
    # context: None unless launched as several processes (torchrun, SLURM tasks); device: this rank's
    context, device = setup(resolve_device(config.device))
    if context is not None:  # every rank trains into rank 0's folder (Hydra's may differ by a timestamp)
        run_dir = context.broadcast_object(str(run_dir))
    # before any data is loaded: a tracker whose package is missing is refused at once (rank 0 only logs)
    settings = run_settings(cfg)
    trackers = build_trackers(settings.get("logger") if context is None or context.is_main else None, Path(run_dir),
                              settings, run_name=f"{cfg.strategy.get('name')} seed={cfg.seed} ({Path(run_dir).name})")
    try:
        with interrupt_on_signals():  # a stop while the data and the model are built ends as one in training
            trainer = build_trainer(cfg, run_dir, device, on_resumable=on_resumable, trackers=trackers, dist=context)
        return trainer.fit()
    finally:
        close_trackers(trackers)
        if context is not None and not joined:  # the group this run made ends with it
            torch.distributed.destroy_process_group()
            distributed.ended_a_group()


def _mark_ended(run_dir: Path, **how) -> None:
    """The summary of a local distributed run whose rank was killed or crashed, updated with
    ``how`` it ended (rank 0 could not say it: it wrote ``running`` at its last finished epoch if it
    was the one that died, ``interrupted`` by the SIGTERM torch sent the survivors, or ``failed``
    when a collective broke first; its epochs, steps and checkpoint are its last finished epoch's)."""
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") in ("running", "interrupted", "failed"):
        summary.pop("signal", None)
        summary.update(how)
        write_summary(run_dir, summary)


def run_settings(cfg: DictConfig) -> dict:
    """The run's resolved config without Hydra's node: what checkpoints compare on resume."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    settings.pop("hydra", None)
    return settings


def build_trainer(cfg: DictConfig, run_dir: str | Path, device: torch.device | None = None, *, on_resumable=None,
                  trackers=None, dist=None) -> Trainer:
    """The whole run from a composed config, ready to ``fit()``: benchmark, model, strategy, gradient
    backend, diagnostics and the :class:`Trainer` with the run's identity and settings. The one builder
    of ``mtl-bench run``, the Python API (:func:`mtl_bench.run`) and scripts/. ``device``: the
    config's ``trainer.device`` when None. Seeding is the caller's (:func:`seed_everything`)."""
    config = typed_node(cfg.trainer, TrainerConfig)
    selection = dataclasses.asdict(typed_node(cfg.protocol, ProtocolConfig).selection)
    device = resolve_device(config.device) if device is None else device
    held = host_memory.apply(config.host_memory)  # before the data and the model take their memory
    benchmark = build_benchmark(cfg.dataset, batch_size=config.batch_size, seed=cfg.seed)
    model = build_model(cfg.model, benchmark)
    if dist is not None and config.distributed.sync_batchnorm:  # before the optimiser is built on it
        from .distributed import sync_batchnorm

        model = sync_batchnorm(model)
    n_tasks = len(benchmark.tasks)
    strategy = strategy_from_config(cfg.strategy, n_tasks)
    # grad.space on the command line, else a strategy variant's own `space`, else the strategy's default
    space = cfg.grad.space or cfg.strategy.get("space") or strategy.default_space
    backend = GradientBackend(space=space, method=cfg.grad.method, chunk_size=cfg.grad.get("chunk_size"),
                              vmap_max_bytes=cfg.grad.get("vmap_max_bytes", 2**31))
    identity = {
        "dataset": cfg.dataset.get("name") or benchmark.name,
        "model": cfg.model.get("name") or cfg.model.get("_target_"),
        "strategy": cfg.strategy.get("name") or cfg.strategy.get("_target_"),
        "loss_weighting": strategy_hparams(cfg.strategy).get("loss_weighting"),
        "seed": int(cfg.seed),
        "tasks": benchmark.task_names,
        "grad_space": space if strategy.level == "gradient" else None,
        "grad_method": cfg.grad.method if strategy.level == "gradient" else None,
        "device": str(device),
        "data": {k: v for k, v in benchmark.info.items() if isinstance(v, (str, int, float, dict, list))},
    }
    diagnostics = GradientDiagnostics((cfg.get("diagnostics") or {}).get("every"), benchmark.task_names)
    return Trainer(model, benchmark, strategy, config, Path(run_dir), device, backend, identity, versions(),
                   settings=run_settings(cfg), on_resumable=on_resumable,
                   provenance={**provenance(device), "host_memory": {"setting": config.host_memory, "set": held}},
                   selection=selection, diagnostics=diagnostics, trackers=trackers, dist=dist)


def _rank_of_local_run(cfg, run_dir: str, on_resumable, rank: int) -> dict:
    """One of the ``trainer.distributed.nproc`` processes of a run launched by mtl-bench itself."""
    return run_experiment(cfg, run_dir, on_resumable=on_resumable if rank == 0 else None)
