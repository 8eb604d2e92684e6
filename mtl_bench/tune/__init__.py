"""Fair tuning: one Optuna study per method, the same budget for every method (docs/tuning.md)."""
from .space import load_space, method_params
from .study import Tuner, read_state, trials_spent, tuned_keys

__all__ = ["Tuner", "load_space", "method_params", "read_state", "trials_spent", "tuned_keys"]
