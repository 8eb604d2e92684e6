"""The fully connected trunk of the GradNorm toy problem (Chen et al. 2018, section 4):
four layers of 100 units shared by all tasks, then one linear head per task."""
from __future__ import annotations

from torch import nn

from .multitask import MultiTaskModel

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def mlp_trunk(input_dim: int, hidden: int = 100, layers: int = 4, activation: str = "relu") -> nn.Sequential:
    if activation not in ACTIVATIONS:
        raise ValueError(f"model.activation={activation!r} is unknown; choose one of {sorted(ACTIVATIONS)}")
    modules: list[nn.Module] = []
    width = input_dim
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
        width = hidden
    return nn.Sequential(*modules)


def build_mlp(tasks: list[str], input_dim: int, output_dim: int | dict[str, int], hidden: int = 100, layers: int = 4,
              activation: str = "relu") -> MultiTaskModel:
    """``output_dim``: one size for every head, or ``{task: size}``."""
    trunk = mlp_trunk(input_dim, hidden, layers, activation)
    last_linear = [m for m in trunk if isinstance(m, nn.Linear)][-1]
    sizes = output_dim if isinstance(output_dim, dict) else {t: output_dim for t in tasks}
    heads = {t: nn.Linear(hidden, sizes[t]) for t in tasks}
    return MultiTaskModel(trunk, heads, last_shared_layer=last_linear)
