"""Strategies: how T task losses or gradients become one update (see :mod:`.base`).

``build_strategy(name, n_tasks, **hparams)`` builds one by name with its paper's defaults for
whatever ``hparams`` leaves out; ``available_strategies()`` lists the names.
"""
from __future__ import annotations

import inspect

from .base import GradientAggregator, GradientWeighting, LossWeighting, SPACES, Strategy
from .dwa import DynamicWeightAverage
from .gradnorm import GradNorm
from .mgda import MGDA
from .simple import EqualWeighting, StaticWeighting
from .solvers import SolverError
from .uw import UncertaintyWeighting

STRATEGIES: dict[str, type[Strategy]] = {
    "ew": EqualWeighting,
    "static": StaticWeighting,
    "uw": UncertaintyWeighting,
    "dwa": DynamicWeightAverage,
    "gradnorm": GradNorm,
    "mgda": MGDA,
}


def available_strategies() -> list[str]:
    return sorted(STRATEGIES)


def strategy_class(name: str) -> type[Strategy]:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(available_strategies())}")
    return STRATEGIES[name]


def hyperparameters(name: str) -> dict[str, object]:
    """The strategy's hyper-parameters and their defaults (from its constructor)."""
    signature = inspect.signature(strategy_class(name).__init__)
    return {
        p.name: p.default
        for p in signature.parameters.values()
        if p.name not in ("self", "n_tasks") and p.kind is p.POSITIONAL_OR_KEYWORD
    }


def build_strategy(name: str, n_tasks: int, **hparams) -> Strategy:
    cls = strategy_class(name)
    known = hyperparameters(name)
    unknown = sorted(set(hparams) - set(known))
    if unknown:
        raise ValueError(
            f"strategy {name!r} has no hyper-parameter(s) {unknown}; its hyper-parameters are "
            f"{', '.join(f'{k}={v!r}' for k, v in known.items()) or 'none'}"
        )
    return cls(n_tasks, **hparams)


def level_of(name: str) -> str:
    """"loss-only", "gradient" (Gramian or Jacobian) or "hook" (needs the training loop)."""
    cls = strategy_class(name)
    if any(getattr(cls, hook) is not getattr(Strategy, hook) for hook in ("after_step",)):
        return "hook"
    return "loss-only" if cls.level == "loss" else "gradient"


__all__ = [
    "GradientAggregator", "GradientWeighting", "LossWeighting", "SPACES", "STRATEGIES", "SolverError",
    "Strategy", "available_strategies", "build_strategy", "hyperparameters", "level_of", "strategy_class",
]
