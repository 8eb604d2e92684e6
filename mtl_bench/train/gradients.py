"""Gradient backends: per-task gradients in a chosen space, and the update assembled from them.

The model is split at the shared representation ``z = encoder(x)``. Each task's scalar loss is
differentiated on its own (never through an element of a stacked loss vector, which would send
every backward pass through all heads) w.r.t. its own detached copy of ``z`` and the task's head:
one cheap head-only backward call of ``sum_i L_i`` gives every ``dL_i/dz`` (each at its own
leaf) and the heads' gradients. Then, by ``space``:

- ``representation``: the Jacobian rows are ``dL_i/dz`` (the whole B x D block, batch kept,
  as in MGDA-UB); the update is one backward of ``sum_i w_i dL_i/dz`` through the encoder.
- ``last_shared_layer``: rows are ``dL_i/dW`` for the encoder's last shared layer W (a short
  backward from z to W only); the update is again one encoder backward of ``sum_i w_i dL_i/dz``.
  When that layer is an ``nn.Linear`` and a Gramian strategy needs only ``G = J J^T``, G comes from
  the layer's input and the tasks' gradients at its output where that costs fewer operations
  than the rows (:mod:`.linear_gramian`; never in data-parallel runs, whose rows are averaged
  across processes first, nor with the gradient diagnostics, which measure the rows).
- ``params``: rows are ``dL_i/dtheta`` for all shared parameters, from one encoder backward per
  task (``method=loop``) or batched with vmap (``method=vmap``, ``is_grads_batched``, in chunks);
  the shared update ``sum_i w_i g_i`` is assembled from those rows, with no further backward.

In the params space the T rows are written once into one T x P buffer (each task's gradients
copied into its row as they come out of the backward pass: no list of rows stacked again);
Gramian strategies get ``G = J J^T`` from it and the update ``sum_i w_i g_i`` is one
vector-matrix product whose slices become the parameters' ``.grad``. Peak memory is the forward's
activations, one task's backward, and the T x P rows that any exact Gramian of T separate
backward passes must hold.

Batched gradients hold one copy of the encoder's activation gradients and parameter gradients
per task in the chunk. Their memory is estimated once per input shape (bytes of the tensors the
encoder's forward saves for backward, counted through ``saved_tensors_hooks``, plus the shared
parameters' bytes), and the chunk is the largest number of tasks whose estimate fits in
``vmap_max_bytes``. ``method=vmap`` raises when not even one task fits.

``method=auto`` decides by measurement, per device type and input shape: when at least two tasks fit the bound,
its first ``2 * AUTO_TRIALS`` steps alternate the loop and the batched path (each a real step,
nothing computed twice) and time their backward passes (by this process's CPU time on the CPU,
which other processes on the cores move far less than the wall clock, though threads spinning
while they wait still count; on CUDA by the wall clock with a synchronisation around each timed
pass: a one-time cost of these first steps); leaving out each path's first (``AUTO_WARMUP``)
trial, which pays one-off costs, it then keeps
the batched path only when its best time is below ``AUTO_MARGIN`` (0.9) times the loop's, else
the loop (less memory, and timing noise must not pick a slower path), and the loop when the
batched path fails (the failure is warned about once).
``auto_decisions`` holds, per device type and input shape, the choice and both timings (summary.json's
``cost.grad_method_auto``).
On the CPU the batched path runs each conv backward per task anyway and copies more, so the loop
wins there; on a GPU the batched path may win for small models.

Heads always get ``head_weight_i * dL_i/dhead_i`` (the strategy's ``head_weights``).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..strategies.base import SPACES, Strategy
from .linear_gramian import LayerCalls, identity_cost, linear_gramian, rows_cost, trained_parts

METHODS = ("loop", "vmap", "auto")
AUTO_TRIALS = 4  # timed steps of each path before grad.method=auto decides (the best of them counts) ...
AUTO_WARMUP = 1  # ... but the first of each path's, which pays its one-off costs (allocations, kernel set-up)
AUTO_MARGIN = 0.9  # auto keeps the batched path only when its best time is below this fraction of the loop's


@dataclass
class StepResult:
    losses: torch.Tensor          # [T] raw task losses (detached)
    weights: torch.Tensor         # [T] weights applied to the task gradients (detached)
    encoder_backward_passes: int  # backward passes through the shared encoder this step


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _grads_or_zeros(grads, params):
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _clock(device: torch.device):
    """The clock of ``grad.method=auto``'s trials: this process's CPU time on the CPU (other
    processes sharing the cores do not move it, so a loaded machine cannot pick the slower path
    by chance), the wall clock around synchronised CUDA work."""
    return time.process_time if device.type == "cpu" else time.perf_counter


def _best(seconds: list[float] | None) -> float | None:
    """The best of a path's timed trials after its warm-up ones (None: not timed)."""
    counted = (seconds or [])[AUTO_WARMUP:] or seconds
    return min(counted) if counted else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch_kpis(tasks, preds, targets) -> torch.Tensor:
    """[T] batch KPIs in [0, 1] (``task.kpi``), on the device: no host sync."""
    values = []
    for task, pred in zip(tasks, preds):
        if getattr(task, "kpi", None) is None:
            raise ValueError(f"this strategy needs a KPI per task, and task {task.name!r} defines none (Task.kpi)")
        values.append(task.kpi(pred, targets[task.name]).reshape(()).float())
    return torch.stack(values)


