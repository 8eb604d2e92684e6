"""Aggregate scores of multi-task results (docs/protocols.md#scores-delta_m-and-mean-rank).

- :func:`delta_m`: Delta_m% of Maninis et al. 2019 (CVPR, "Attentive single-tasking of multiple
  tasks", eq. 5): ``(100/K) sum_k (-1)^{s_k} (M_k - B_k) / B_k`` with ``s_k = 1`` when higher is
  better and ``B`` the single-task baseline; lower is better. Averaged over the K metrics
  ("metric", the Nash-MTL/FAMO NYUv2 tables) or first within each task, then over tasks ("task").
- :func:`mean_rank`: rank the methods on every metric (1 = best, ties take the lower rank), then
  average over metrics (Navon et al. 2022, Table 2 "MR").
- :func:`seed_stats`: mean, sample std and the 95% confidence interval of the mean over seeds
  (Student's t with n - 1 degrees of freedom).
- :func:`paired_test`: paired t-test between two methods over the seeds both have.
"""
from __future__ import annotations

import math
from typing import Hashable, Mapping, Sequence

from ..protocol import AVERAGES, delta_m  # noqa: F401  (defined beside the selection rule that uses it)


def mean_rank(table, higher_is_better: Mapping[Hashable, bool]):
    """Mean rank of the rows of ``table`` (a DataFrame: methods x metric columns).

    Each column is ranked with 1 = best in its direction; ties take the lower (better) rank
    (``method="min"``). A row missing a value of a column gets no mean rank (NaN): averaged over
    fewer columns than the others, it would not be comparable with them. A column no row has is
    left out.
    """
    import pandas as pd

    ranks = pd.DataFrame(index=table.index)
    for column in table.columns:
        if table[column].notna().any():
            ranks[column] = table[column].rank(method="min", ascending=not higher_is_better[column])
    return ranks.mean(axis=1, skipna=False)


def seed_stats(values: Sequence[float], confidence: float = 0.95) -> dict:
    """``{n, mean, std, ci}`` of per-seed values; ``ci`` is the half-width of the two-sided
    ``confidence`` interval of the mean, ``t_{(1+c)/2, n-1} * std / sqrt(n)`` (NaN for n < 2)."""
    from scipy import stats

    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "ci": math.nan}
    mean = sum(xs) / n
    if n < 2:
        return {"n": 1, "mean": mean, "std": math.nan, "ci": math.nan}
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    ci = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci": ci}


def paired_test(values: Mapping[int, float], reference: Mapping[int, float]) -> dict:
    """Paired t-test (``scipy.stats.ttest_rel``) of ``values`` against ``reference``, both keyed by
    seed, over the seeds they share: ``{n, statistic, pvalue, mean_difference}`` (NaN for n < 2)."""
    from scipy import stats

    seeds = sorted(set(values) & set(reference))
    a = [float(values[s]) for s in seeds]
    b = [float(reference[s]) for s in seeds]
    diff = sum(x - y for x, y in zip(a, b)) / len(seeds) if seeds else math.nan
    if len(seeds) < 2:
        return {"n": len(seeds), "statistic": math.nan, "pvalue": math.nan, "mean_difference": diff}
    result = stats.ttest_rel(a, b)
    return {"n": len(seeds), "statistic": float(result.statistic), "pvalue": float(result.pvalue),
            "mean_difference": diff}
