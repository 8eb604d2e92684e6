"""Training: the trainer, gradient backends, checkpoints, run directories and cost accounting."""
from .experiment import run_experiment
from .gradients import GradientBackend
from .trainer import Trainer, TrainerConfig

__all__ = ["GradientBackend", "Trainer", "TrainerConfig", "run_experiment"]
