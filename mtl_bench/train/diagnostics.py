"""Gradient diagnostics every ``diagnostics.every`` steps: how much the task gradients conflict.

On a diagnosed step the task gradients ``g_i`` (the rows the strategy combines, in its space) and
the shared update ``d`` it hands the optimiser give, with the Gramian ``G = J J^T``:

- ``grad_norm`` of task i: ``||g_i|| = sqrt(G_ii)``;
- ``cosine`` of tasks i, j: ``G_ij / (||g_i|| ||g_j||)`` (Yu et al. 2020, PCGrad, Def. 1: the
  gradients conflict when it is negative); ``conflict_fraction``: the share of the T(T-1)/2 pairs
  with a negative cosine; ``cosine_mean``: their mean cosine;
- ``gramian_condition``: ``lambda_max(G) / lambda_min(G)`` (infinite, written as null, when G is
  singular: always so when T exceeds the dimension of the space);
- ``update_norm``: ``||d||`` and ``update_cosine`` of task i: ``<d, g_i> / (||d|| ||g_i||)``
  (negative: the step increases task i's loss to first order).

The device only computes ``G``, ``J d`` and ``||d||^2`` (T^2 + T + 1 numbers, reusing the Gramian
a Gramian strategy already has), kept on the device; everything else is derived on the host in
float64 when the step-level records are written (no host sync inside the steps, no eigenvalue
solver, which checks its result with a host read, on the device). ``d`` is the update before
``max_grad_norm`` clipping and before the optimiser's own transformation (Adam's moments).

Where the gradients live:

- gradient strategies: the backend's ``grad.space`` (params: the shared parameters; representation:
  the shared representation z of the batch; last_shared_layer: that layer's parameters), at no
  extra backward pass;
- loss weightings: the shared (encoder) parameters, from T extra backward passes through the
  encoder on the diagnosed step only (the same forward graph: no extra forward, no RNG used), and
  ``d`` the shared parameters' gradient of the weighted total loss.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .run_dir import record

SPLIT = "diagnostics"   # the records' ``split``: a kind of its own in metrics.jsonl
ALL = "all"             # the ``task`` of the figures over all tasks
PAIR = " vs "           # ``task`` of a pair's cosine: "left vs right"
METRICS = ("grad_norm", "cosine", "conflict_fraction", "cosine_mean", "gramian_condition", "update_norm",
           "update_cosine")


def _flat_grads(params) -> torch.Tensor:
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in params])


class Probe:
    """What one diagnosed step measured: ``G``, ``J d`` and ``||d||^2`` in one device tensor."""

    def __init__(self, step: int):
        self.step = step
        self.values: torch.Tensor | None = None

    def measure(self, rows: torch.Tensor | None = None, update: torch.Tensor | None = None,
                gramian: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> None:
        """From the Jacobian ``rows`` [T, P] and the ``update`` (any shape, P numbers), or from a
        Gramian strategy's ``gramian`` and ``weights`` (``d = w J``: ``J d = G w``, ``||d||^2 = w.G w``)."""
        with torch.no_grad(), torch.autocast(("cuda" if (rows if rows is not None else gramian).is_cuda else "cpu"),
                                             enabled=False):
            if gramian is None:
                rows = rows.float() if rows.dtype in (torch.float16, torch.bfloat16) else rows
                gramian = rows @ rows.T
            if update is None:
                weights = weights.to(gramian.dtype)
                j_d = gramian @ weights
                d_sq = (weights @ j_d).reshape(1)
            else:
                d = update.reshape(-1).to(rows.dtype)
                j_d = rows @ d
                d_sq = (d @ d).reshape(1)
            self.values = torch.cat([gramian.detach().reshape(-1), j_d.detach(), d_sq.detach()])

    def measure_loss_weighting(self, losses: torch.Tensor, params: list) -> None:
        """Rows from one backward pass per task (the graph kept for the strategy's own backward)."""
        rows = torch.stack([
            torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in
                       zip(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True), params)])
            for loss in losses])
        self._rows = rows

    def finish_loss_weighting(self, params: list) -> None:
        """After the total loss's backward: ``d`` is the shared parameters' gradient."""
        rows, self._rows = self._rows, None
        self.measure(rows=rows, update=_flat_grads(params))


