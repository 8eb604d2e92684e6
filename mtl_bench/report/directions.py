"""Metric directions and display units, known without importing torch.

Runs record ``higher_is_better`` of every metric in ``summary.json`` (key ``directions``, written
by the trainer from each :class:`mtl_bench.data.tasks.Metric`). Older run dirs, published tables
and hand-made frames fall back to :data:`KNOWN`, the directions of the metrics mtl-bench ships.
"""
from __future__ import annotations

# metric name -> higher_is_better (a mirror of the Metric classes in mtl_bench/data)
KNOWN: dict[str, bool] = {
    "accuracy": True, "error": False, "loss": False, "mse": False, "normalized_loss": False,
    "f1": True, "miou": True, "pixel_accuracy": True, "abs_error": False, "rel_error": False,
    "mean_angle": False, "median_angle": False, "weight": True,
    # gradient diagnostics (split=diagnostics, mtl_bench/train/diagnostics.py): descriptions, not scores; the
    # direction says which way the gradients agree more (cosines up, conflicts and ill-conditioning down)
    "cosine": True, "cosine_mean": True, "update_cosine": True, "conflict_fraction": False,
    "gramian_condition": False, "grad_norm": False, "update_norm": False,
}
# metric name -> factor from the stored value to the value shown in tables (fractions as %)
DISPLAY_SCALE: dict[str, float] = {"accuracy": 100.0, "f1": 100.0, "miou": 100.0, "pixel_accuracy": 100.0}


def higher_is_better(metric: str, recorded: bool | None = None) -> bool:
    """The direction of ``metric``: the recorded one when given, else the known table."""
    if recorded is not None:
        return bool(recorded)
    if metric in KNOWN:
        return KNOWN[metric]
    if metric.startswith("within_"):  # fraction of normals within t degrees
        return True
    raise ValueError(f"the direction of metric {metric!r} is unknown: the run's summary.json has no "
                     f"'directions' entry for it; add it to mtl_bench/report/directions.py KNOWN")


def display_scale(metric: str) -> float:
    if metric.startswith("within_"):
        return 100.0
    return DISPLAY_SCALE.get(metric, 1.0)


def arrow(metric: str, recorded: bool | None = None) -> str:
    return "↑" if higher_is_better(metric, recorded) else "↓"


def label(metric: str) -> str:
    """Column label of a metric in its display unit (``accuracy %``)."""
    return f"{metric} %" if display_scale(metric) == 100.0 else metric
