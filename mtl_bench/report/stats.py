"""Statistics that say when a difference is real (docs/statistics.md).

- :func:`bootstrap_ci`: percentile bootstrap interval of the mean over seeds
  (``scipy.stats.bootstrap``, seeded; Efron & Tibshirani 1993, ch. 13), beside the Student t
  interval of :func:`mtl_bench.report.scores.seed_stats`. Percentile, not BCa: with 3-5 seeds BCa's
  jackknife acceleration is degenerate or unstable. Both say little below 3 seeds.
- :func:`holm`: Holm's step-down correction of m p-values (Holm 1979, "A simple sequentially
  rejective multiple test procedure"): the i-th smallest becomes ``max_{j<=i} min(1, (m-j+1) p_(j))``;
  it controls the family-wise error rate of the comparisons against the reference.
- :func:`probability_of_improvement`: P(X better than Y) + P(tie) / 2 over all pairs of runs, the
  Mann-Whitney U statistic divided by ``n m`` (Agarwal et al. 2021, "Deep RL at the edge of the
  statistical precipice", NeurIPS, as in rliable's ``probability_of_improvement``).
- :func:`iqm`: interquartile mean, the mean of the middle 50% (``scipy.stats.trim_mean(x, 0.25)``,
  Agarwal et al. 2021); :func:`aggregate`: IQM and mean of Delta_m and the probability of
  improvement over a reference across benchmarks, with stratified bootstrap intervals (runs
  resampled within each benchmark, as rliable does); :func:`performance_profile`: the fraction of
  runs whose Delta_m is at most tau, each benchmark weighted equally.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
N_RESAMPLES = 9999
SEED = 0


def _rng(seed: int) -> dict:
    """The seeded generator of ``scipy.stats.bootstrap`` (``rng`` since scipy 1.15, ``random_state`` before)."""
    import inspect

    from scipy import stats

    name = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(seed)}


def _clean(values) -> np.ndarray:
    xs = np.asarray([float(v) for v in values if v is not None], dtype=float)
    return xs[~np.isnan(xs)]


def bootstrap_ci(values: Sequence[float], confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED) -> tuple[float, float]:
    """``(low, high)`` of the percentile bootstrap interval of the mean (NaN for fewer than 2 values)."""
    from scipy import stats

    xs = _clean(values)
    if len(xs) < 2:
        return math.nan, math.nan
    if np.all(xs == xs[0]):
        return float(xs[0]), float(xs[0])
    result = stats.bootstrap((xs,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", **_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values in the given order; NaN stays NaN and does not count in m."""
    ps = [float(p) for p in pvalues]
    order = sorted((p, i) for i, p in enumerate(ps) if not math.isnan(p))
    m = len(order)
    out = [math.nan] * len(ps)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def probability_of_improvement(x: Sequence[float], y: Sequence[float], lower_is_better: bool = True) -> float:
    """P(X improves on Y) + P(X ties Y) / 2 over all pairs of one value of X and one of Y."""
    xs, ys = _clean(x), _clean(y)
    if not len(xs) or not len(ys):
        return math.nan
    return float(_poi(xs, ys, lower_is_better))


