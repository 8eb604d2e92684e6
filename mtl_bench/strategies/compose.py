"""Composition of the two axes: a loss weighting, then a gradient method.

``build_strategy("pcgrad", T, loss_weighting="uw")`` (config: ``strategy=pcgrad
strategy.loss_weighting=uw``, or ``strategy.loss_weighting={name: uw, preset: nash}`` to pass the
weighting's hyper-parameters) builds a :class:`Composed` strategy:

1. the weighting's ``combine`` runs on the detached task losses; its derivative w.r.t. each
   loss gives the loss weights ``w_i = d total / d L_i`` (for linear weightings such as UW these
   are the weights themselves, e.g. ``exp(-s_i)/2``; for SI they are ``1/L_i``), and its own
   learnable parameters (UW's ``s``, IMTL-L's ``s``) get their gradients from the same total, so
   they are still trained by the optimiser exactly as when the weighting runs alone;
2. each task's scalar loss is scaled separately, ``L_i' = w_i L_i``, and the gradient method
   sees those weighted losses and the gradients (Gramian or Jacobian) of ``L_i'``.

Hooks of both parts are forwarded (DWA's epoch end, FAMO's re-evaluation, DTP's KPIs); the
logged weights are the products ``w_i * (method weight)_i``; solver counts are the method's.
"""
from __future__ import annotations

from typing import Mapping

import torch

from .base import GradientWeighting, LossWeighting, Strategy


class Composed(Strategy):
    level = "gradient"

    def __init__(self, method: Strategy, weighting: LossWeighting):
        super().__init__(method.n_tasks)
        if method.level != "gradient":
            raise ValueError(f"strategy.loss_weighting composes with a gradient method; "
                             f"{type(method).__name__} is a loss weighting itself")
        if weighting.level != "loss":
            raise ValueError(f"strategy.loss_weighting must be a loss weighting (level loss-only or hook), "
                             f"got the gradient method {type(weighting).__name__}")
        if weighting.n_tasks != method.n_tasks:
            raise ValueError("loss weighting and gradient method built for different numbers of tasks")
        self.method = method
        self.weighting = weighting
        self.needs = method.needs
        self.spaces = method.spaces
        self.default_space = method.default_space
        self.needs_kpi = weighting.needs_kpi
        self.paper = f"{method.paper} + {weighting.paper}"
        self.max_grad_norm = method.max_grad_norm if method.max_grad_norm is not None else weighting.max_grad_norm
        self._loss_weights: torch.Tensor | None = None
        self._weighted: torch.Tensor | None = None

    # ---- the weighting -----------------------------------------------------------------------
    def loss_weights(self, losses: torch.Tensor) -> torch.Tensor:
        """``d total / d L_i`` of the weighting at ``losses``; sets the gradients of its learnable
        parameters from the same total (the trainer zeroes them before every step)."""
        leaf = losses.detach().requires_grad_(True)
        params = [p for p in self.weighting.parameters() if p.requires_grad]
        with torch.enable_grad():
            total, _ = self.weighting.combine(leaf)
            grads = torch.autograd.grad(total, [leaf, *params], allow_unused=True)
        for p, g in zip(params, grads[1:]):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        return grads[0].detach()

    def transform_losses(self, losses):
        stacked = torch.stack([loss.reshape(()) for loss in losses])
        w = self.loss_weights(stacked)
        weighted = [w[i] * loss for i, loss in enumerate(losses)]
        self._loss_weights = w
        self._weighted = (w * stacked).detach()
        return self.method.transform_losses(weighted)

    def _method_losses(self, losses):
        return losses if self._weighted is None else self._weighted.to(losses.dtype)

    # ---- the gradient method ------------------------------------------------------------------
    def weights(self, losses, gramian):
        return self.method.weights(losses=self._method_losses(losses), gramian=gramian)

    def head_weights(self, weights):
        return self.method.head_weights(weights)

    def aggregate(self, jacobian, losses, representation=None):
        return self.method.aggregate(jacobian, self._method_losses(losses), representation=representation)

    def logged_weights(self, weights):
        w = self.method.logged_weights(weights)
        return w if self._loss_weights is None else w * self._loss_weights.to(w.dtype)

    # ---- hooks --------------------------------------------------------------------------------
    def feed_kpi(self, kpis):
        self.weighting.feed_kpi(kpis)
        self.method.feed_kpi(kpis)

    def on_epoch_end(self, epoch, mean_train_losses):
        self.weighting.on_epoch_end(epoch, mean_train_losses)
        self.method.on_epoch_end(epoch, mean_train_losses)

    def after_step(self, losses, reevaluate):
        self.weighting.after_step(losses, reevaluate)
        self.method.after_step(losses, reevaluate)

    def optimizer_groups(self):
        return self.weighting.optimizer_groups() + self.method.optimizer_groups()

    def stats(self):
        """The counters of both parts, added up where both have one."""
        totals = dict(self.weighting.stats())
        for key, value in self.method.stats().items():
            totals[key] = totals.get(key, 0) + value
        return totals


def parse_loss_weighting(spec) -> tuple[str, dict] | None:
    """``None``, ``"uw"``, ``{"name": "uw", **hparams}`` or ``{"_target_": "my_mtl.Mine", **hparams}``
    -> ``(name or dotted path, hparams)`` or None."""
    if spec is None or spec == "" or spec == "none":
        return None
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "_target_" in spec:
            spec.pop("name", None)
            return str(spec.pop("_target_")), spec
        if "name" not in spec:
            raise ValueError("strategy.loss_weighting as a mapping needs a `name` (or a `_target_`), "
                             "e.g. {name: uw, preset: nash}")
        return str(spec.pop("name")), spec
    raise ValueError(f"strategy.loss_weighting={spec!r}: give a loss weighting's name (e.g. uw) "
                     "or a mapping {name: uw, ...hyper-parameters}")


__all__ = ["Composed", "GradientWeighting", "parse_loss_weighting"]
