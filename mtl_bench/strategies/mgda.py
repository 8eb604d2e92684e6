"""MGDA: the multiple-gradient descent algorithm as a min-norm problem.

Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018
(arXiv 1810.04650), eq. 3 / Algorithm 2: ``w = argmin_{w in simplex} || sum_i w_i g_i ||^2``,
which needs only the Gramian. Run in ``grad.space=representation`` it is MGDA-UB (section 3.3,
the paper's proposed method and its default here); ``grad.space=params`` is plain MGDA.

``normalization`` changes the solver's input only (the update uses the raw gradients):
``none``, ``l2`` (g_i / ||g_i||), ``loss`` (g_i / L_i), ``loss+`` (g_i / (L_i ||g_i||), the
authors' configuration, default). Weights sum to 1 (``weights_sum="n_tasks"`` multiplies them by
T, as the Nash-MTL code does).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import SolverWeighting
from .solvers import min_norm_weights

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def normalize_gramian(gramian: torch.Tensor, losses: torch.Tensor, normalization: str) -> torch.Tensor:
    """The Gramian of ``g_i / n_i`` for the normalisation's ``n_i``: ``G_ij / (n_i n_j)``."""
    if normalization == "none":
        return gramian
    norms = gramian.diagonal().clamp_min(0).sqrt()
    if normalization == "l2":
        scale = norms
    elif normalization == "loss":
        scale = losses
    elif normalization == "loss+":
        scale = losses * norms
    else:
        raise ValueError(f"strategy.normalization={normalization!r}: choose one of {NORMALIZATIONS}")
    scale = scale.clamp_min(1e-12)
    return gramian / (scale[:, None] * scale[None, :])


class MGDA(SolverWeighting):
    paper = "Sener & Koltun NeurIPS 2018, arXiv 1810.04650, eq. 3 / Alg. 2"
    default_space = "representation"

    def __init__(self, n_tasks: int, normalization: str = "loss+", weights_sum: str = "one",
                 max_iter: int = 250, tol: float = 1e-5):
        super().__init__(n_tasks)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"strategy.normalization={normalization!r}: choose one of {NORMALIZATIONS}")
        if weights_sum not in ("one", "n_tasks"):
            raise ValueError(f"strategy.weights_sum={weights_sum!r}: choose 'one' or 'n_tasks'")
        self.normalization = normalization
        self.weights_sum = weights_sum
        self.max_iter = int(max_iter)
        self.tol = float(tol)

    def weights(self, losses, gramian):
        G = normalize_gramian(gramian.double(), losses.double(), self.normalization)
        w = self.solve(min_norm_weights, G.cpu().numpy(), self.max_iter, self.tol)
        if self.weights_sum == "n_tasks":
            w = w * self.n_tasks
        return torch.as_tensor(np.ascontiguousarray(w), dtype=gramian.dtype, device=gramian.device)
