"""Scores (docs/protocols.md#scores-delta_m-and-mean-rank) on published and hand-made numbers."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from mtl_bench.report.papers import load_published, printed_scores, published_table
from mtl_bench.report.scores import delta_m, mean_rank, paired_test, seed_stats


def test_nyuv2_published_delta_m_reproduces_the_printed_column_except_imtl_g():
    table = published_table("nash_mtl_nyuv2", delta_average="metric").frame.set_index("method")
    printed = printed_scores("nash_mtl_nyuv2").set_index("method")["printed_delta_m"].dropna()
    assert len(printed) == 12
    for method, value in printed.items():
        recomputed = table.loc[method, "delta_m"]
        if method == "imtl_g_nash":
            assert recomputed == pytest.approx(-0.60, abs=0.005)
            assert value == -0.76
            assert table.loc[method, "inconsistent"]
        else:
            assert abs(recomputed - value) <= 0.01, method
            assert not table.loc[method, "inconsistent"], method
    assert table.loc["stl", "delta_m"] == 0


def test_nyuv2_delta_m_by_hand_for_one_row():
    """LS row against STL, the 9 metrics one by one (Maninis et al. 2019 eq. 5)."""
    long = load_published("nash_mtl_nyuv2")
    ls = long[long["method"] == "ew"].set_index(["task", "metric"])
    stl = long[long["method"] == "stl"].set_index(["task", "metric"])
    terms = []
    for key in ls.index:
        m, b, up = ls.loc[key, "value"], stl.loc[key, "value"], ls.loc[key, "higher_is_better"]
        terms.append((-1 if up else 1) * (m - b) / b)
    by_hand = 100 * sum(terms) / 9
    values = {k: ls.loc[k, "value"] for k in ls.index}
    dirs = {k: bool(ls.loc[k, "higher_is_better"]) for k in ls.index}
    assert delta_m(values, stl["value"].to_dict(), dirs) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(5.59, abs=0.01)
    # per-task averaging gives another number (3 tasks, not 9 metrics)
    assert abs(delta_m(values, stl["value"].to_dict(), dirs, average="task") - by_hand) > 0.1


def test_delta_m_per_task_and_per_metric_on_a_hand_made_case():
    # task a: one metric 10% better (accuracy up); task b: three metrics, errors 20% worse, 0, 0.
    values = {("a", "acc"): 0.55, ("b", "e1"): 1.2, ("b", "e2"): 2.0, ("b", "e3"): 3.0}
    base = {("a", "acc"): 0.50, ("b", "e1"): 1.0, ("b", "e2"): 2.0, ("b", "e3"): 3.0}
    dirs = {("a", "acc"): True, ("b", "e1"): False, ("b", "e2"): False, ("b", "e3"): False}
    # per metric: (-10 + 20 + 0 + 0) / 4 = 2.5 ; per task: (-10 + 20/3) / 2 = -1.6667
    assert delta_m(values, base, dirs, average="metric") == pytest.approx(2.5)
    assert delta_m(values, base, dirs, average="task") == pytest.approx((-10 + 20 / 3) / 2)
    assert delta_m(base, base, dirs) == 0
    with pytest.raises(KeyError):
        delta_m({("c", "x"): 1.0}, base, dirs)
    with pytest.raises(ValueError):
        delta_m(values, base, dirs, average="seed")


def test_mean_rank_directions_and_ties():
    table = pd.DataFrame({"acc": [0.9, 0.8, 0.9, 0.7], "err": [3.0, 1.0, 2.0, 2.0]},
                         index=["A", "B", "C", "D"])
    mr = mean_rank(table, {"acc": True, "err": False})
    # acc (higher better): A=1, C=1 (tie takes the lower rank), B=3, D=4
    # err (lower better):  B=1, C=2, D=2 (tie), A=4
    assert mr.to_dict() == {"A": 2.5, "B": 2.0, "C": 1.5, "D": 3.0}


def test_mean_rank_single_column_and_all_tied():
    table = pd.DataFrame({"loss": [1.0, 1.0, 1.0]}, index=["x", "y", "z"])
    assert mean_rank(table, {"loss": False}).tolist() == [1.0, 1.0, 1.0]
    table = pd.DataFrame({"loss": [3.0, 1.0, 2.0]}, index=["x", "y", "z"])
    assert mean_rank(table, {"loss": False}).tolist() == [3.0, 1.0, 2.0]
    assert mean_rank(table, {"loss": True}).tolist() == [1.0, 3.0, 2.0]


def test_seed_stats_against_scipy():
    xs = [96.1, 96.8, 95.9, 96.4]
    out = seed_stats(xs)
    low, high = stats.t.interval(0.95, len(xs) - 1, loc=stats.tmean(xs), scale=stats.sem(xs))
    assert out["n"] == 4
    assert out["mean"] == pytest.approx(sum(xs) / 4)
    assert out["std"] == pytest.approx(stats.tstd(xs))
    assert out["mean"] - out["ci"] == pytest.approx(low)
    assert out["mean"] + out["ci"] == pytest.approx(high)
    assert math.isnan(seed_stats([1.0])["ci"]) and seed_stats([1.0])["mean"] == 1.0
    assert seed_stats([])["n"] == 0


def test_paired_test_against_scipy_over_matching_seeds():
    mine = {0: 1.0, 1: 2.5, 2: 0.3, 3: 4.0}
    ref = {0: 1.5, 1: 2.0, 2: 1.3, 4: 9.9}   # seed 3 and 4 unmatched: left out
    out = paired_test(mine, ref)
    expected = stats.ttest_rel([1.0, 2.5, 0.3], [1.5, 2.0, 1.3])
    assert out["n"] == 3
    assert out["pvalue"] == pytest.approx(expected.pvalue)
    assert out["statistic"] == pytest.approx(expected.statistic)
    assert out["mean_difference"] == pytest.approx((-0.5 + 0.5 - 1.0) / 3)
    assert math.isnan(paired_test({0: 1.0}, {0: 2.0})["pvalue"])
