"""Aligned-MTL: aligning the task gradients by the condition number of their Gramian.

Senushkin, Patakin, Kuznetsov & Konushin, "Independent Component Alignment for Multi-Task
Learning", CVPR 2023 (arXiv 2305.19000), eq. 8-10 / Algorithm 1. Eigendecompose
``G = V diag(l) V^T``; drop eigenvalues ``l <= l_max T eps(float32)``; with the kept ones,

    B = sqrt(l_ref) V_r diag(l_r)^-1/2 V_r^T,       weights = B p

so the aligned gradients ``B J`` have the Gramian ``B G B = l_ref V_r V_r^T`` (condition number 1
on the span of the gradients). ``reference``: ``min`` (the smallest kept eigenvalue, official,
default), ``median`` or ``mean``; ``p`` is all ones (official) or ``preference`` (T values). The
T x T eigendecomposition runs in float64 NumPy on the host (one read of the Gramian per step, as
for every solver-based weighting). Heads get their unscaled loss gradient, as in the
official code (``scale_heads=False``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .base import GradientWeighting
from .solvers import one_blas_thread

REFERENCES = ("min", "median", "mean")


@one_blas_thread
def alignment_matrix(gramian, reference: str = "min") -> torch.Tensor:
    """B of Aligned-MTL from the Gramian (float64 NumPy on the host; returns a CPU tensor)."""
    G = np.asarray(gramian.detach().double().cpu().numpy() if isinstance(gramian, torch.Tensor) else gramian,
                   dtype=np.float64)
    T = G.shape[0]
    eigenvalues, V = np.linalg.eigh(0.5 * (G + G.T))
    tol = eigenvalues.max() * T * np.finfo(np.float32).eps
    kept = eigenvalues > tol
    if not kept.any():  # all gradients zero: nothing to align
        return torch.zeros((T, T), dtype=torch.float64)
    if reference == "min":
        ref = eigenvalues[kept].min()
    elif reference == "median":
        ref = np.sort(eigenvalues[kept])[(int(kept.sum()) - 1) // 2]  # the lower middle, as torch.median
    elif reference == "mean":
        ref = eigenvalues[kept].mean()
    else:
        raise ValueError(f"strategy.reference={reference!r}: choose one of {', '.join(REFERENCES)}")
    inv_sqrt = np.zeros_like(eigenvalues)
    inv_sqrt[kept] = 1.0 / np.sqrt(eigenvalues[kept])
    return torch.from_numpy(np.sqrt(ref) * (V * inv_sqrt) @ V.T)


class AlignedMTL(GradientWeighting):
    paper = "Senushkin et al. CVPR 2023, arXiv 2305.19000, Alg. 1"
    scale_heads = False

    def __init__(self, n_tasks: int, reference: str = "min", preference: Sequence[float] | None = None):
        super().__init__(n_tasks)
        if reference not in REFERENCES:
            raise ValueError(f"strategy.reference={reference!r}: choose one of {', '.join(REFERENCES)}")
        if preference is not None and len(preference) != n_tasks:
            raise ValueError(f"strategy.preference needs {n_tasks} values, got {len(preference)}")
        self.reference = reference
        self._preference = np.array([1.0] * n_tasks if preference is None else [float(v) for v in preference])

    def weights(self, losses, gramian):
        B = alignment_matrix(gramian, self.reference).numpy()
        w = B @ self._preference
        return torch.from_numpy(w).to(device=gramian.device, dtype=gramian.dtype)
