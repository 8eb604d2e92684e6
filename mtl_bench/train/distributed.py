"""Data-parallel training over several processes that equals the one-process run.

W processes (ranks) each take a shard of every global batch of B examples (rank r: a contiguous
slice of n_r rows, ``torch.tensor_split`` sizes, so sum_r n_r = B) and end every step with the
parameters that one process would have after the same step on the whole batch. A task loss is a
mean over the m_ri elements it counts in rank r's shard (examples; labelled examples or valid
pixels for masked losses: ``Task.loss_count``), so with ``a_ri = m_ri / sum_r m_ri`` the global
task loss and its gradient are

    L_i = sum_r a_ri L_i^r,        dL_i/dtheta = sum_r a_ri dL_i^r/dtheta.

Surrogate losses make every strategy exact without knowing what it does with the losses: each
rank differentiates ``s_i^r = W a_ri L_i^r + (L_i - W a_ri L_i^r).detach()``, whose value is the
global loss L_i (identical on every rank, so every strategy computes the same weights, state,
transformed losses ``f(L_i)`` - DB-MTL's log - and learned loss weights) and whose gradient is
``W a_ri dL_i^r``, so that for any ``f``: ``mean_r d f(s_i^r) = f'(L_i) dL_i/dtheta``. Hence
everything a rank differentiates is W times its share of the global quantity, and:

- loss weightings: one backward of ``combine(s^r)``, then the mean over ranks of the model's
  gradients (one all-reduce of the gradient vector); the strategy's own parameters see identical
  gradients on every rank and are not reduced.
- ``grad.space=params`` and ``last_shared_layer``: the per-task rows are means over ranks
  (``J = mean_r J^r``: one all-reduce of T x P numbers); the Gramian ``J J^T`` and the update
  ``w^T J`` follow on every rank identically; only the heads' gradients (and, for
  ``last_shared_layer``, the encoder's after the one weighted backward) are all-reduced after.
  This also serves Jacobian aggregators (GradDrop, DB-MTL) in ``params``: they get the global rows.
- ``grad.space=representation``: the rows of the global batch are the ranks' blocks ``dL_i/dz_b``
  side by side, each rank's block being ``z_grads^r / W`` (``dL_i/dz_b = a_ri dL_i^r/dz_b``).
  Hence the global Gramian is
  ``G = sum_r (1/W^2) Z^r Z^r^T`` (Z^r: the rank's T x (n_r D) rows of the surrogates): an
  all-reduce of T^2 numbers. The update ``sum_i w_i z_grads^r_i`` is W times the rank's block of
  the global one; the encoder backward of it, then the mean over ranks, gives the exact gradient.
  Jacobian aggregators in this space (GradDrop: a sum over the batch, per-feature draws) get the
  gathered global rows and representation, and each rank backpropagates W times its own block of
  their update.

We do not wrap the model in torch's DistributedDataParallel: its reducer all-reduces during every
backward, and gradient methods run several backward passes of which only the gradients of the
final update must be reduced (a hook that reduces rows is exactly what the explicit all-reduce
here does, with no ``no_sync`` bookkeeping). One all-reduce of the flattened gradients after the
step's backward is exact and simple; the cost is that communication does not overlap the backward.

Random draws of strategies (RLW's weights, PCGrad's order, GradDrop's U) come from torch's global
generator, seeded identically on every rank and consumed identically (same shapes): they agree,
and equal the one-process run's. Forward passes (dropout) draw from a generator state of their
own rank (:class:`RankRandomness`), swapped in around the encoder's and the heads' forward: the
ranks' masks are independent, and shards of unequal size cannot make the shared draws drift apart.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..data.tasks import RatioKPI
from .signals import Interrupted, handling, interrupt_on_signals, take_noted_stop


def environment() -> dict | None:
    """Rank, world size and local rank from the environment, or None for one process.

    torchrun (and submitit's ``TorchDistributedEnvironment().export()``) set ``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Inside a SLURM job of
    several tasks without them (the submitit launcher, or ``srun``), submitit's helper exports
    them from ``SLURM_*`` (rank 0's host as ``MASTER_ADDR``, a port drawn from the job id);
    ``LOCAL_RANK`` then picks this task's GPU among the node's."""
    env = os.environ
    slurm = int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env
    local = int(env.get("SUBMITIT_LOCAL_NTASKS", "1")) > 1 and "SUBMITIT_LOCAL_GLOBALID" in env  # slurm_local
    if "RANK" not in env and (slurm or local):
        try:
            from submitit.helpers import TorchDistributedEnvironment

            env.setdefault("SUBMITIT_EXECUTOR", "slurm")  # srun without submitit: read SLURM_* all the same
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        except (ImportError, RuntimeError) as err:
            tasks = env.get("SLURM_NTASKS") or env.get("SUBMITIT_LOCAL_NTASKS")
            raise ValueError(f"a job of {tasks} tasks needs submitit to set up the process group ({err}); "
                             "pip install submitit, or run one task per job") from None
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    world = int(env["WORLD_SIZE"])
    if world <= 1:
        return None
    return {"rank": int(env["RANK"]), "world": world, "local_rank": int(env.get("LOCAL_RANK", "0"))}


def setup(device: torch.device) -> "tuple[DistContext | None, torch.device]":
    """The process group of this run (joined from the environment, or the one already joined)
    and this process's device (``cuda:LOCAL_RANK`` for a CUDA run), or ``(None, device)`` for a
    one-process run. Backend: nccl on CUDA, gloo on the CPU."""
    if dist.is_available() and dist.is_initialized():
        device = local_device(device)
        return DistContext(dist.get_rank(), dist.get_world_size(), device), device
    env = environment()
    if env is None:
        return None, device
    device = local_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=env["rank"], world_size=env["world"],
                            timeout=datetime.timedelta(minutes=30))
    return DistContext(env["rank"], env["world"], device), device


def check_sync_batchnorm(enabled: bool, device: torch.device, processes: int, joined: bool = False) -> None:
    """Refuse ``trainer.distributed.sync_batchnorm=true`` on a distributed CPU run (``processes``
    > 1, or a process group already joined), before any process starts: torch's SyncBatchNorm
    normalises CUDA inputs only (it raises on CPU inputs whenever a process group exists)."""
    if enabled and (processes > 1 or joined) and device.type != "cuda":
        raise ValueError(f"trainer.distributed.sync_batchnorm=true needs CUDA (torch's SyncBatchNorm refuses CPU "
                         f"inputs), and this run of {processes} processes is on {device.type}; set "
                         "trainer.distributed.sync_batchnorm=false (batch norm then uses each process's shard "
                         "statistics) or train on GPUs")


def sync_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its ``BatchNorm{1,2,3}d`` layers as :class:`torch.nn.SyncBatchNorm`, whose
    training-mode mean and variance are those of the global batch (the ranks' sums and counts
    all-reduced in every forward) - the one-process statistics - instead of each shard's. The
    layers keep their parameters and buffers (the same tensors: an optimiser built on them still
    holds them); evaluation uses the running statistics as before."""
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def local_device(device: torch.device) -> torch.device:
    """One GPU per process: ``cuda:LOCAL_RANK`` when the run uses CUDA without an index."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


@dataclass
class DistContext:
    """This process's rank in a group of ``world`` processes and the step's exact reductions."""

    rank: int
    world: int
    device: torch.device
    train_steps: int = 0            # training batches this process took part in
    bytes_reduced: int = 0          # bytes the training steps all-reduced or gathered (this rank's payloads)
    seconds_communicating: float = 0.0  # wall time of the training steps in collectives
    bytes_outside_steps: int = 0    # evaluation's metric reductions, end-of-epoch checks
    seconds_outside_steps: float = 0.0
    randomness: "RankRandomness | None" = field(default=None, repr=False)  # set by attach()
    rng_states: list | None = field(default=None, repr=False)  # every rank's, gathered at epoch ends
    _share: float = field(default=0.0, repr=False)         # a_r = n_r / B of the current batch
    _sizes: list = field(default_factory=list, repr=False)  # n_r of every rank for the current batch

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---------------------------------------------------------------------------- sharding
    def shard(self, x: torch.Tensor, targets: dict) -> tuple[torch.Tensor, dict]:
        """This rank's contiguous slice of a global batch; remembers the shard sizes."""
        n = x.shape[0]
        self._sizes = [len(part) for part in torch.arange(n).tensor_split(self.world)]
        lo = sum(self._sizes[: self.rank])
        hi = lo + self._sizes[self.rank]
        self._share = self._sizes[self.rank] / max(n, 1)
        return x[lo:hi], {k: v[lo:hi] for k, v in targets.items()}

    # ---------------------------------------------------------------------------- collectives
    def _all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        dist.all_reduce(tensor)
        self.seconds_communicating += time.perf_counter() - start
        self.bytes_reduced += tensor.numel() * tensor.element_size()
        return tensor

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return self._all_reduce(tensor.detach().clone())

    def gather_batch(self, tensor: torch.Tensor) -> torch.Tensor:
        """The global batch of a per-example tensor (rows in rank order), on every rank."""
        pad = max(self._sizes) - tensor.shape[0]
        padded = torch.cat([tensor, tensor.new_zeros((pad, *tensor.shape[1:]))]) if pad else tensor
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        start = time.perf_counter()
        dist.all_gather(parts, padded.contiguous())
        self.seconds_communicating += time.perf_counter() - start
        self.bytes_reduced += padded.numel() * padded.element_size() * self.world
        return torch.cat([part[:n] for part, n in zip(parts, self._sizes)])

    def global_kpis(self, kpis, tasks, preds, targets: dict) -> torch.Tensor:
        """``kpis(tasks, preds, targets)`` of the global batch. When every task's KPI is a
        :class:`~mtl_bench.data.tasks.RatioKPI` (every built-in task's), from the sums of the
        shards: one all-reduce of 2T numbers (in float64). Otherwise a KPI need not be
        a function of sums over the examples, so the detached predictions and targets are
        gathered and the KPIs computed on the whole batch."""
        if all(isinstance(getattr(task, "kpi", None), RatioKPI) for task in tasks):
            sums = torch.stack([task.kpi.sums(pred.detach(), targets[task.name]).double()
                                for task, pred in zip(tasks, preds)])
            total = self.sum(sums)
            return torch.stack([task.kpi.from_sums(s).reshape(()).float() for task, s in zip(tasks, total)])
        preds = [self.gather_batch(p.detach()) for p in preds]
        targets = {t.name: self.gather_batch(targets[t.name]) for t in tasks}
        return kpis(tasks, preds, targets)

    def global_values(self, losses: torch.Tensor, tasks, targets: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, a)``: the global batch's task losses ``L_i = sum_r a_ri L_i^r`` from this rank's
        [T] losses, and this rank's shares ``a_ri = m_ri / M_i`` (one all-reduce of 3T numbers).

        ``m_ri`` is the number of elements task i's loss averages over in this shard
        (``Task.loss_count``: labelled examples, valid pixels), so that a loss masked with
        ``IGNORE`` or invalid pixels is the mean over the labelled elements of the whole batch,
        as in one process; tasks without ``loss_count``, and a task with no labelled element in
        the whole batch, weight the shards by their examples (``a_r = n_r / B``)."""
        losses = losses.detach()
        counts = torch.stack([
            (t.loss_count(targets[t.name]) if getattr(t, "loss_count", None) is not None
             else torch.full((), self._sizes[self.rank], device=losses.device)).to(losses.dtype).reshape(())
            for t in tasks])
        # a shard with nothing to average (an empty shard of a last batch smaller than the ranks, no
        # labelled element) has a NaN loss (0 / 0): it adds nothing, not NaN times 0
        present = counts > 0
        zero = torch.zeros_like(losses)
        sums = self.sum(torch.stack([torch.where(present, counts * losses, zero), counts,
                                     torch.where(present, losses * self._share, zero)]))
        labelled = sums[1] > 0
        total = torch.where(labelled, sums[0] / sums[1].clamp_min(1), sums[2])
        share = torch.where(labelled, counts / sums[1].clamp_min(1), torch.full_like(counts, self._share))
        return total, share

    def global_losses(self, losses, tasks, targets: dict):
        """Surrogates of the task losses (a [T] tensor or a list of scalars): value the global
        loss ``L_i``, gradient ``W a_ri`` times the rank's own (see the module docstring)."""
        stacked = torch.stack([loss.reshape(()) for loss in losses]) if isinstance(losses, (list, tuple)) else losses
        total, share = self.global_values(stacked, tasks, targets)
        weight = (self.world * share).to(stacked.dtype)
        local = torch.where(weight > 0, stacked * weight, torch.zeros_like(stacked))  # an empty shard's NaN: 0
        surrogate = local + (total.to(local.dtype) - local).detach()
        return list(surrogate.unbind()) if isinstance(losses, (list, tuple)) else surrogate

    def average_gradients(self, params) -> None:
        """The mean over ranks of the ``.grad`` of ``params`` (one all-reduce of them all)."""
        params = [p for p in params if p.grad is not None]
        if not params:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        self._all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p)
            offset += n

    def mean_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """``mean_r J^r`` of per-task gradient rows of parameters (in place)."""
        self._all_reduce(rows)
        return rows.div_(self.world)

    def representation_gramian(self, rows: torch.Tensor) -> torch.Tensor:
        """``G = sum_r Z^r Z^r^T / W^2`` from this rank's T x (n_r D) surrogate rows."""
        return self._all_reduce(rows @ rows.T).div_(self.world**2)

    def gather_rows(self, rows: torch.Tensor, representation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch's representation rows ``[T, B*D]`` (each rank's block divided by W)
        and representation ``[B, ...]``, gathered in rank order (shards padded to the largest)."""
        T = rows.shape[0]
        feature = representation.shape[1:]
        n, d = self._sizes[self.rank], math.prod(feature)  # sizes given: an empty shard has no -1 to infer
        pad = max(self._sizes) - n
        padded_rows = torch.nn.functional.pad(rows.reshape(T, n, d), (0, 0, 0, pad))
        padded_z = torch.nn.functional.pad(representation.reshape(n, d), (0, 0, 0, pad))
        start = time.perf_counter()
        all_rows = [torch.empty_like(padded_rows) for _ in range(self.world)]
        all_z = [torch.empty_like(padded_z) for _ in range(self.world)]
        dist.all_gather(all_rows, padded_rows.contiguous())
        dist.all_gather(all_z, padded_z.contiguous())
        self.seconds_communicating += time.perf_counter() - start
        self.bytes_reduced += (padded_rows.numel() * padded_rows.element_size()
                               + padded_z.numel() * padded_z.element_size()) * self.world
        rows_global = torch.cat([r[:, :n] for r, n in zip(all_rows, self._sizes)], dim=1) / self.world
        z_global = torch.cat([z[:n] for z, n in zip(all_z, self._sizes)], dim=0)
        return rows_global.reshape(T, -1), z_global.reshape(-1, *feature)

    def own_block(self, update: torch.Tensor, feature_numel: int) -> torch.Tensor:
        """W times this rank's block of an update of the global batch's representation."""
        lo = sum(self._sizes[: self.rank]) * feature_numel
        return update[lo : lo + self._sizes[self.rank] * feature_numel] * self.world

    # ---------------------------------------------------------------------------- evaluation
    def reduce_metric(self, metric) -> None:
        """Sum a metric's accumulated state over ranks: tensors (sums, counts, confusion
        matrices) are summed, lists of tensors (values kept for a median) are gathered. Exact for
        every metric whose state is additive over examples."""
        with self._outside_steps():
            self._reduce_metric(metric)

    def _reduce_metric(self, metric) -> None:
        for name, value in list(vars(metric).items()):
            if isinstance(value, torch.Tensor):
                setattr(metric, name, self.sum(value))
            elif isinstance(value, list) and value and all(isinstance(v, torch.Tensor) for v in value):
                setattr(metric, name, [self.gather_vectors(torch.cat([v.reshape(-1) for v in value]))])

    def gather_vectors(self, vector: torch.Tensor) -> torch.Tensor:
        sizes = [torch.zeros(1, dtype=torch.long, device=vector.device) for _ in range(self.world)]
        start = time.perf_counter()
        dist.all_gather(sizes, torch.tensor([vector.numel()], device=vector.device))
        lengths = [int(s) for s in sizes]
        padded = torch.nn.functional.pad(vector, (0, max(lengths) - vector.numel()))
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        self.seconds_communicating += time.perf_counter() - start
        self.bytes_reduced += (padded.numel() * padded.element_size() + 8) * self.world
        return torch.cat([p[:n] for p, n in zip(parts, lengths)])

    @contextlib.contextmanager
    def _outside_steps(self):
        """Count the collectives inside into the ``*_outside_steps`` counters."""
        sent, seconds = self.bytes_reduced, self.seconds_communicating
        try:
            yield
        finally:
            self.bytes_outside_steps += self.bytes_reduced - sent
            self.seconds_outside_steps += self.seconds_communicating - seconds
            self.bytes_reduced, self.seconds_communicating = sent, seconds

    # ---------------------------------------------------------------------------- setup
    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Every rank starts from rank 0's parameters and buffers."""
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def broadcast_object(self, value):
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def end_epoch(self, module: torch.nn.Module) -> None:
        """At the end of an epoch: check that the ranks' parameters agree, and gather every rank's
        forward generator state for rank 0's checkpoint (:attr:`rng_states`)."""
        with self._outside_steps():
            self.check_in_step(module)
        if self.randomness is not None:
            states = [None] * self.world
            dist.all_gather_object(states, self.randomness.state())
            self.rng_states = states

    def checkpoint_state(self) -> dict:
        return {"world_size": self.world, "forward_rng": self.rng_states}

    def load_checkpoint_state(self, state: dict | None) -> None:
        """This rank's forward generator of the checkpointed run (when it had this many ranks;
        else each rank keeps its fresh one: the shared draws are unaffected)."""
        if state and state.get("world_size") == self.world and state.get("forward_rng") and self.randomness:
            self.randomness.load(state["forward_rng"][self.rank])

    def check_in_step(self, module: torch.nn.Module) -> None:
        """Raise when the ranks' parameters differ (one all-reduce of one number per tensor)."""
        sums = torch.stack([p.detach().double().sum() for p in module.parameters()])
        spread = self.sum(sums) / self.world - sums
        if bool(spread.abs().max() > 1e-6 * (1 + sums.abs().max())):
            raise RuntimeError(f"rank {self.rank}'s parameters left those of the other ranks")

    def cost(self) -> dict:
        """summary.json's ``cost.distributed``: the training steps this process took part in, the
        bytes it sent into their collectives per step and the wall time inside them (on CUDA the
        launch only: nccl is asynchronous), and the same for evaluation's reductions and the
        end-of-epoch checks."""
        return {"world_size": self.world, "steps_here": self.train_steps,
                "bytes_communicated_per_step": self.bytes_reduced / max(self.train_steps, 1),
                "seconds_communicating_in_steps": self.seconds_communicating,
                "bytes_outside_steps": self.bytes_outside_steps,
                "seconds_communicating_outside_steps": self.seconds_outside_steps}


