"""Strategies: how T task losses or gradients become one update (see :mod:`.base`).

``build_strategy(name, n_tasks, **hparams)`` builds one by name with its paper's defaults for
whatever ``hparams`` leaves out; ``available_strategies()`` lists the built-in names. A user's
strategy is a subclass of :class:`LossWeighting`, :class:`GradientWeighting` or
:class:`GradientAggregator` in the user's own module, named by its dotted path
(``build_strategy("my_mtl.Mine", T)``, or ``_target_: my_mtl.Mine`` in a strategy config:
:func:`strategy_from_config`). Every gradient
method also takes ``loss_weighting`` (a loss weighting's name, or a mapping ``{name: ..., **its
hyper-parameters}``): the weighting scales each task loss, then the method combines the gradients
of the weighted losses (:mod:`.compose`).
"""
from __future__ import annotations

import inspect

from .aligned import AlignedMTL
from .base import GradientAggregator, GradientWeighting, LossWeighting, SPACES, SolverWeighting, Strategy
from .cagrad import CAGrad
from .compose import Composed, parse_loss_weighting
from .db_mtl import DBMTL
from .dtp import DynamicTaskPrioritization
from .dwa import DynamicWeightAverage
from .famo import FAMO
from .graddrop import GradDrop
from .gradnorm import GradNorm
from .imtl import IMTL, IMTLG, IMTLL
from .logscale import GeometricLoss, ScaleInvariant
from .mgda import MGDA
from .nash import NashMTL
from .projection import GradVac, PCGrad
from .rlw import RandomLossWeighting
from .simple import EqualWeighting, StaticWeighting
from .slaw import SLAW
from .solvers import SolverError
from .upgrad import UPGrad
from .uw import UncertaintyWeighting

STRATEGIES: dict[str, type[Strategy]] = {
    "ew": EqualWeighting,
    "static": StaticWeighting,
    "uw": UncertaintyWeighting,
    "dwa": DynamicWeightAverage,
    "si": ScaleInvariant,
    "gls": GeometricLoss,
    "rlw": RandomLossWeighting,
    "dtp": DynamicTaskPrioritization,
    "slaw": SLAW,
    "imtl_l": IMTLL,
    "famo": FAMO,
    "gradnorm": GradNorm,
    "mgda": MGDA,
    "pcgrad": PCGrad,
    "gradvac": GradVac,
    "graddrop": GradDrop,
    "cagrad": CAGrad,
    "imtl_g": IMTLG,
    "imtl": IMTL,
    "nash": NashMTL,
    "aligned": AlignedMTL,
    "db_mtl": DBMTL,
    "upgrad": UPGrad,
}

#: hooks that make a strategy need the training loop itself (level "hook")
HOOKS = ("after_step", "on_epoch_end", "feed_kpi")


def composable(cls: type[Strategy]) -> bool:
    """Whether ``loss_weighting`` can be given (every gradient method except ready-made pairs)."""
    return cls.level == "gradient" and getattr(cls, "composable", True)


def available_strategies() -> list[str]:
    return sorted(STRATEGIES)


def strategy_class(name) -> type[Strategy]:
    """A built-in name (``mgda``), a dotted path to a user's class (``my_mtl.Mine``) or a class."""
    if isinstance(name, str) and name in STRATEGIES:
        return STRATEGIES[name]
    if isinstance(name, str) and "." not in name:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(available_strategies())}, "
                         "or a dotted path to your own class (strategy._target_=my_mtl.Mine)")
    from ..plugins import locate

    cls = locate(name, "strategy._target_") if isinstance(name, str) else name
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ValueError(f"strategy {name!r} is not a strategy class: subclass mtl_bench.strategies.LossWeighting, "
                         "GradientWeighting or GradientAggregator")
    if cls not in STRATEGIES.values():
        check_contract(cls, getattr(name, "__name__", name))
    return cls


# what the training loop calls on each kind of strategy: (its base, the method, example arguments)
_CONTRACTS = (
    (GradientAggregator, "aggregate", ((None, None, None), {"representation": None})),
    (GradientWeighting, "weights", ((None,), {"losses": None, "gramian": None})),
    (LossWeighting, "weights", ((None, None), {})),
)


