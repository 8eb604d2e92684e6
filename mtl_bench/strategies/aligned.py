"""Aligned-MTL: aligning the task gradients by the condition number of their Gramian.

Senushkin, Patakin, Kuznetsov & Konushin, "Independent Component Alignment for Multi-Task
Learning", CVPR 2023 (arXiv 2305.19000), eq. 8-10 / Algorithm 1. Eigendecompose
``G = V diag(l) V^T``; drop eigenvalues ``l <= l_max T eps(float32)``; with the kept ones,

    B = sqrt(l_ref) V_r diag(l_r)^-1/2 V_r^T,       weights = B p

so the aligned gradients ``B J`` have the Gramian ``B G B = l_ref V_r V_r^T`` (condition number 1
on the span of the gradients). ``reference``: ``min`` (the smallest kept eigenvalue, official,
default), ``median`` or ``mean``; ``p`` is all ones (official) or ``preference`` (T values). Pure
tensor code on the device (no host sync). Heads get their unscaled loss gradient, as in the
official code (``scale_heads=False``).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .base import GradientWeighting

REFERENCES = ("min", "median", "mean")


def alignment_matrix(gramian: torch.Tensor, reference: str = "min") -> torch.Tensor:
    """B of Aligned-MTL from the Gramian (float64 internally)."""
    G = gramian.to(torch.float64)
    T = G.shape[0]
    eigenvalues, V = torch.linalg.eigh(G)
    tol = eigenvalues.max() * T * torch.finfo(torch.float32).eps
    kept = eigenvalues > tol
    masked = torch.where(kept, eigenvalues, torch.full_like(eigenvalues, float("nan")))
    if reference == "min":
        ref = torch.where(kept, eigenvalues, torch.full_like(eigenvalues, float("inf"))).min()
    elif reference == "median":
        ref = masked.nanmedian()
    elif reference == "mean":
        ref = masked.nanmean()
    else:
        raise ValueError(f"strategy.reference={reference!r}: choose one of {', '.join(REFERENCES)}")
    inv_sqrt = torch.where(kept, eigenvalues.clamp_min(torch.finfo(torch.float64).tiny).rsqrt(),
                           torch.zeros_like(eigenvalues))
    return ref.sqrt() * (V * inv_sqrt) @ V.T


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
        self.register_buffer("preference", torch.tensor([1.0] * n_tasks if preference is None else
                                                        [float(v) for v in preference], dtype=torch.float64))

    def weights(self, losses, gramian):
        B = alignment_matrix(gramian.detach().double().cpu(), self.reference)
        return (B @ self.preference.cpu()).to(device=gramian.device, dtype=gramian.dtype)
