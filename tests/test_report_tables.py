"""Comparison tables from real runs: baselines, Delta_m, MR, CIs, paired tests, formats."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from report_runs import ONE_THREAD, synthetic_runs

from conftest import cli
from mtl_bench.report.pipeline import make_table
from mtl_bench.report.scores import delta_m, mean_rank, paired_test, seed_stats


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return synthetic_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def built(runs):
    return make_table([runs], metrics=["mse"])


def _test_values(selected, run):
    rows = selected[(selected["run"] == run) & (selected["split"] == "test") & (selected["metric"] == "mse")]
    return {(t, "mse"): v for t, v in rows[["task", "value"]].itertuples(index=False)}


def test_table_rows_columns_and_baselines(built):
    table, sel = built
    frame = table.frame.set_index("method")
    assert table.columns == ["task0/mse", "task1/mse"]
    assert set(frame.index) == {"stl", "ew", "uw", "dwa", "static weights=[0.2, 0.8]",
                                "static weights=[0.5, 0.5]", "static weights=[0.8, 0.2]"}
    assert frame.loc["ew", "n"] == 2 and frame.loc["stl", "n"] == 1
    assert frame.loc["stl", "delta_m"] == 0
    # seed 1 has no single-task run: averaged over the seeds there are, and the table says so
    assert any("seed 1" in note and "mean over seeds 0" in note for note in table.notes)


def test_delta_m_ci_and_paired_test_match_a_recomputation(built):
    table, sel = built
    s = sel.selected
    stl = s[s["is_baseline"] & (s["split"] == "test") & (s["metric"] == "mse")]
    base = {(t, "mse"): v for t, v in stl[["task", "value"]].itertuples(index=False)}
    per_seed = {}
    for method in ("ew", "uw"):
        per_seed[method] = {}
        for run, rows in s[(s["method"] == method)].groupby("run"):
            per_seed[method][int(rows["seed"].iloc[0])] = delta_m(_test_values(s, run), base,
                                                                  {k: False for k in base})
    frame = table.frame.set_index("method")
    for method in ("ew", "uw"):
        stats = seed_stats(list(per_seed[method].values()))
        assert frame.loc[method, "delta_m"] == pytest.approx(stats["mean"])
        assert frame.loc[method, "delta_m:ci"] == pytest.approx(stats["ci"])
    expected = paired_test(per_seed["uw"], per_seed["ew"])["pvalue"]
    assert frame.loc["uw", "p"] == pytest.approx(expected, nan_ok=True)
    assert frame.loc["ew", "time"] == pytest.approx(1.0)
    ranked = table.frame[~table.frame["is_baseline"]].set_index("method")
    assert ranked["mr"].to_dict() == pytest.approx(
        mean_rank(ranked[table.columns], {c: False for c in table.columns}).to_dict())


def test_per_task_average_differs_and_is_captioned(runs):
    columns = ["task0/mse", "task0/normalized_loss", "task1/mse"]   # 2 metrics of task0, 1 of task1
    by_task, sel = make_table([runs], columns=columns, delta_average="task")
    by_metric, _ = make_table([runs], columns=columns, delta_average="metric")
    assert "averaged per task" in by_task.caption and "lower is better" in by_task.caption
    assert "averaged per metric" in by_metric.caption
    s = sel.selected
    stl = s[s["is_baseline"] & (s["split"] == "test")].set_index(["task", "metric"])["value"]
    run = s[(s["method"] == "uw") & (s["seed"] == 0)]
    mine = run[run["split"] == "test"].set_index(["task", "metric"])["value"]
    rel = {c: 100 * (mine[tuple(c.split("/"))] - stl[tuple(c.split("/"))]) / stl[tuple(c.split("/"))]
           for c in columns}
    per_metric = sum(rel.values()) / 3
    per_task = ((rel["task0/mse"] + rel["task0/normalized_loss"]) / 2 + rel["task1/mse"]) / 2
    t = by_task.frame.set_index("method")
    m = by_metric.frame.set_index("method")
    assert per_task != pytest.approx(per_metric)
    # with two seeds the table shows the mean; recompute seed 1 (its baseline: mean over seed 0 only)
    run1 = s[(s["method"] == "uw") & (s["seed"] == 1) & (s["split"] == "test")].set_index(["task", "metric"])["value"]
    rel1 = {c: 100 * (run1[tuple(c.split("/"))] - stl[tuple(c.split("/"))]) / stl[tuple(c.split("/"))]
            for c in columns}
    assert m.loc["uw", "delta_m"] == pytest.approx((per_metric + sum(rel1.values()) / 3) / 2)
    assert t.loc["uw", "delta_m"] == pytest.approx(
        (per_task + ((rel1["task0/mse"] + rel1["task0/normalized_loss"]) / 2 + rel1["task1/mse"]) / 2) / 2)


def test_markdown_marks_the_best_per_column(built):
    table, _ = built
    md = table.to_markdown()
    frame = table.frame[~table.frame["is_baseline"]]
    best = frame.loc[frame["delta_m"].idxmin()]
    line = next(l for l in md.splitlines() if l.startswith(f"| {best['method']} |"))
    assert f"**{best['delta_m']:.2f}" in line
    assert "task0 mse ↓" in md and "Δm% ↓" in md and "MR ↓" in md and "time/epoch (×ew)" in md
    stl_line = next(l for l in md.splitlines() if l.startswith("| stl |"))
    assert "**" not in stl_line
    assert "Maninis" in md and "95% CI" in md


def test_cli_table_formats_and_published_baseline(runs, tmp_path):
    table, _ = make_table([runs], metrics=["mse"])
    assert r"\begin{tabular}" in table.render("latex") and r"\textbf{" in table.render("latex")
    assert "| method |" in table.render("md")
    out = cli("table", str(runs), "--format", "csv", "--metrics", "mse", cwd=tmp_path, env=ONE_THREAD)
    assert out.returncode == 0, out.stderr
    assert "delta_m:ci" in out.stdout
    assert "diverged" in out.stderr  # the excluded run is reported
    published = tmp_path / "mine.csv"
    published.write_text("method,label,task0/mse,task1/mse\nstl,Single task,0.5,50.0\n")
    out = cli("table", str(runs), "--metrics", "mse", "--baseline", f"published:{published}", "--format", "csv",
              cwd=tmp_path, env=ONE_THREAD)
    assert out.returncode == 0, out.stderr
    import io

    import pandas as pd
    frame = pd.read_csv(io.StringIO(out.stdout)).set_index("method")
    ew = frame.loc["ew"]
    expected = 100 * ((ew["task0/mse"] - 0.5) / 0.5 + (ew["task1/mse"] - 50.0) / 50.0) / 2
    # per-seed Delta_m is linear in the values, so its mean is the Delta_m of the mean
    assert ew["delta_m"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="choose stl"):
        make_table([runs], baseline="nonsense")


def test_rows_of_few_seeds_are_marked_and_the_caption_names_selection_and_time(runs):
    from mtl_bench.report import collect

    found = collect([runs])
    # uw made solver calls (two failed) in this copy of the results; the others none
    uw = found.results["strategy"] == "uw"
    found.results.loc[uw, "solver_calls"], found.results.loc[uw, "solver_failures"] = 100, 1
    table, _ = make_table(found, metrics=["mse"], selection={"rule": "best", "metric": "mean/mse"})
    text = table.to_markdown()
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert header.endswith("| enc. backward/step | solver fails/calls | seeds |")
    row = lambda method: next(l for l in text.splitlines() if l.startswith(f"| {method} |")).split(" | ")
    assert row("ew")[-1] == "2† |" and row("stl")[-1] == "1† |"
    assert row("uw")[-2] == "2/200" and row("ew")[-2] == "–" and row("ew")[-3] == "1.00"
    assert "fewer than 3 seeds; the 95% CI over seeds is not informative" in text
    assert "model selection: best: val mean/mse" in text
    # CPU runs record the process CPU time per epoch: the time column uses it
    assert "training CPU time of the process per epoch (each run's median epoch after the first" in text
    # CIs are not clipped: ew's CI half-width is the t-interval of its two seeds
    frame = table.frame.set_index("method")
    assert frame.loc["ew", "task0/mse:ci"] == pytest.approx(12.706 * frame.loc["ew", "task0/mse:std"] / math.sqrt(2),
                                                           rel=1e-3)


def test_cost_columns_are_left_out_when_no_run_has_them(runs):
    from mtl_bench.report import collect

    found = collect([runs])
    found.results["backward_passes_per_step"] = float("nan")
    text = make_table(found, metrics=["mse"])[0].to_markdown()
    assert "enc. backward/step" not in text and "solver fails/calls" not in text


def test_time_falls_back_to_wall_time_when_a_run_has_no_cpu_time(runs):
    """Runs made before CPU time was recorded (or on a GPU) lack it: the panel is timed by the wall
    clock, and the caption says that this compares only runs made together on one machine."""
    from mtl_bench.report import collect

    found = collect([runs])
    table, _ = make_table(found, metrics=["mse"])
    cpu = table.frame.set_index("method")
    found.results.loc[found.results["strategy"] == "uw", "cpu_seconds_per_epoch"] = None
    table, _ = make_table(found, metrics=["mse"])
    wall = table.frame.set_index("method")
    assert "comparable only between runs made together on one machine" in table.to_markdown()
    assert wall.loc["uw", "time"] == pytest.approx(wall.loc["uw", "seconds_per_epoch"] / wall.loc["ew", "seconds_per_epoch"])
    assert cpu.loc["uw", "time"] == pytest.approx(cpu.loc["uw", "cpu_seconds_per_epoch"] / cpu.loc["ew", "cpu_seconds_per_epoch"])


def test_time_is_the_median_epoch_after_the_first_and_the_mean_for_older_runs(runs):
    """A run records each epoch's time and the median after the first (the first holds one-off
    costs: lazy imports, grad.method=auto's timing): the table's time uses it and says so. Runs
    that recorded only the mean (before) keep it, with the caption they always had."""
    import json
    import statistics

    from mtl_bench.report import collect

    found = collect([runs])
    run = found.runs[found.runs["status"] == "completed"].iloc[0]
    cost = json.loads((Path(run["run"]) / "summary.json").read_text())["cost"]
    assert len(cost["epoch_seconds"]) == run["epochs_completed"] >= 2
    assert cost["seconds_per_epoch_warm"] == statistics.median(cost["epoch_seconds"][1:])
    assert cost["cpu_seconds_per_epoch_warm"] == statistics.median(cost["epoch_cpu_seconds"][1:])
    assert run["seconds_per_epoch"] == cost["seconds_per_epoch_warm"] != cost["seconds_per_epoch_mean"]
    assert set(found.results["epoch_statistic"]) == {"median after the first"}

    older = found.results["strategy"] == "uw"
    found.results.loc[older, "epoch_statistic"] = "mean"
    text = make_table(found, metrics=["mse"])[0].to_markdown()
    assert "the mean of all its epochs for runs that did not record each epoch" in text
    found.results["epoch_statistic"] = "mean"
    text = make_table(found, metrics=["mse"])[0].to_markdown()
    assert "time/epoch: mean training CPU time of the process per epoch relative to ew" in text


def test_warm_epoch_time_leaves_out_the_first_epoch():
    from mtl_bench.train.cost import warm_epoch_seconds

    assert warm_epoch_seconds([30.0, 1.0]) == 1.0
    assert warm_epoch_seconds([30.0, 1.0, 3.0, 2.0]) == 2.0
    assert warm_epoch_seconds([4.0]) == 4.0
    assert warm_epoch_seconds([]) is None


def test_a_bar_marks_the_means_worse_than_it_in_the_metrics_direction(runs, tmp_path):
    """--bar mse=VALUE on a lower-is-better metric: the means above VALUE get ‡ (not those below),
    a note names the bar, the CSV lists the columns below it; a metric not in the table is refused."""
    table, _ = make_table([runs], metrics=["mse"])
    frame = table.frame.set_index("method")
    ew = frame.loc["ew", "task1/mse"]
    bar = ew * 0.999  # ew's task1 mean is just worse than this; ew's task0 mean is far below it
    table, _ = make_table([runs], metrics=["mse"], bars={"mse": bar})
    marked = table.frame.set_index("method")["below_bar"]
    assert "task1/mse" in marked["ew"].split(",")
    for method, row in table.frame.set_index("method").iterrows():
        expected = [c for c in ("task0/mse", "task1/mse") if row[c] > bar]
        assert marked[method] == ",".join(expected)
    md = table.render("md")
    ew_line = next(line for line in md.splitlines() if line.startswith("| ew |"))
    assert ew_line.count("‡") == len(marked["ew"].split(","))
    assert f"--bar mse={bar:g}" in md
    with pytest.raises(ValueError, match="no such metric in the table; its metrics: mse"):
        make_table([runs], metrics=["mse"], bars={"accuracy": 90})
    out = cli("table", str(runs), "--metrics", "mse", "--bar", "mse", cwd=tmp_path, env=ONE_THREAD)
    assert out.returncode == 2 and "METRIC=VALUE" in out.stderr


def test_a_bar_is_in_the_tables_units_and_direction_for_accuracy():
    """--bar accuracy=90 on higher-is-better accuracy shown in %: 0.85 is below, 0.95 not, and a
    mean that shows as 90.00 (0.8999999999999999 from 0.85 and 0.95) is not marked."""
    from test_report_tune import BOTH, tidy

    runs = [("ew", BOTH, 0.01, 0, {"val": 0.9, "test": 0.85}), ("ew", BOTH, 0.01, 1, {"val": 0.9, "test": 0.95}),
            ("uw", BOTH, 0.01, 0, {"val": 0.9, "test": 0.85}), ("uw", BOTH, 0.01, 1, {"val": 0.9, "test": 0.84}),
            ("dwa", BOTH, 0.01, 0, {"val": 0.9, "test": 0.95}), ("dwa", BOTH, 0.01, 1, {"val": 0.9, "test": 0.96})]
    table, _ = make_table(tidy(runs), bars={"accuracy": 90}, baseline="none")
    marked = table.frame.set_index("method")["below_bar"]
    assert marked["uw"] == "left/accuracy,right/accuracy"
    assert marked["ew"] == "" and marked["dwa"] == ""
    md = table.render("md")
    assert next(line for line in md.splitlines() if line.startswith("| uw |")).count("‡") == 2
    assert "‡" not in next(line for line in md.splitlines() if line.startswith("| ew |"))
    assert "‡" in table.render("latex")


def test_default_columns_count_a_regression_task_once_in_delta_m(runs):
    """normalized_loss is mse / scale: the same relative change, so both in Δm would weigh each
    regression task twice. The default columns keep mse; --metrics still shows either."""
    table, _ = make_table([runs])
    columns = [c for c in table.frame.columns if c.endswith("/mse") or c.endswith("/normalized_loss")]
    assert columns == ["task0/mse", "task1/mse"]
    by_mse = make_table([runs], metrics=["mse"])[0].frame.set_index("method")["delta_m"]
    assert table.frame.set_index("method")["delta_m"].to_dict() == pytest.approx(by_mse.to_dict(), nan_ok=True)
    both = make_table([runs], metrics=["mse", "normalized_loss"])[0].frame
    assert {"task0/mse", "task0/normalized_loss"} <= set(both.columns)