def _poi(xs: np.ndarray, ys: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """Vectorised over leading axes: pairs along the last axis of each."""
    a, b = xs[..., :, None], ys[..., None, :]
    better = (a < b) if lower_is_better else (a > b)
    return (better + 0.5 * (a == b)).mean(axis=(-2, -1))


def iqm(values: Sequence[float]) -> float:
    from scipy import stats

    xs = _clean(values)
    return float(stats.trim_mean(xs, 0.25)) if len(xs) else math.nan


def _bootstrap(samples: list[np.ndarray], statistic, seed: int, n_resamples: int, confidence: float,
               width: int = 0):
    """Stratified percentile bootstrap: each sample (a benchmark's runs) resampled on its own.
    ``width``: the values ``statistic`` sees per resample, when more than the samples hold (pooled
    with repeats): above 4M values in all, the resamples go through in batches."""
    from scipy import stats

    if any(len(s) < 2 for s in samples) or all(np.all(s == s[0]) for s in samples):
        return math.nan, math.nan
    batch = None if width * n_resamples <= 2**22 else max(1, 2**22 // width)
    result = stats.bootstrap(tuple(samples), statistic, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", vectorized=True, batch=batch, **_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _equal_weights(samples) -> tuple[int, ...]:
    """How many times to repeat each benchmark's runs so that every benchmark weighs the same in a
    pooled statistic: ``lcm(sizes) / size`` (all 1 when the benchmarks have as many runs each,
    rliable's score matrix)."""
    common = math.lcm(*(len(s) for s in samples))
    return tuple(common // len(s) for s in samples)


def _pooled(statistic, repeats: tuple[int, ...]):
    """``statistic`` of the benchmarks' runs pooled, each benchmark's repeated ``repeats`` times
    (vectorised along ``axis`` for ``scipy.stats.bootstrap``)."""
    def pooled(*samples, axis=-1):
        return statistic(np.concatenate([np.repeat(s, r, axis=axis) for s, r in zip(samples, repeats)], axis=axis),
                         axis=axis)
    return pooled


def _trimmed(values, axis=-1):
    from scipy import stats

    return stats.trim_mean(values, 0.25, axis=axis)


def _mean(values, axis=-1):
    return np.mean(values, axis=axis)


def aggregate(runs: pd.DataFrame, reference: str = "ew", value: str = "delta_m", lower_is_better: bool = True,
              confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> pd.DataFrame:
    """One row per method across benchmarks (``runs``: one row per run with ``panel``, ``method``,
    ``value``): benchmarks, runs, IQM and mean of ``value`` over the benchmarks' runs pooled, every
    benchmark weighing the same (a benchmark with fewer runs has them repeated, see
    :func:`_equal_weights`; nothing changes when the counts are equal), with stratified bootstrap
    intervals, and the probability of improvement over ``reference`` (mean over the benchmarks both
    ran of the per-benchmark probability) with its interval."""
    runs = runs.dropna(subset=[value])
    out = []
    for method, mine in runs.groupby("method", sort=False):
        samples = [g[value].to_numpy(dtype=float) for _, g in mine.groupby("panel", sort=True)]  # benchmarks in name order
        repeats = _equal_weights(samples)
        iqm_of, mean_of = _pooled(_trimmed, repeats), _pooled(_mean, repeats)
        row = {"method": method, "benchmarks": len(samples), "runs": sum(len(s) for s in samples),
               "iqm": float(iqm_of(*samples)), "mean": float(mean_of(*samples))}
        width = sum(len(s) * r for s, r in zip(samples, repeats))
        row["iqm:low"], row["iqm:high"] = _bootstrap(samples, iqm_of, seed, n_resamples, confidence, width)
        row["mean:low"], row["mean:high"] = _bootstrap(samples, mean_of, seed, n_resamples, confidence, width)
        pairs = []
        for panel, group in mine.groupby("panel", sort=True):
            ref = runs[(runs["panel"] == panel) & (runs["method"] == reference)][value].to_numpy(dtype=float)
            if len(ref) and method != reference:
                pairs += [group[value].to_numpy(dtype=float), ref]
        row["poi"], row["poi:low"], row["poi:high"] = math.nan, math.nan, math.nan
        if pairs:
            def poi(*samples, axis=-1):
                values = [np.moveaxis(s, axis, -1) for s in samples]
                return np.mean([_poi(values[i], values[i + 1], lower_is_better) for i in range(0, len(values), 2)],
                               axis=0)
            row["poi"] = float(poi(*pairs))
            row["poi:low"], row["poi:high"] = _bootstrap(pairs, poi, seed, n_resamples, confidence)
            row["poi_benchmarks"] = len(pairs) // 2
        out.append(row)
    return pd.DataFrame(out)


def performance_profile(runs: pd.DataFrame, taus: Sequence[float], value: str = "delta_m") -> pd.DataFrame:
    """``method, tau, fraction``: per benchmark the fraction of a method's runs with ``value <= tau``,
    averaged over its benchmarks (Dolan & More 2002 profiles as used by Agarwal et al. 2021, for a
    lower-is-better score: the higher the curve, the better)."""
    runs = runs.dropna(subset=[value])
    rows = []
    for method, mine in runs.groupby("method", sort=False):
        groups = [g[value].to_numpy(dtype=float) for _, g in mine.groupby("panel", sort=False)]
        for tau in taus:
            rows.append({"method": method, "tau": float(tau),
                         "fraction": float(np.mean([(g <= tau).mean() for g in groups]))})
    return pd.DataFrame(rows)
