"""Bootstrap CIs, Holm-corrected p-values, probability of improvement and rliable-style aggregates
(issue 13), each checked against a direct scipy computation on a hand-made results table."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mtl_bench.cli import main
from mtl_bench.report import plots
from mtl_bench.report.aggregate import aggregate_table
from mtl_bench.report.collect import Collection, write_table
from mtl_bench.report.pipeline import make_table
from mtl_bench.report.stats import bootstrap_ci, holm, iqm, probability_of_improvement

BOTH = ["left", "right"]
SEEDS = (0, 1, 2, 3)
# test accuracy of every task of a run, per (dataset, method) and seed; stl runs score 0.5, so a
# run's Delta_m% is -100 (v - 0.5) / 0.5 = 100 - 200 v
VALUES = {
    ("mm", "ew"): [0.60, 0.62, 0.58, 0.61],
    ("mm", "uw"): [0.63, 0.61, 0.64, 0.62],
    ("mm", "mgda"): [0.55, 0.60, 0.57, 0.61],
    ("mm", "cagrad"): [0.60, 0.62, 0.585, 0.66],
    ("cc", "ew"): [0.70, 0.72, 0.71, 0.69],
    ("cc", "uw"): [0.72, 0.71, 0.75, 0.70],
    ("cc", "mgda"): [0.71, 0.72, 0.69, 0.68],
    ("cc", "cagrad"): [0.70, 0.74, 0.73, 0.72],
}


def tidy() -> Collection:
    rows = []

    def add(dataset, strategy, tasks, seed, value):
        run = f"{dataset}-{strategy}-{'+'.join(tasks)}-s{seed}"
        info = {"run": run, "status": "completed", "dataset": dataset, "strategy": strategy, "seed": seed,
                "tasks": ",".join(tasks), "n_tasks": len(tasks), "seconds_per_epoch": 1.0, "sel_rule": "last",
                "sel_split": "val", "sel_metric": None, "sel_k": 10, "sel_average": "metric",
                "cfg.dataset.tasks": str(tasks), "cfg.strategy.name": strategy}
        for split in ("val", "test"):
            for task in tasks:
                rows.append({**info, "epoch": 0, "step": 0, "split": split, "task": task, "metric": "accuracy",
                             "value": value, "higher_is_better": True})
    for (dataset, strategy), values in VALUES.items():
        for seed, value in zip(SEEDS, values):
            add(dataset, strategy, BOTH, seed, value)
    for dataset in ("mm", "cc"):
        for seed in SEEDS:
            for task in BOTH:
                add(dataset, "ew", [task], seed, 0.5)
    results = pd.DataFrame(rows)
    return Collection(results=results, runs=results.drop_duplicates("run").assign(reason=""))


def deltas(dataset, method) -> np.ndarray:
    return 100.0 - 200.0 * np.asarray(VALUES[(dataset, method)])


def test_bootstrap_intervals_equal_scipy_with_the_same_seed():
    table, _ = make_table(tidy(), ci="bootstrap")
    frame = table.frame.set_index(["panel", "method"])
    for (dataset, method) in VALUES:
        for column, values in (("delta_m", deltas(dataset, method)), ("left/accuracy", VALUES[(dataset, method)])):
            expected = stats.bootstrap((np.asarray(values, dtype=float),), np.mean, confidence_level=0.95,
                                       n_resamples=9999, method="percentile", rng=np.random.default_rng(0))
            row = frame.loc[(dataset, method)]
            assert row[f"{column}:low"] == pytest.approx(expected.confidence_interval.low, rel=1e-12)
            assert row[f"{column}:high"] == pytest.approx(expected.confidence_interval.high, rel=1e-12)
            assert row[column] == pytest.approx(np.mean(values))
    md = table.to_markdown()
    row = frame.loc[("mm", "uw")]
    assert f"{row['delta_m']:.2f} [{row['delta_m:low']:.2f}, {row['delta_m:high']:.2f}]" in md
    assert "percentile bootstrap of the mean, 9999 resamples, seed 0" in md
    assert all(math.isnan(v) for v in bootstrap_ci([1.0]))   # one value: nothing to resample
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)


def _holm_by_hand(ps):
    """Holm 1979 step-down, written out: sort, multiply by m - rank, running maximum, cap at 1."""
    order = np.argsort(ps)
    adjusted = np.empty(len(ps))
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def test_holm_corrected_p_values_against_a_direct_computation():
    table, _ = make_table(tidy(), correction="holm")
    raw_table, _ = make_table(tidy())
    for dataset in ("mm", "cc"):
        methods = ["uw", "mgda", "cagrad"]
        raw = np.array([stats.ttest_rel(deltas(dataset, m), deltas(dataset, "ew")).pvalue for m in methods])
        frame = table.frame.set_index(["panel", "method"])
        for method, p_raw, p_holm in zip(methods, raw, _holm_by_hand(raw)):
            assert frame.loc[(dataset, method), "p_raw"] == pytest.approx(p_raw, rel=1e-12)
            assert frame.loc[(dataset, method), "p"] == pytest.approx(p_holm, rel=1e-12)
            assert raw_table.frame.set_index(["panel", "method"]).loc[(dataset, method), "p"] == pytest.approx(p_raw)
        assert math.isnan(frame.loc[(dataset, "ew"), "p"])
        try:   # statsmodels, when installed, agrees
            from statsmodels.stats.multitest import multipletests
        except ImportError:
            continue
        assert np.allclose(multipletests(raw, method="holm")[1], _holm_by_hand(raw))
    assert holm([0.01, 0.04, 0.03, math.nan])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, 0.9]) == pytest.approx([0.4, 0.9]) and holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    md = table.to_markdown()
    assert "p vs ew (Holm)" in md and "Holm-corrected" in md
    assert "Holm" not in raw_table.to_markdown()


def test_probability_of_improvement_is_the_mann_whitney_statistic_over_all_pairs():
    table, _ = make_table(tidy(), poi=True)
    frame = table.frame.set_index(["panel", "method"])
    for dataset in ("mm", "cc"):
        for method in ("uw", "mgda", "cagrad"):
            x, y = deltas(dataset, method), deltas(dataset, "ew")
            # lower Delta_m is better: P(X < Y) + P(X = Y)/2 is U of (Y, X) over n m
            expected = stats.mannwhitneyu(y, x).statistic / (len(x) * len(y))
            assert frame.loc[(dataset, method), "poi"] == pytest.approx(expected, rel=1e-12)
    # ties count one half; higher-is-better flips the comparison
    assert probability_of_improvement([1, 2], [2, 3]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert probability_of_improvement([1, 2], [2, 3], lower_is_better=False) == pytest.approx(0.5 / 4)
    assert "P(Δm < ew)" in table.to_markdown()


def test_aggregate_across_benchmarks_iqm_poi_and_stratified_bootstrap():
    table, _ = make_table(tidy())
    summary = aggregate_table(table).frame.set_index("method")
    for method in ("ew", "uw", "mgda", "cagrad"):
        pooled = np.concatenate([deltas("mm", method), deltas("cc", method)])
        assert summary.loc[method, "iqm"] == pytest.approx(stats.trim_mean(pooled, 0.25), rel=1e-12)
        assert summary.loc[method, "mean"] == pytest.approx(pooled.mean(), rel=1e-12)
        assert summary.loc[method, "benchmarks"] == 2 and summary.loc[method, "runs"] == 8

        def pooled_iqm(a, b, axis=-1):
            return stats.trim_mean(np.concatenate([a, b], axis=axis), 0.25, axis=axis)
        # stratified: each benchmark's runs resampled on their own, benchmarks in name order
        expected = stats.bootstrap((deltas("cc", method), deltas("mm", method)), pooled_iqm, n_resamples=9999,
                                   method="percentile", rng=np.random.default_rng(0))
        assert summary.loc[method, "iqm:low"] == pytest.approx(expected.confidence_interval.low, rel=1e-12)
        assert summary.loc[method, "iqm:high"] == pytest.approx(expected.confidence_interval.high, rel=1e-12)
        assert summary.loc[method, "iqm:low"] <= summary.loc[method, "iqm"] <= summary.loc[method, "iqm:high"]
    for method in ("uw", "mgda", "cagrad"):
        per_benchmark = [stats.mannwhitneyu(deltas(d, "ew"), deltas(d, method)).statistic / 16 for d in ("mm", "cc")]
        assert summary.loc[method, "poi"] == pytest.approx(np.mean(per_benchmark), rel=1e-12)
        assert summary.loc[method, "poi:low"] <= summary.loc[method, "poi"] <= summary.loc[method, "poi:high"]
    assert math.isnan(summary.loc["ew", "poi"])
    assert iqm([1, 2, 3, 4, 100, -100, 5, 6]) == pytest.approx(stats.trim_mean([1, 2, 3, 4, 100, -100, 5, 6], 0.25))


def test_plots_draw_the_table_numbers(tmp_path):
    table, _ = make_table(tidy(), ci="bootstrap", correction="holm")
    bars = plots.delta(table, out=tmp_path).set_index(["panel", "method"])
    frame = table.frame.set_index(["panel", "method"])
    for key in bars.index:
        assert bars.loc[key, "low"] == frame.loc[key, "delta_m:low"]
        assert bars.loc[key, "p"] == frame.loc[key, "p"] or key[1] == "ew"
    assert "percentile bootstrap" in bars.attrs["note"] and "Holm" in bars.attrs["note"]
    agg = plots.aggregate(table, out=tmp_path)
    assert agg.set_index("method")["poi"].equals(aggregate_table(table).frame.set_index("method")["poi"])
    prof = plots.profile(table, out=tmp_path)
    at_zero = prof[prof["tau"] == prof["tau"].iloc[0]]
    assert (at_zero["fraction"] == 0).all()               # below every run's Delta_m
    assert (prof.groupby("method")["fraction"].last() == 1).all()
    tau = float(np.sort(prof["tau"].unique())[50])
    mine = prof[(prof["method"] == "uw") & (prof["tau"] == tau)]["fraction"].iloc[0]
    assert mine == pytest.approx(np.mean([(deltas(d, "uw") <= tau).mean() for d in ("mm", "cc")]))
    for name in ("delta", "aggregate", "profile"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0 and (tmp_path / f"{name}.pdf").exists()


def test_cli_options_and_the_default_output_unchanged(tmp_path, capsys):
    path = write_table(tidy().results, tmp_path / "runs.csv")
    main(["table", str(path)])
    default = capsys.readouterr().out
    assert "Student t" in default and "Holm" not in default and "[" not in default.split("\n\n")[1].split("|")[5]
    main(["table", str(path), "--ci", "bootstrap", "--correction", "holm", "--poi"])
    out = capsys.readouterr().out
    assert "p vs ew (Holm)" in out and "P(Δm < ew)" in out and "percentile bootstrap" in out
    main(["table", str(path), "--aggregate"])
    out = capsys.readouterr().out
    assert out.startswith("| method | benchmarks | runs | IQM Δm% [95% CI] ↓") and "stratified" in out
    main(["plot", str(path), "--kind", "profile", "--out", str(tmp_path / "figs")])
    assert (tmp_path / "figs" / "profile.png").exists()
    with pytest.raises(SystemExit):
        main(["table", str(path), "--ci", "bca"])