class GradientBackend:
    """Computes per-task gradients and sets ``.grad`` of the model for one gradient strategy step."""

    def __init__(self, space: str = "params", method: str = "auto", chunk_size: int | None = None,
                 vmap_max_bytes: float | None = 2**31):
        if space not in SPACES:
            raise ValueError(f"grad.space={space!r}: choose one of {', '.join(SPACES)}")
        if method not in METHODS:
            raise ValueError(f"grad.method={method!r}: choose one of {', '.join(METHODS)}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"grad.chunk_size must be a positive number of tasks or null, got {chunk_size}")
        if vmap_max_bytes is not None and float(vmap_max_bytes) <= 0:
            raise ValueError(f"grad.vmap_max_bytes must be positive or null (no bound), got {vmap_max_bytes}")
        self.space = space
        self.method = method
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.vmap_max_bytes = None if vmap_max_bytes is None else float(vmap_max_bytes)
        self._vmap_failed = False
        self._last_shared_batch_failed = False
        self._compiled_encoders: dict[int, bool] = {}  # id(model) -> its encoder has compiled modules
        self._per_task_bytes: dict[tuple, int] = {}
        self.last_chunk: int | None = None  # tasks per batched backward in the last step (0: loop)
        self._trials: dict[tuple, dict[str, list[float]]] = {}  # auto: seconds per path and input shape
        self._chosen: dict[tuple, str] = {}                       # auto: the path kept per (device type, *input shape)
        self.auto_decisions: list[dict] = []  # auto: one record per device type and input shape, for summary.json
        self.dist = None  # a DistContext when data-parallel: the exact reductions of .distributed

    # -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``grad.method=auto``'s decisions, kept in checkpoints so that a resumed run goes on with
        the paths of the uninterrupted one instead of timing them again."""
        return {"chosen": [[list(k), v] for k, v in self._chosen.items()], "decisions": list(self.auto_decisions),
                "vmap_failed": self._vmap_failed}

    def load_state_dict(self, state: dict) -> None:
        # a key names the device type and the input shape; a checkpoint from before the device was
        # part of it holds shapes alone, whose device is unknown: those paths are timed again
        self._chosen = {tuple(k): v for k, v in state.get("chosen", []) if k and isinstance(k[0], str)}
        self.auto_decisions = list(state.get("decisions", []))
        self._vmap_failed = bool(state.get("vmap_failed", False))

    def step(self, model, strategy: Strategy, x, targets: dict, tasks, probe=None) -> StepResult:
        """``probe`` (a :class:`~mtl_bench.train.diagnostics.Probe`, or None): measures the rows
        and the update of this step for the gradient diagnostics, from the Gramian when there is one."""
        self._input_shape = tuple(x.shape)
        if strategy.needs == "jacobian" and self.space == "last_shared_layer":
            raise ValueError(
                f"{type(strategy).__name__} aggregates gradient vectors, which cannot be mapped back from "
                "the last shared layer; use grad.space=params or grad.space=representation"
            )
        layer, parts = self._gramian_layer(model, strategy, probe)
        if layer is None:
            z = self._encode(model, x)
        else:
            with LayerCalls(layer) as calls:
                z = self._encode(model, x)
        z_leaves = [z.detach().requires_grad_(True) for _ in tasks]  # one leaf per task: dL_i/dz apart
        preds = [model.heads[task.name](leaf) for task, leaf in zip(tasks, z_leaves)]
        losses = [task.loss(pred, targets[task.name]) for task, pred in zip(tasks, preds)]
        dist = self.dist
        if dist is not None:  # values: the global batch's losses; gradients: this rank's share
            losses = dist.global_losses(losses, tasks, targets)
        if strategy.needs_kpi:
            kpis = batch_kpis if dist is None else lambda *args: dist.global_kpis(batch_kpis, *args)
            strategy.feed_kpi(kpis(tasks, [p.detach() for p in preds], targets))
        head_params = [model.head_parameters(task.name) for task in tasks]
        z_grads, head_grads = self._head_backward(head_params, z_leaves, strategy.transform_losses(losses))
        raw_losses = torch.stack([loss.detach() for loss in losses])
        z_grads_stacked = torch.stack(z_grads)  # [T, *z.shape]

        shared = model.shared_parameters()
        gramian = None if layer is None else self._linear_layer_gramian(parts, calls, z, z_grads_stacked)
        if gramian is None:
            jacobian, passes = self._jacobian(model, z, z_grads_stacked, shared)
            if dist is not None and self.space != "representation":
                jacobian = dist.mean_rows(jacobian)  # the global batch's rows
        else:
            jacobian, passes = None, 0
        # the strategy works in float32 (float64 for a float64 model) even under bf16 autocast (a
        # bf16 Gramian would feed the solvers 3 significant digits)
        dtype = torch.promote_types((gramian if jacobian is None else jacobian).dtype, torch.float32)
        with torch.autocast(z.device.type, enabled=False):
            if strategy.needs == "gramian":
                if gramian is None:
                    rows = jacobian.to(dtype)  # bf16 autocast gives bf16 representation gradients
                    if dist is not None and self.space == "representation":
                        gramian = dist.representation_gramian(rows)
                    else:
                        gramian = rows @ rows.T
                gramian = gramian.to(dtype)
                weights = strategy.weights(losses=raw_losses.to(dtype), gramian=gramian)
                head_weights = strategy.head_weights(weights)
                update = None
            else:
                representation = z.detach() if self.space == "representation" else None
                rows = jacobian
                if dist is not None and representation is not None:
                    rows, representation = dist.gather_rows(jacobian, representation)
                update, head_weights = strategy.aggregate(rows, raw_losses.to(dtype), representation=representation)
                if dist is not None and representation is not None:
                    update = dist.own_block(update, math.prod(z.shape[1:]))
                weights = head_weights
            if probe is not None:
                probe.measure(rows=jacobian.to(dtype), update=update, weights=weights,
                              gramian=gramian if update is None else None)

        if self.space == "params":
            shared_update = weights @ jacobian if update is None else update
            self._assign(shared, shared_update)
        else:
            if update is None:
                z_update = torch.tensordot(weights.to(z_grads_stacked.dtype), z_grads_stacked, dims=1)
            else:
                z_update = update.view_as(z)
            z.backward(z_update)
            passes += 1
        for params, w, grads in zip(head_params, head_weights, head_grads):
            for p, g in zip(params, grads):
                p.grad = w * g
        if dist is not None:  # params: the shared update is already global; the rest, the ranks' mean
            dist.average_gradients([p for ps in head_params for p in ps] if self.space == "params"
                                   else model.parameters())
        return StepResult(raw_losses, strategy.logged_weights(weights).detach(), passes)

    @staticmethod
    def _head_backward(head_params, z_leaves, differentiated) -> tuple[list, list]:
        """``dL_i/dz`` and each head's gradients from ONE backward call of ``sum_i L_i``: each task
        reads z through its own leaf, so the sum keeps the tasks apart (no cross terms: a
        transformed loss depends on its own task's loss only) at the cost of one engine call
        instead of T."""
        total = torch.stack([loss.reshape(()) for loss in differentiated]).sum()
        grads = torch.autograd.grad(total, [*z_leaves, *(p for ps in head_params for p in ps)], allow_unused=True)
        z_grads = [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(grads, z_leaves)]
        head_grads, offset = [], len(z_leaves)
        for params in head_params:
            head_grads.append(_grads_or_zeros(grads[offset : offset + len(params)], params))
            offset += len(params)
        return z_grads, head_grads

    def _gramian_layer(self, model, strategy: Strategy, probe) -> tuple[nn.Module | None, tuple | None]:
        """``(layer, trained parts)`` of the last shared layer when this step may take its Gramian
        from the layer's input and output gradients (:mod:`.linear_gramian`): a Gramian strategy
        in the last-shared-layer space on one process without diagnostics, a plain ``nn.Linear``
        layer, and no compiled module in the encoder (a hook inside a compiled graph records no
        autograd path to z; ``trainer.compile`` compiles before the first step, so this is looked
        at once per model); ``(None, None)`` otherwise."""
        if self.space != "last_shared_layer" or strategy.needs != "gramian" or probe is not None \
                or self.dist is not None:
            return None, None
        compiled = self._compiled_encoders.get(id(model))
        if compiled is None:
            compiled = self._compiled_encoders[id(model)] = any(
                getattr(m, "_compiled_call_impl", None) is not None for m in model.encoder.modules())
        layer = None if compiled else getattr(model, "last_shared_layer", None)
        parts = trained_parts(layer) if layer is not None else None
        return (layer, parts) if parts is not None else (None, None)

    def _linear_layer_gramian(self, parts: tuple[bool, bool], calls: LayerCalls, z, z_grads) -> torch.Tensor | None:
        """G of the last shared linear layer's rows from its input ``h`` and the tasks' gradients at
        its output, when that costs fewer operations than the rows; None otherwise (the caller
        then forms the rows)."""
        call = calls.single_call()
        if call is None:
            return None
        h, y = call
        T, n_in, n_out = z_grads.shape[0], h.shape[-1], y.shape[-1]
        M = y.numel() // n_out
        if identity_cost(M, n_in, n_out, T) >= rows_cost(M, n_in, n_out, T):
            return None
        weight, bias = parts
        A = self._last_shared_jacobian(z, z_grads, [y])  # [T, M * n_out]: dL_i/dy, the short backward
        dtype = torch.promote_types(A.dtype, torch.float32)  # never a bf16 Gramian (see step())
        with torch.autocast(z.device.type, enabled=False):
            return linear_gramian(h.detach().to(dtype), A.view(T, M, n_out).to(dtype), weight, bias)

    # -------------------------------------------------------------------------------------
    def _wants_vmap(self) -> bool:
        return self.space == "params" and self.method != "loop" and not self._vmap_failed

    def _encode(self, model, x):
        """``encoder(x)``; on the first batch of a new shape that may use vmap, also measure the
        bytes the forward saves for backward (an estimate of one task's activation gradients)."""
        key = tuple(x.shape)
        if not self._wants_vmap() or key in self._per_task_bytes:
            return model.encoder(x)
        seen: dict[tuple, int] = {}

        def pack(t):
            try:
                storage = t.untyped_storage()
                seen[(storage.data_ptr(), t.dtype)] = storage.nbytes()
            except (RuntimeError, NotImplementedError):  # tensors without a plain storage
                seen[(id(t), t.dtype)] = t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            z = model.encoder(x)
        param_bytes = sum(p.numel() * p.element_size() for p in model.shared_parameters())
        self._per_task_bytes[key] = sum(seen.values()) + param_bytes + z.numel() * z.element_size()
        return z

    def vmap_chunk(self, n_tasks: int, input_shape: tuple) -> int:
        """Tasks per batched backward: ``grad.chunk_size`` (or all), capped by ``vmap_max_bytes``
        over the estimated bytes per task; 0 means the bound does not fit even one task."""
        chunk = min(self.chunk_size or n_tasks, n_tasks)
        per_task = self._per_task_bytes.get(tuple(input_shape))
        if self.vmap_max_bytes is not None and per_task:
            chunk = min(chunk, int(self.vmap_max_bytes // per_task))
        return max(chunk, 0)

    # -------------------------------------------------------------------------------------
    def _jacobian(self, model, z, z_grads, shared) -> tuple[torch.Tensor, int]:
        """Rows of per-task gradients in the backend's space, and the encoder passes it took."""
        T = z_grads.shape[0]
        if self.space == "representation":
            return z_grads.reshape(T, -1), 0
        if self.space == "last_shared_layer":
            return self._last_shared_jacobian(z, z_grads, model.last_shared_parameters()), 0
        return self._params_jacobian(z, z_grads, shared), T

    def _last_shared_jacobian(self, z, z_grads, params) -> torch.Tensor:
        """[T, P_last] rows w.r.t. the last shared layer: the short backward from z to it, batched
        over the tasks (it holds T copies of the gradients of the few layers after it only), or a
        loop with ``method=loop`` or where batching fails."""
        T = z_grads.shape[0]
        out = torch.empty((T, sum(p.numel() for p in params)), device=params[0].device, dtype=params[0].dtype)
        if self.method != "loop" and not self._last_shared_batch_failed:
            try:
                return self._vmap_into(out, z, z_grads, params, min(self.chunk_size or T, T))
            except (RuntimeError, NotImplementedError) as err:
                self._last_shared_batch_failed = True
                warnings.warn(f"grad.space=last_shared_layer: batched gradients failed ({err}); using a loop")
        return self._loop_into(out, z, z_grads, params)

    def _params_jacobian(self, z, z_grads, shared) -> torch.Tensor:
        """[T, P] rows of per-task gradients of the shared parameters, by the loop or batched."""
        T = z_grads.shape[0]
        out = torch.empty((T, sum(p.numel() for p in shared)), device=shared[0].device, dtype=shared[0].dtype)
        if not self._wants_vmap():
            return self._loop_into(out, z, z_grads, shared)
        chunk = self.vmap_chunk(T, self._input_shape)
        if self.method == "vmap":
            if chunk < 1:
                raise ValueError(
                    f"grad.method=vmap: one task's batched gradient needs about "
                    f"{self._per_task_bytes[tuple(self._input_shape)] / 2**20:.0f} MiB, over "
                    f"grad.vmap_max_bytes={self.vmap_max_bytes:.0f}; raise the bound or use grad.method=auto/loop")
            return self._vmap_into(out, z, z_grads, shared, chunk)
        return self._auto_into(out, z, z_grads, shared, chunk)

    def _auto_into(self, out, z, z_grads, shared, chunk: int) -> torch.Tensor:
        """``method=auto``: the path chosen for this device and input shape, or the next timed trial.
        The device is part of the key: a choice timed on a GPU does not hold on the CPU a run resumes on."""
        key = (out.device.type, *self._input_shape)
        if key not in self._chosen and chunk < 2:
            self._decide(key, "loop", chunk, out.device, reason="fewer than two tasks fit grad.vmap_max_bytes")
        path = self._chosen.get(key)
        if path == "vmap" and chunk < 2:  # kept from before a resume that lowered grad.vmap_max_bytes
            self._decide(key, "loop", chunk, out.device, reason="the batched path no longer fits grad.vmap_max_bytes")
            path = "loop"
        if path == "loop":
            return self._loop_into(out, z, z_grads, shared)
        if path == "vmap":
            return self._vmap_into(out, z, z_grads, shared, chunk)
        try:
            return self._timed(key, self._next_trial(key), out, z, z_grads, shared, chunk)
        except (RuntimeError, NotImplementedError) as err:
            self._vmap_failed = True
            warnings.warn(f"grad.method=auto: batched per-task gradients failed ({err}); using the loop")
            self._decide(key, "loop", chunk, out.device, reason=f"the batched path failed ({type(err).__name__})")
            return self._loop_into(out, z, z_grads, shared)

    def _next_trial(self, key: tuple) -> str:
        """The path with fewer timed steps so far (the loop first)."""
        trials = self._trials.setdefault(key, {"loop": [], "vmap": []})
        return "loop" if len(trials["loop"]) <= len(trials["vmap"]) else "vmap"

    def _timed(self, key, path, out, z, z_grads, shared, chunk) -> torch.Tensor:
        """One trial of ``path``, timed (synchronised on CUDA); decides after the last trial."""
        clock = _clock(out.device)
        _sync(out.device)
        start = clock()
        if path == "loop":
            self._loop_into(out, z, z_grads, shared)
        else:
            self._vmap_into(out, z, z_grads, shared, chunk)
        _sync(out.device)
        trials = self._trials[key]
        trials[path].append(clock() - start)
        if min(len(v) for v in trials.values()) >= AUTO_TRIALS:
            loop, vmap = _best(trials["loop"]), _best(trials["vmap"])
            self._decide(key, "vmap" if vmap < AUTO_MARGIN * loop else "loop", chunk, out.device)
        return out

    def _decide(self, key: tuple, path: str, chunk: int, device: torch.device, reason: str | None = None) -> None:
        trials = self._trials.get(key, {})
        self._chosen[key] = path
        self.auto_decisions.append({
            "chosen": path, "device": key[0], "input_shape": list(key[1:]), "vmap_chunk": chunk,
            "loop_seconds": _best(trials.get("loop")), "vmap_seconds": _best(trials.get("vmap")),
            "trials_per_path": AUTO_TRIALS, "warmup_trials": AUTO_WARMUP, "reason": reason or "the shorter of the timed steps",
            "clock": "process" if _clock(device) is time.process_time else "wall",
        })

    def _loop_into(self, out, z, z_grads, shared) -> torch.Tensor:
        """One encoder backward per task, each task's gradients copied into its row of ``out``."""
        self.last_chunk = 0
        for row, g in zip(out, z_grads):
            grads = torch.autograd.grad(z, shared, g, retain_graph=True, allow_unused=True)
            torch.cat([t.reshape(-1) for t in _grads_or_zeros(grads, shared)], out=row)
        return out

    def _vmap_into(self, out, z, z_grads, shared, chunk: int) -> torch.Tensor:
        """Batched backward passes of ``chunk`` tasks each, copied into their rows of ``out``."""
        self.last_chunk = chunk
        T = z_grads.shape[0]
        for lo in range(0, T, chunk):
            grads = torch.autograd.grad(
                z, shared, z_grads[lo : lo + chunk], retain_graph=True, is_grads_batched=True, allow_unused=True
            )
            n = min(chunk, T - lo)
            grads = [torch.zeros((n, *p.shape), device=p.device, dtype=p.dtype) if g is None else g
                     for g, p in zip(grads, shared)]
            torch.cat([g.reshape(n, -1) for g in grads], dim=1, out=out[lo : lo + n])
        return out

    @staticmethod
    def _assign(params: list[nn.Parameter], flat: torch.Tensor) -> None:
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            offset += n