class GradientDiagnostics:
    """Decides which steps are diagnosed and turns their probes into metrics.jsonl records."""

    def __init__(self, every: int | None, task_names: list[str]):
        if every is not None and (isinstance(every, bool) or int(every) != every or every < 0):
            raise ValueError(f"diagnostics.every={every!r}: choose null or 0 (off) or a number of steps >= 1, "
                             f"e.g. diagnostics.every=50")
        self.every = int(every or 0)
        self.task_names = list(task_names)
        self.pending: list[Probe] = []

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def probe(self, step: int) -> Probe | None:
        """A probe for optimiser step ``step`` (counted from 1 over the run) when it is diagnosed."""
        if not self.every or step % self.every:
            return None
        probe = Probe(step)
        self.pending.append(probe)
        return probe

    def records(self, epoch: int) -> list[dict]:
        """The pending probes' records (one host read for all of them), then forget them."""
        probes = [p for p in self.pending if p.values is not None]
        self.pending = []
        if not probes:
            return []
        values = torch.stack([p.values.double() for p in probes]).cpu().numpy()
        out = []
        for probe, row in zip(probes, values):
            out += self.step_records(epoch, probe.step, row)
        return out

    def step_records(self, epoch: int, step: int, values: np.ndarray) -> list[dict]:
        T = len(self.task_names)
        figures = summarize(values[: T * T].reshape(T, T), values[T * T : T * T + T], float(values[-1]))
        out = [record(epoch, step, SPLIT, name, "grad_norm", figures["grad_norm"][i])
               for i, name in enumerate(self.task_names)]
        out += [record(epoch, step, SPLIT, name, "update_cosine", figures["update_cosine"][i])
                for i, name in enumerate(self.task_names)]
        for i in range(T):
            for j in range(i + 1, T):
                out.append(record(epoch, step, SPLIT, f"{self.task_names[i]}{PAIR}{self.task_names[j]}", "cosine",
                                  figures["cosine"][i, j]))
        for name in ("conflict_fraction", "cosine_mean", "gramian_condition", "update_norm"):
            out.append(record(epoch, step, SPLIT, ALL, name, figures[name]))
        return out


def summarize(gramian: np.ndarray, j_d: np.ndarray, d_sq: float) -> dict:
    """The diagnostics (module docstring) from ``G``, ``J d`` and ``||d||^2``, in float64.

    A zero gradient has no direction: its cosines are NaN (written as null)."""
    G = 0.5 * (np.asarray(gramian, dtype=np.float64) + np.asarray(gramian, dtype=np.float64).T)
    T = G.shape[0]
    norms = np.sqrt(np.clip(np.diag(G), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.where(np.outer(norms, norms) > 0, G / np.outer(norms, norms), np.nan)
        d_norm = math.sqrt(max(d_sq, 0.0))
        update_cosine = np.where(norms * d_norm > 0, np.asarray(j_d, dtype=np.float64) / (norms * d_norm), np.nan)
    pairs = cosine[np.triu_indices(T, k=1)]
    known = pairs[np.isfinite(pairs)]
    eig = np.linalg.eigvalsh(G) if np.isfinite(G).all() else np.full(T, np.nan)
    lo, hi = eig.min(), eig.max()
    condition = math.nan if not np.isfinite(eig).all() or hi <= 0 else (hi / lo if lo > 0 else math.inf)
    return {
        "grad_norm": norms, "cosine": np.clip(cosine, -1.0, 1.0), "update_norm": d_norm,
        "update_cosine": np.clip(update_cosine, -1.0, 1.0),
        "conflict_fraction": float((known < 0).mean()) if len(known) else math.nan,
        "cosine_mean": float(known.mean()) if len(known) else math.nan,
        "gramian_condition": float(condition),
    }