class ShardedBatches:
    """The global batches of ``batches``, each cut to this rank's shard (see :meth:`DistContext.shard`).

    Every rank draws the same global batches (same loader, same seed: same order, same steps per
    epoch) and keeps its slice, so data order and augmentation equal the one-process run's.
    ``state_dict`` is the wrapped loader's (its generator)."""

    def __init__(self, batches, context: DistContext, training: bool = False):
        self.batches = batches
        self.context = context
        self.training = training

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for x, targets in self.batches:
            self.context.train_steps += self.training
            yield self.context.shard(x, targets)

    def __getattr__(self, name):  # num_examples, state_dict, load_state_dict, ...
        if name in ("batches", "context", "training"):
            raise AttributeError(name)
        return getattr(self.batches, name)


class RankRandomness:
    """Forward hooks on the encoder and the heads that swap in this rank's own generator state
    (CPU and, on CUDA, the device's) for the forward pass and restore the shared state after it.

    The rank's state starts from ``manual_seed(seed, rank)``; ``state()`` / ``load(state)``
    carry it through checkpoints (:meth:`DistContext.end_epoch` gathers every rank's)."""

    def __init__(self, modules, device: torch.device, seed: int, rank: int):
        self.cuda = device if device.type == "cuda" else None
        with torch.random.fork_rng(devices=[self.cuda] if self.cuda is not None else []):
            torch.manual_seed((int(seed) * 1_000_003 + 7919 * (rank + 1)) % 2**63)
            self.local = self._get()
        self.shared = None
        self.depth = 0
        self.handles = []
        for module in modules:
            self.handles.append(module.register_forward_pre_hook(self._enter))
            self.handles.append(module.register_forward_hook(self._exit))

    def _get(self):
        return torch.get_rng_state(), (torch.cuda.get_rng_state(self.cuda) if self.cuda is not None else None)

    def _set(self, state) -> None:
        torch.set_rng_state(state[0])
        if self.cuda is not None:
            torch.cuda.set_rng_state(state[1], self.cuda)

    def _enter(self, module, args) -> None:
        if self.depth == 0:
            self.shared = self._get()
            self._set(self.local)
        self.depth += 1

    def _exit(self, module, args, output) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.local = self._get()
            self._set(self.shared)

    def state(self):
        return self.local

    def load(self, state) -> None:
        self.local = state