def check_contract(cls: type[Strategy], name) -> None:
    """A user's strategy class can be built and called as the loop calls it, checked before the
    first step: ``__init__(self, n_tasks, ...)`` (else the task count fills its first
    hyper-parameter silently) and its level's method defined and callable with the loop's arguments
    (``weights(losses)`` for a loss weighting, unless it defines ``combine``; ``weights(losses=,
    gramian=)``; ``aggregate(jacobian, losses, representation=)``)."""
    params = [p for p in inspect.signature(cls.__init__).parameters.values()][1:]
    if not params or params[0].name != "n_tasks":
        raise ValueError(f"strategy {name}: its constructor must take the number of tasks first, "
                         f"def __init__(self, n_tasks, ...); it takes ({', '.join(p.name for p in params)})")
    contract = next((c for c in _CONTRACTS if issubclass(cls, c[0])), None)
    if contract is None:  # a Strategy of its own kind: nothing known to check
        return
    base, method, (args, kwargs) = contract
    if base is LossWeighting and cls.combine is not LossWeighting.combine:
        return  # its own combine: weights() is not called by the loop
    if getattr(cls, method) is getattr(base, method):
        raise ValueError(f"strategy {name} does not define {method}(): a {base.__name__} must "
                         "(README, 'Bring your own method, model and data')")
    try:
        inspect.signature(getattr(cls, method)).bind(*args, **kwargs)
    except TypeError:
        call = ", ".join([*("x" for _ in args[1:]), *(f"{k}=" for k in kwargs)])
        raise ValueError(f"strategy {name}.{method}{inspect.signature(getattr(cls, method))} cannot be called as "
                         f"the training loop calls it: {method}({call})") from None


def hyperparameters(name) -> dict[str, object]:
    """The strategy's hyper-parameters and their defaults (from its constructor)."""
    cls = strategy_class(name)
    signature = inspect.signature(cls.__init__)
    params = {
        p.name: p.default
        for p in signature.parameters.values()
        if p.name not in ("self", "n_tasks") and p.kind is p.POSITIONAL_OR_KEYWORD
    }
    if composable(cls):
        params["loss_weighting"] = None
    return params


def strategy_from_config(node, n_tasks: int) -> Strategy:
    """The strategy of a config node: its ``_target_`` class (a user's or a built-in one) or,
    without ``_target_``, the built-in of its ``name``; the other keys except ``space`` are its
    hyper-parameters."""
    from ..plugins import node_params

    name, target = node.get("name"), node.get("_target_")
    cls = strategy_class(target or name)
    builtin = {c: n for n, c in STRATEGIES.items()}
    if target and name and cls in builtin and STRATEGIES.get(name) is not cls:
        raise ValueError(f"unknown strategy {name!r} for {target} (built in as {builtin[cls]!r}): strategy.name only "
                         f"labels a run; choose a strategy with strategy=NAME: {', '.join(available_strategies())}")
    return build_strategy(cls, n_tasks, **node_params(node, drop=("space",)))


def build_strategy(name, n_tasks: int, **hparams) -> Strategy:
    """``name``: a built-in name, a dotted path to a strategy class, or the class itself."""
    cls = strategy_class(name)
    hparams = dict(hparams)
    weighting = parse_loss_weighting(hparams.pop("loss_weighting", None)) if composable(cls) else None
    known = hyperparameters(name)
    unknown = sorted(set(hparams) - set(known))
    if unknown:
        raise ValueError(
            f"strategy {getattr(name, '__name__', name)!r} has no hyper-parameter(s) {unknown}; its hyper-parameters are "
            f"{', '.join(f'{k}={v!r}' for k, v in known.items()) or 'none'}"
        )
    strategy = cls(n_tasks, **hparams)
    if weighting is None:
        return strategy
    weighting_name, weighting_hparams = weighting
    choices = ", ".join(n for n in available_strategies() if STRATEGIES[n].level == "loss")
    try:
        weighting_class = strategy_class(weighting_name)
    except ValueError:
        if "." in str(weighting_name):  # a dotted path: its own error says what is wrong with it
            raise
        raise ValueError(f"strategy.loss_weighting={weighting_name!r} is not a strategy; choose a loss weighting: "
                         f"{choices}, or a dotted path to your own") from None
    if weighting_class.level != "loss":
        raise ValueError(f"strategy.loss_weighting={weighting_name!r} is a gradient method; choose a loss weighting: "
                         f"{choices}")
    return Composed(strategy, build_strategy(weighting_name, n_tasks, **weighting_hparams))


def level_of(name) -> str:
    """"loss-only", "gradient" (Gramian or Jacobian) or "hook": a loss weighting that needs the
    training loop itself (after_step: FAMO; on_epoch_end: DWA; KPI feed: DTP)."""
    cls = strategy_class(name)
    if cls.level == "gradient":
        return "gradient"
    if cls.needs_kpi or any(getattr(cls, hook) is not getattr(Strategy, hook) for hook in HOOKS):
        return "hook"
    return "loss-only"


__all__ = [
    "Composed", "GradientAggregator", "GradientWeighting", "LossWeighting", "SPACES", "STRATEGIES", "SolverError",
    "Strategy", "available_strategies", "build_strategy", "hyperparameters", "level_of", "strategy_class",
    "strategy_from_config", "LossWeighting", "GradientWeighting", "SolverWeighting",
]
