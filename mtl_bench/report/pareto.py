"""Pareto fronts of N tasks: non-dominated sorting and the hypervolume (docs/statistics.md).

- :func:`nondominated_ranks`: Deb et al. 2002 (NSGA-II) non-dominated sorting; rank 0 is the
  Pareto front, rank 1 the front once rank 0 is removed, and so on.
- :func:`hypervolume`: the Lebesgue measure of the region dominated by the points and bounded by a
  reference point (Zitzler & Thiele 1998), computed exactly by slicing one objective at a time
  (While et al. 2006, "HSO"): fine for the tens of points and few tasks of a benchmark.

Both take ``maximize`` per objective; internally everything is minimised.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _as_min(points, maximize: Sequence[bool]) -> np.ndarray:
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2:
        raise ValueError("points must be a 2-D array: one row per point, one column per objective")
    signs = np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
    return pts * signs


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` at least as good on every objective and better on one (minimisation)."""
    return bool(np.all(a <= b) and np.any(a < b))


def nondominated_ranks(points, maximize: Sequence[bool]) -> np.ndarray:
    """The non-domination rank of every point (0: on the Pareto front)."""
    pts = _as_min(points, maximize)
    ranks = np.full(len(pts), -1)
    left = list(range(len(pts)))
    rank = 0
    while left:
        front = [i for i in left if not any(dominates(pts[j], pts[i]) for j in left if j != i)]
        ranks[front] = rank
        left = [i for i in left if i not in front]
        rank += 1
    return ranks


def hypervolume(points, reference, maximize: Sequence[bool]) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (points not strictly better
    than the reference on every objective add nothing)."""
    pts = _as_min(points, maximize)
    ref = _as_min(np.asarray(reference, dtype=float)[None, :], maximize)[0]
    pts = pts[np.all(pts < ref, axis=1)]
    return float(_slice_volume(pts, ref))


def _slice_volume(pts: np.ndarray, ref: np.ndarray) -> float:
    if len(pts) == 0:
        return 0.0
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    pts = pts[np.argsort(pts[:, -1], kind="stable")]
    volume = 0.0
    for i in range(len(pts)):
        top = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        height = top - pts[i, -1]
        if height > 0:   # between this point's last objective and the next, the first i+1 points dominate
            volume += height * _slice_volume(pts[: i + 1, :-1], ref[:-1])
    return volume