class _NoLog:
    """The metrics log of ranks other than 0: they write nothing."""

    def append(self, records) -> None:
        pass

    def truncate_after(self, epoch) -> None:
        pass


def attach(trainer, context: DistContext) -> None:
    """Make ``trainer`` one rank of a data-parallel run: rank 0's parameters everywhere, this
    rank's shard of every training batch, the backend's exact reductions, and no writes to the
    run directory except on rank 0."""
    context.broadcast_parameters(trainer.model)
    model = trainer.model
    context.randomness = RankRandomness([model.encoder, *model.heads.values()], context.device,
                                        torch.initial_seed(), context.rank)
    if not context.is_main:  # one log of the run: rank 0's (the others say only what goes wrong)
        logging.getLogger("mtl_bench").setLevel(logging.WARNING)
    trainer.backend.dist = context
    trainer.benchmark.train = ShardedBatches(trainer.benchmark.train, context, training=True)
    if not context.is_main:
        trainer.metrics_log = _NoLog()


# ------------------------------------------------------------------------------ local launch
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_with_parent(parent: int) -> None:
    """SIGTERM this process when the launching process ``parent`` dies (Linux ``PR_SET_PDEATHSIG``):
    a launcher killed with SIGKILL leaves no rank behind, and rank 0 marks the run interrupted."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _log_setup() -> dict:
    """The launching process's root logging: its level, and its handlers as ``(target, level,
    format)`` with target a file name or ``<stdout>`` / ``<stderr>``. Spawned ranks start without
    logging; rank 0 sets up the same (Hydra's console and the run's ``mtl-bench.log``), so a
    distributed run logs its epochs as one process does."""
    root = logging.getLogger()
    handlers = []
    for handler in root.handlers:
        fmt = handler.formatter._fmt if handler.formatter is not None else None
        if isinstance(handler, logging.FileHandler):
            handlers.append((handler.baseFilename, handler.level, fmt))
        elif isinstance(handler, logging.StreamHandler):
            handlers.append(("<stderr>" if handler.stream is sys.stderr else "<stdout>", handler.level, fmt))
    return {"level": root.level, "handlers": handlers}


def _set_up_logging(setup: dict | None) -> None:
    if not setup:
        return
    root = logging.getLogger()
    root.setLevel(setup["level"])
    consoles = {"<stdout>": sys.stdout, "<stderr>": sys.stderr}
    for target, level, fmt in setup["handlers"]:
        handler = logging.StreamHandler(consoles[target]) if target in consoles else logging.FileHandler(target)
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(handler)


def _local_worker(rank: int, world: int, port: int, threads: int, fn, args: tuple, results, parent: int = 0,
                  log_setup: dict | None = None) -> None:
    if parent:
        _stop_with_parent(parent)
    if rank == 0:  # the other ranks compute the same numbers and stay quiet
        _set_up_logging(log_setup)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    if threads:
        torch.set_num_threads(threads)
    code = 0
    # for the rank's whole life: a stop signal that comes again while the outcome is handed over
    # (Ctrl-C reaches a rank twice, from the terminal and from the launcher) is ignored
    with interrupt_on_signals():
        try:
            value = fn(*args, rank)
            if rank == 0:
                results.put(("returned", value))
        except BaseException as err:  # handed to the launching process, which raises it
            code = 0 if isinstance(err, Interrupted) else 1  # a stop is orderly: the other ranks are not killed for it
            try:
                results.put(("raised", err))
            except Exception:  # an exception that does not pickle: its message
                results.put(("raised", RuntimeError(f"rank {rank}: {type(err).__name__}: {err}")))
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
    # everything is written and handed over; torch 2.14's gloo threads now and then abort the
    # interpreter's teardown ("terminate called without an active exception"): leave without it
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_ENDED = {"group": False}  # this process made a process group for its run (torchrun, SLURM tasks) and ended it


def ended_a_group() -> None:
    _ENDED["group"] = True


def group_ended() -> bool:
    """This process ended a process group of its own: torch's gloo threads may abort its
    interpreter's teardown ("terminate called without an active exception"), so it should leave
    without one once everything is written (``mtl_bench.cli`` does; :func:`_local_worker` too)."""
    return _ENDED["group"]


STOP_SIGNALS = ("SIGKILL", "SIGTERM", "SIGINT", "SIGHUP")  # ends of a rank that are stops, not crashes


class RankCrashed(RuntimeError):
    """A rank died of a signal that is not a stop (SIGSEGV, SIGABRT, SIGBUS): the run failed."""


def _killed_rank(failure) -> Interrupted | None:
    """A rank ended by a stop signal it could not handle (SIGKILL: the kernel's out-of-memory
    killer, ``kill -9``; SIGTERM before its handler was in place), as an :class:`Interrupted` that
    names it; None for any other end (a crash - SIGSEGV, SIGABRT - is a failure). Ranks stopped by
    a handled signal end in order (exit 0), so a signal here is a kill."""
    import torch.multiprocessing as mp

    if not isinstance(failure, mp.ProcessExitedException) or failure.signal_name not in STOP_SIGNALS:
        return None
    signum = signal.Signals[failure.signal_name]
    hint = " (the out-of-memory killer, or kill -9)" if signum == signal.SIGKILL else ""
    return Interrupted(signum, f"rank {failure.error_index} was killed by {failure.signal_name}{hint}")


def launch_local(nproc: int, fn, args: tuple, cpu: bool):
    """Rank 0's ``fn(*args, rank)``, run in ``nproc`` new processes on this machine (torch.multiprocessing,
    spawn), joined into one process group through ``RANK``/``WORLD_SIZE``/``MASTER_*``, like
    torchrun. On the CPU the cores are divided among them. The first error of a rank is raised
    here (user errors keep their type, so the CLI reports them as for one process).

    SIGTERM and SIGINT sent to this process are passed on to every rank; the run then stops as a
    one-process run does (rank 0 marks it interrupted) and :class:`~.signals.Interrupted` is raised
    here once every rank has ended. The ranks also stop when this process dies (SIGKILL). A rank
    killed outright (SIGKILL) is named in the :class:`~.signals.Interrupted` raised (its ``how``)."""
    import torch.multiprocessing as mp

    results = mp.get_context("spawn").SimpleQueue()
    threads = max(1, torch.get_num_threads() // nproc) if cpu else 0
    processes = mp.start_processes(_local_worker, args=(nproc, _free_port(), threads, fn, args, results, os.getpid(),
                                                        _log_setup()),
                                   nprocs=nproc, join=False, start_method="spawn")
    received = []

    def forward(signum, frame):
        received.append(signum)
        for process in processes.processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    failure = None
    outcomes = []
    with handling(forward):
        noted = take_noted_stop()  # a stop that came while the ranks were started (a sweep's worker)
        if noted is not None:
            forward(noted, None)
        try:
            while not processes.join(timeout=0.5):
                while not results.empty():
                    outcomes.append(results.get())
                if not received and any(kind == "raised" and isinstance(value, Interrupted) for kind, value in outcomes):
                    forward(signal.SIGTERM, None)  # a rank stopped by a signal of its own: the others stop too
        except (mp.ProcessExitedException, mp.ProcessRaisedException) as err:
            failure = err
    while not results.empty():
        outcomes.append(results.get())
    if not received:  # before the survivors' stop: torch ended them with SIGTERM for it
        killed = _killed_rank(failure)
        if killed is not None:
            raise killed
        if isinstance(failure, mp.ProcessExitedException) and failure.signal_name:
            raise RankCrashed(f"rank {failure.error_index} of the local distributed run died of "
                              f"{failure.signal_name} (exit code {failure.exit_code})")
    raised = [value for kind, value in outcomes if kind == "raised"]
    # a stop comes first: a rank whose peer stopped before it fails in a collective
    raised.sort(key=lambda err: not isinstance(err, Interrupted))
    if raised:
        raise raised[0]
    if failure is not None:
        if received:
            raise Interrupted(received[0])
        raise RuntimeError(f"a process of the local distributed run failed: {failure}")
    return next(value for kind, value in outcomes if kind == "returned")
