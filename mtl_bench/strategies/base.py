"""The strategy protocol: how T task losses (or T task gradients) become one update.

A strategy is an ``nn.Module`` so that learnable weights, buffers and internal optimiser state
(through ``get_extra_state``) ride in checkpoints. The trainer asks each strategy what it needs
and computes only that:

1. ``level = "loss"`` (:class:`LossWeighting`): ``combine(losses) -> (total, weights)``; the
   trainer runs one backward pass of ``total``.
2. ``level = "gradient"`` (:class:`GradientWeighting` / :class:`GradientAggregator`): the
   trainer's gradient backend computes per-task gradients in ``grad.space`` and hands the
   strategy either the T x T Gramian (``weights(losses=..., gramian=...) -> w``) or, for the few
   that need the vectors, the Jacobian (``aggregate(jacobian, losses) -> (update, head_weights)``).
3. Hooks for what needs the loop: ``on_epoch_end`` (e.g. DWA), ``after_step`` (e.g. FAMO
   re-evaluating the batch), ``feed_kpi`` (DTP: the trainer passes one batch KPI per task, on the
   device, when ``needs_kpi`` is true), ``transform_losses`` (e.g. DB-MTL's log losses).

Any gradient method can be composed with a loss weighting (``build_strategy("pcgrad", T,
loss_weighting="uw")``, see :mod:`.compose`): the weighting scales each task loss, the method
combines the gradients of the weighted losses.

Strategies never import the trainer: they are pure tensor functions of their inputs plus their
explicit state, testable on hand-made losses and Gramians.
"""
from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import torch
from torch import nn

from .solvers import SolverError

SPACES = ("params", "representation", "last_shared_layer")


class Strategy(nn.Module):
    """Base class. Subclasses set the class attributes and implement their level's method."""

    #: "loss" or "gradient"
    level: ClassVar[str] = "loss"
    #: what a gradient strategy consumes: "gramian" or "jacobian" (None for loss-only)
    needs: ClassVar[str | None] = None
    #: the paper, cited in ``mtl-bench list strategies``
    paper: ClassVar[str] = ""
    #: gradient spaces the strategy can run in, and its default
    spaces: ClassVar[tuple[str, ...]] = SPACES
    default_space: ClassVar[str] = "params"
    #: True: the trainer calls ``feed_kpi`` with a [T] tensor of batch KPIs in [0, 1] each step
    needs_kpi: ClassVar[bool] = False

    def __init__(self, n_tasks: int):
        super().__init__()
        if n_tasks < 1:
            raise ValueError(f"a strategy needs at least one task, got n_tasks={n_tasks}")
        self.n_tasks = int(n_tasks)
        #: clip the norm of the shared update at this value (None: no clipping)
        self.max_grad_norm: float | None = None

    # ----- hooks (no-ops by default) ---------------------------------------------------------
    def transform_losses(self, losses: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-task scalar losses the strategy differentiates (each one separately). The i-th may
        depend on task i's loss only: the backend differentiates their sum, one leaf per task."""
        return list(losses)

    def on_epoch_end(self, epoch: int, mean_train_losses: torch.Tensor) -> None:
        """Called after each training epoch with the epoch-mean training loss of every task."""

    def feed_kpi(self, kpis: torch.Tensor) -> None:
        """Called before the weights of a step with one KPI per task (``needs_kpi = True``)."""

    def logged_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """The weights written to metrics.jsonl for this step (composition logs the product)."""
        return weights

    def after_step(self, losses: torch.Tensor, reevaluate: Callable[[], torch.Tensor]) -> None:
        """Called after the optimiser step; ``reevaluate()`` returns the batch's losses under the
        updated model (without grad). Only strategies that need it call it."""

    def optimizer_groups(self) -> list[dict]:
        """Parameter groups the trainer adds to the model's optimiser (learned loss weights)."""
        return []

    def stats(self) -> dict[str, int]:
        """Counters the run reports in summary.json's cost block, e.g. ``{"solver_calls": 120,
        "solver_failures": 0}`` for a strategy with a solver (:class:`SolverWeighting`); empty
        for the others."""
        return {}


class LossWeighting(Strategy):
    """Level 1: ``total = sum_i w_i L_i`` (or a strategy-specific combination), one backward."""

    level = "loss"

    def weights(self, losses: torch.Tensor, gramian: torch.Tensor | None = None) -> torch.Tensor:
        """The detached weight of each task loss. Computed on its own, never through
        :meth:`combine` (which may call it): one direction, no circle."""
        raise NotImplementedError

    def combine(self, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(total loss to backpropagate, weights to log)`` for the stacked task losses."""
        w = self.weights(losses.detach())
        return (w * losses).sum(), w.detach()


class GradientWeighting(Strategy):
    """Level 2 from the Gramian: the shared update is ``sum_i w_i g_i`` with the raw gradients;
    task heads get ``w_i`` times their own loss gradient (``scale_heads=False``: unscaled)."""

    level = "gradient"
    needs = "gramian"
    scale_heads: bool = True

    def weights(self, losses: torch.Tensor, gramian: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """Factors of each head's own loss gradient: ``weights`` or ones (``scale_heads=False``)."""
        return weights if self.scale_heads else torch.ones_like(weights)


class SolverWeighting(GradientWeighting):
    """A Gramian weighting whose weights come from a solver: it counts the solver's calls and
    failures (reported by :meth:`stats` in summary.json's cost block) and keeps the counts in
    checkpoints. Subclasses run their solver through :meth:`solve`, which does the counting."""

    def __init__(self, n_tasks: int):
        super().__init__(n_tasks)
        self.solver_calls = 0
        self.solver_failures = 0

    def solve(self, solver: Callable, *args, **kwargs):
        """``solver(*args, **kwargs)``, counted as one call; a :class:`SolverError` it
        raises is counted as one failure and raised on."""
        self.solver_calls += 1
        try:
            return solver(*args, **kwargs)
        except SolverError:
            self.solver_failures += 1
            raise

    def count_failure(self) -> None:
        """Count a failure the solver reported without raising (e.g. a solve that did not
        converge but whose last iterate is used)."""
        self.solver_failures += 1

    def stats(self) -> dict[str, int]:
        return {"solver_calls": self.solver_calls, "solver_failures": self.solver_failures}

    def get_extra_state(self) -> dict:
        return {"solver_calls": self.solver_calls, "solver_failures": self.solver_failures}

    def set_extra_state(self, state: dict) -> None:
        self.solver_calls = state["solver_calls"]
        self.solver_failures = state["solver_failures"]


class GradientAggregator(Strategy):
    """Level 2 from the Jacobian itself (rows = flattened per-task gradients)."""

    level = "gradient"
    needs = "jacobian"

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor,
                  representation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(update vector of the shared part, weights of the heads' gradients)``.

        ``representation`` is the (detached) shared representation z when the rows are
        gradients w.r.t. z (``grad.space=representation``; each row is ``z.numel()`` long, in
        z's layout), else None."""
        raise NotImplementedError
