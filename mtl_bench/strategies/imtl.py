"""IMTL: impartial multi-task learning (loss part, gradient part, and both).

Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task Learning", ICLR 2021.

* ``imtl_l`` (section 3.2, eq. 5): learn ``s_i`` (s_0 = 0) and minimise
  ``L = sum_i (exp(s_i) L_i - s_i)``; the scale factors ``exp(s_i)`` are logged. ``s`` is trained
  by the model's optimiser (its own group without weight decay; ``lr`` sets a separate rate).
* ``imtl_g`` (section 3.1, eq. 4 and Algorithm 1): weights ``alpha`` summing to 1 such that the
  aggregated gradient ``g = sum_i alpha_i g_i`` has equal projections on every unit gradient
  ``u_i = g_i / ||g_i||``. The closed form ``alpha_{2..T} = g_1 U^T (D U^T)^-1`` (rows
  ``D_i = g_1 - g_i``, ``U_i = u_1 - u_i``) is equivalent to ``alpha proportional to G^-1 d`` with
  ``d_i = sqrt(G_ii)`` (``(G alpha)_i / ||g_i||`` is then the same for all i), normalised to sum 1;
  that is how it is computed here, from the Gramian, in float64 on the host (one copy of the
  T x T Gramian; a pseudo-inverse, so a singular Gramian gives the minimum-norm solution
  instead of an error). Usually run on
  representation gradients (the paper's choice, default here); Nash-MTL uses the shared
  parameters (``grad.space=params``). Following Algorithm 1, the task heads get their own
  (IMTL-L-scaled) loss gradient, unweighted by alpha (``scale_heads=False``).
* ``imtl``: both, the paper's full method: IMTL-L scales the losses, IMTL-G combines the
  gradients of the scaled losses (a :class:`~.compose.Composed` strategy).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import LossWeighting, SolverWeighting
from .compose import Composed
from .solvers import SolverError, one_blas_thread

PAPER = "Liu et al. ICLR 2021 (IMTL)"


class IMTLL(LossWeighting):
    paper = f"{PAPER}, eq. 5 (IMTL-L)"

    def __init__(self, n_tasks: int, init: float = 0.0, lr: float | None = None):
        super().__init__(n_tasks)
        self.lr = None if lr is None else float(lr)
        self.log_scales = nn.Parameter(torch.full((n_tasks,), float(init)))

    def combine(self, losses):
        s = self.log_scales.to(losses.dtype)
        scale = torch.exp(s)
        return (scale * losses - s).sum(), scale.detach()

    def weights(self, losses, gramian=None):
        return torch.exp(self.log_scales.detach()).to(losses.dtype)

    def optimizer_groups(self):
        group = {"params": [self.log_scales], "weight_decay": 0.0}
        if self.lr is not None:
            group["lr"] = self.lr
        return [group]


@one_blas_thread
def imtl_g_weights(gramian: torch.Tensor) -> torch.Tensor:
    """``alpha = G^+ d / sum(G^+ d)``, ``d_i = ||g_i||``: equal projections on the unit gradients.
    Raises SolverError when no such alpha exists (e.g. two opposite gradients: sum(G^+ d) = 0)."""
    G = gramian.detach().to(torch.float64).cpu().numpy()
    d = np.sqrt(np.maximum(np.diag(G), 0.0))
    raw = np.linalg.pinv(G, hermitian=True) @ d
    total = raw.sum()
    if not np.all(np.isfinite(raw)) or abs(total) <= 1e-12 * np.abs(raw).sum():
        raise SolverError("IMTL-G: no weights give equal projections (the task gradients cancel out)")
    return torch.from_numpy(raw / total).to(device=gramian.device, dtype=gramian.dtype)


class IMTLG(SolverWeighting):
    """Heads get their unscaled gradient as in the paper's Algorithm 1 (``scale_heads=False``);
    ``scale_heads=True`` gives them alpha_i times it, as the Nash-MTL code's weighted loss does."""

    paper = f"{PAPER}, eq. 4 / Alg. 1 (IMTL-G)"
    default_space = "representation"

    def __init__(self, n_tasks: int, scale_heads: bool = False):
        super().__init__(n_tasks)
        self.scale_heads = bool(scale_heads)

    def weights(self, losses, gramian):
        return self.solve(imtl_g_weights, gramian)


class IMTL(Composed):
    """IMTL-L then IMTL-G (the paper's hybrid IMTL)."""

    paper = f"{PAPER}, Alg. 1 (IMTL-L + IMTL-G)"
    default_space = "representation"
    needs = "gramian"
    composable = False

    def __init__(self, n_tasks: int, init: float = 0.0, lr: float | None = None):
        super().__init__(IMTLG(n_tasks), IMTLL(n_tasks, init=init, lr=lr))
        self.paper = IMTL.paper
