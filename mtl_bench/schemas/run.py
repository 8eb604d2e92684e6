"""Schemas of the run-wide groups: ``trainer``, ``grad``, ``protocol`` and the top-level ``seed``.

The optimiser and the scheduler are named (``trainer.optimizer=sgd``, ``trainer.scheduler=step``,
the spellings run folders are named by) or given as a Hydra ``_target_`` node of the user's own
class (docs/configuration.md#optimisers-and-schedulers); :data:`OPTIMIZERS` and
:data:`SCHEDULERS` map each name to the node it stands for (mtl_bench/train/optim.py builds them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .base import Schema, at_least, integer, number, one_of, optional, positive_integer, setting

#: optimiser name -> (its class, the trainer keys passed to it besides the parameter groups)
OPTIMIZERS = {"sgd": ("torch.optim.SGD", ("lr", "momentum", "weight_decay")),
              "adam": ("torch.optim.Adam", ("lr", "weight_decay")),
              "adamw": ("torch.optim.AdamW", ("lr", "weight_decay"))}
#: scheduler name -> (its class, {its argument: the trainer key that gives it}); none: no scheduler
SCHEDULERS = {"none": None,
              "step": ("torch.optim.lr_scheduler.StepLR", {"step_size": "step_size", "gamma": "gamma"}),
              "cosine": ("torch.optim.lr_scheduler.CosineAnnealingLR", {"T_max": "epochs"})}


def _named_or_target(names):
    return lambda v: (isinstance(v, str) and v in names) or (isinstance(v, dict) and isinstance(v.get("_target_"), str))


@dataclass
class DistributedConfig(Schema):
    """``trainer.distributed``: data-parallel training equal to one process (docs/distributed.md)."""

    GROUP = "trainer.distributed"
    nproc: int = setting(1, "an integer >= 1 (processes)", positive_integer,
                         ">1: mtl-bench starts this many local processes (CPU: gloo; GPUs: nccl, one each); "
                         "torchrun and SLURM set the processes themselves", example=2)
    sync_batchnorm: bool = setting(False, "true or false", None,
                                   "true: a distributed run's BatchNorm layers become torch.nn.SyncBatchNorm "
                                   "(statistics of the global batch, as in one process; CUDA only); false: "
                                   "each process normalises with its shard's statistics")


@dataclass
class TrainerConfig(Schema):
    """The ``trainer`` group (configs/trainer/*.yaml): optimisation and run mechanics."""

    GROUP = "trainer"
    epochs: int = setting(20, "an integer >= 1", positive_integer, "training epochs")
    batch_size: int = setting(100, "an integer >= 1", positive_integer,
                              "training batch size (evaluation uses it too unless a dataset says otherwise)",
                              example=256)
    optimizer: Any = setting("adam", "sgd, adam, adamw or a node {_target_: an optimiser class, its keys}",
                             _named_or_target(OPTIMIZERS),
                             "sgd | adam | adamw, or {_target_: torch.optim.RMSprop, alpha: 0.9} (lr: trainer.lr "
                             "unless the node sets it)", example="sgd")
    lr: float = setting(1e-3, "a number > 0", lambda v: number(v) and v > 0, "learning rate", example=0.01)
    momentum: float = setting(0.0, "a number in [0, 1)", lambda v: number(v) and 0 <= v < 1, "sgd only",
                              example=0.9)
    weight_decay: float = setting(0.0, "a number >= 0", at_least(0), "L2 weight decay of the named optimisers",
                                  example=0)
    scheduler: Any = setting("none", "none, step, cosine or a node {_target_: a scheduler class, its keys}",
                             _named_or_target(SCHEDULERS),
                             "none | step | cosine, or {_target_: torch.optim.lr_scheduler.ExponentialLR, "
                             "gamma: 0.95} (stepped once per epoch)", example="step")
    step_size: int = setting(30, "an integer >= 1 (epochs)", positive_integer,
                             "scheduler=step: epochs between decays")
    gamma: float = setting(0.5, "a number in (0, 1]", lambda v: number(v) and 0 < v <= 1,
                           "scheduler=step: decay factor")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N",
                          lambda v: v in ("auto", "cpu", "cuda") or (isinstance(v, str) and v.startswith("cuda:")),
                          "auto | cpu | cuda", example="cpu")
    log_interval: int = setting(50, "an integer >= 1 (steps)", positive_integer,
                                "steps between step-level loss/weight records")
    checkpoint: bool = setting(True, "true or false", None, "write checkpoint.pt after every epoch (needed to resume)")
    progress: str = setting("auto", *one_of("auto", "always", "never"), help="auto (tqdm on a terminal) | always | never",
                            example="never")
    deterministic: bool = setting(False, "true or false", None,
                                  "torch deterministic algorithms (exact resume, slower on GPUs)")
    precision: str = setting("fp32", *one_of("fp32", "bf16"),
                             help="fp32 | bf16 (autocast of the forward passes; on GPUs with bf16 support)")
    compile: bool = setting(False, "true or false", None, "torch.compile the encoder and heads")
    host_memory: str = setting("heap", *one_of("heap", "system"),
                               help="heap (freed host memory stays in the heap for the next step: no page faults "
                                    "per step) | system (malloc as it is); README, Sweeps, resuming and speed",
                               example="system")
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


@dataclass
class GradConfig(Schema):
    """The ``grad`` node of configs/config.yaml: how gradient methods get their per-task gradients."""

    GROUP = "grad"
    space: Optional[str] = setting(None, *one_of(None, "params", "representation", "last_shared_layer"),
                                   help="params | representation | last_shared_layer; null = the strategy's own "
                                        "default", example="params")
    method: str = setting("auto", *one_of("loop", "vmap", "auto"),
                          help="loop | vmap | auto (times both on the first steps of each input shape)")
    chunk_size: Optional[int] = setting(None, "null or an integer >= 1", optional(positive_integer),
                                        "tasks per batched backward (vmap); null = all at once", example=4)
    vmap_max_bytes: Optional[int] = setting(2**31, "null or an integer >= 1 (bytes)", optional(positive_integer),
                                            "bound on the estimated memory of one batched backward; null = none")


@dataclass
class DiagnosticsConfig(Schema):
    """The ``diagnostics`` node of configs/config.yaml: gradient diagnostics (docs/trackers.md)."""

    GROUP = "diagnostics"
    every: Optional[int] = setting(None, "null or 0 (off) or an integer >= 1 (steps)",
                                   optional(lambda v: integer(v) and v >= 0),
                                   "gradient diagnostics every K steps; null or 0 = off", example=50)


@dataclass
class SelectionConfig(Schema):
    """``protocol.selection``: which epoch a run reports (docs/protocols.md, model selection)."""

    GROUP = "protocol.selection"
    rule: str = setting("last", *one_of("last", "best", "mean_last_k", "delta_m"),
                        help="last | best | mean_last_k | delta_m")
    split: str = setting("val", *one_of("val", "test"), help="split the rule reads (val; test only when named)")
    metric: Optional[str] = setting(None, "null or 'TASK/METRIC' or 'mean/METRIC'",
                                    optional(lambda v: isinstance(v, str) and "/" in v),
                                    "'task/metric' or 'mean/metric' scored by rule=best", example="mean/accuracy")
    k: int = setting(10, "an integer >= 1 (epochs)", positive_integer, "epochs averaged by rule=mean_last_k")
    average: str = setting("metric", *one_of("metric", "task"), help="rule=delta_m: Delta_m averaged per metric or task")


@dataclass
class ProtocolConfig(Schema):
    """The ``protocol`` group (configs/protocol/*.yaml)."""

    GROUP = "protocol"
    selection: SelectionConfig = field(default_factory=SelectionConfig)


@dataclass
class TopLevelConfig(Schema):
    """Keys of configs/config.yaml itself (checked after composition: the file's other nodes are groups)."""

    GROUP = ""
    seed: int = setting(0, "an integer", integer, "the run's seed: initialisation, data order, dropout, "
                        "random weightings")
