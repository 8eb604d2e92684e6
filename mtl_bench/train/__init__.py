"""Training: the trainer, gradient backends, checkpoints, run directories and cost accounting.

The torch-heavy members load on first use, so ``mtl_bench.train.run_dir`` (the run directory
contract, read by the report layer) imports without torch.
"""
from importlib import import_module

_LAZY = {"run_experiment": ".experiment", "build_trainer": ".experiment", "GradientBackend": ".gradients", "Trainer": ".trainer",
         "TrainerConfig": ".trainer"}

__all__ = ["GradientBackend", "Trainer", "TrainerConfig", "build_trainer", "run_experiment"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
