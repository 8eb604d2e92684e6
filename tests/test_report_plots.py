"""Plots render headless (PNG and PDF) and return the data they drew."""
from __future__ import annotations

import pandas as pd
import pytest
from report_runs import ONE_THREAD, synthetic_runs

from conftest import cli
from mtl_bench.report import plots
from mtl_bench.report.pipeline import make_table, select_all


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return synthetic_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def sel(runs):
    return select_all([runs])


def _files_ok(frame, name):
    files = frame.attrs["files"]
    assert sorted(f.rsplit(".", 1)[1] for f in files) == ["pdf", "png"]
    for f in files:
        assert f.rsplit("/", 1)[1].startswith(name)
        with open(f, "rb") as handle:
            head = handle.read(8)
        assert head.startswith(b"\x89PNG") or head.startswith(b"%PDF")


def test_weights_plot_data_are_the_logged_step_weights(sel, tmp_path):
    data = plots.weights(sel.results, out=tmp_path)
    _files_ok(data, "weights")
    ew = data[data["method"] == "ew"]
    assert (ew["weight"] == 1.0).all() and set(ew["task"]) == {"task0", "task1"}
    assert ew["step"].tolist() == sorted(ew["step"].tolist()) and ew["step"].max() == 6
    r = sel.results
    logged = r[(r["method"] == "uw") & (r["split"] == "train_step") & (r["metric"] == "weight")]
    expected = logged.groupby(["task", "step"])["value"].mean()
    got = data[data["method"] == "uw"].set_index(["task", "step"])["weight"]
    assert got.sort_index().to_numpy() == pytest.approx(expected.sort_index().to_numpy())
    assert (data[data["method"] == "uw"]["n"] == 2).all()  # two seeds


def test_curves_plot_data_are_the_val_means(sel, tmp_path):
    data = plots.curves(sel.results, metric="mse", split="val", out=tmp_path)
    _files_ok(data, "curves")
    r = sel.results
    rows = r[(r["method"] == "dwa") & (r["split"] == "val") & (r["metric"] == "mse") & (r["task"] == "task1")]
    from mtl_bench.report.scores import seed_stats

    expected = rows.groupby("epoch")["value"].agg(["mean", lambda v: seed_stats(v.tolist())["ci"]])
    got = data[(data["method"] == "dwa") & (data["task"] == "task1")].set_index("epoch")
    assert got["value"].to_numpy() == pytest.approx(expected["mean"].to_numpy())
    assert (got["value"] - got["low"]).to_numpy() == pytest.approx(expected.iloc[:, 1].to_numpy())  # 95% CI
    assert list(got.index) == [1, 2, 3]


def test_pareto_plot_marks_the_static_front(sel, tmp_path):
    data = plots.pareto(sel.selected, split="test", metric="normalized_loss", out=tmp_path)
    _files_ok(data, "pareto")
    static = data[data["is_static"]]
    assert len(static) == 3 and data.attrs["tasks"] == ["task0", "task1"]
    for i, p in static.iterrows():  # lower is better on both axes
        dominated = any((q["x"] <= p["x"]) and (q["y"] <= p["y"]) and ((q["x"] < p["x"]) or (q["y"] < p["y"]))
                        for j, q in static.iterrows() if j != i)
        assert p["on_front"] == (not dominated)
    assert static["on_front"].any()
    assert not data.loc[~data["is_static"], "on_front"].any()
    s = sel.selected
    ew0 = s[(s["method"] == "ew") & (s["split"] == "test") & (s["metric"] == "normalized_loss") & (s["task"] == "task0")]
    assert data.set_index("method").loc["ew", "x"] == pytest.approx(ew0["value"].mean())


def test_delta_and_cost_plots_show_the_table(runs, tmp_path):
    table, _ = make_table([runs], metrics=["mse"])
    d = plots.delta(table, out=tmp_path)
    _files_ok(d, "delta")
    frame = table.frame[~table.frame["is_baseline"]].set_index("method")
    assert set(d["method"]) == set(frame.index)
    for _, row in d.iterrows():
        assert row["delta_m"] == pytest.approx(frame.loc[row["method"], "delta_m"])
        assert row["ci"] == pytest.approx(frame.loc[row["method"], "delta_m:ci"], nan_ok=True)
    c = plots.cost(table, out=tmp_path)
    _files_ok(c, "cost")
    assert (c["seconds_per_epoch"] > 0).all()
    assert c.set_index("method").loc["ew", "time"] == pytest.approx(1.0)


def test_cli_plot_writes_png_and_pdf(runs, tmp_path):
    out = cli("plot", str(runs), "--kind", "weights", "--out", str(tmp_path / "figs"), cwd=tmp_path,
              env={**ONE_THREAD, "MPLBACKEND": "TkAgg", "DISPLAY": ""})
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "figs" / "weights.png").stat().st_size > 0
    assert (tmp_path / "figs" / "weights.pdf").stat().st_size > 0



def test_pareto_needs_two_tasks(sel):
    with pytest.raises(ValueError, match="two tasks"):
        plots.pareto(sel.selected, tasks=["task0"])
    with pytest.raises(ValueError, match="--tasks task9: the runs have no test mse of it; their tasks: task0, task1"):
        plots.pareto(sel.selected, metric="mse", tasks=["task0", "task9"])


def test_cli_plot_prints_its_data_only_when_asked(runs, tmp_path):
    quiet = cli("plot", str(runs), "--kind", "curves", "--metric", "mse", "--out", str(tmp_path / "a"), cwd=tmp_path,
                env=ONE_THREAD)
    assert quiet.returncode == 0, quiet.stderr
    assert "epoch" not in quiet.stdout and quiet.stdout.splitlines()[-1].startswith("written: ")
    assert "95% CI over seeds" in quiet.stdout
    loud = cli("plot", str(runs), "--kind", "curves", "--metric", "mse", "--out", str(tmp_path / "b"), "--verbose",
               "--csv", str(tmp_path / "curves.csv"), cwd=tmp_path, env=ONE_THREAD)
    assert loud.returncode == 0, loud.stderr
    assert "epoch" in loud.stdout.splitlines()[0]
    assert (tmp_path / "curves.csv").read_text().startswith("panel,method,task,epoch")


def test_weights_share_one_axis_with_seed_bands_and_say_so(sel):
    import math

    from mtl_bench.report.scores import seed_stats

    data = plots.weights(sel.results)
    fig = data.attrs["figure"]
    assert len({ax.get_ylim() for ax in fig.axes}) == 1
    r = sel.results
    uw = r[(r["method"] == "uw") & (r["split"] == "train_step") & (r["metric"] == "weight") & (r["task"] == "task0")]
    at3 = seed_stats(uw[uw["step"] == 3]["value"].tolist())
    row = data[(data["method"] == "uw") & (data["task"] == "task0") & (data["step"] == 3)].iloc[0]
    assert row["high"] - row["weight"] == pytest.approx(at3["ci"]) and not math.isnan(row["low"])
    assert data.attrs["note"] == ("lines: mean task weight over 1-2 seeds; bands: 95% CI over seeds (Student t); "
                                  "one y-axis for every panel")
    assert any("95% CI" in t.get_text() for t in fig.texts)


def test_weights_of_very_different_scales_get_their_own_axes_and_say_so(sel):
    r = sel.results.copy()
    big = (r["method"] == "uw") & (r["metric"] == "weight")
    r.loc[big, "value"] = r.loc[big, "value"] * 100  # a method whose weights are 100x the others'
    data = plots.weights(r)
    assert len({ax.get_ylim() for ax in data.attrs["figure"].axes}) > 1
    assert data.attrs["note"].endswith("each panel its own y-axis (the methods' weights differ in scale by more than 10x)")


def test_a_method_keeps_its_colour_in_every_panel_and_the_figure_has_one_legend(sel):
    fig = plots.curves(sel.results, metric="mse").attrs["figure"]
    colours = {}
    for ax in fig.axes:
        assert ax.get_legend() is None
        for line in ax.get_lines():
            colours.setdefault(line.get_label(), set()).add(line.get_color() if isinstance(line.get_color(), str)
                                                            else tuple(line.get_color()))
    assert len(colours) >= 3 and all(len(c) == 1 for c in colours.values())
    assert len({next(iter(c)) for c in colours.values()}) == len(colours)  # and no two methods share one
    (legend,) = fig.legends
    assert {t.get_text() for t in legend.get_texts()} == set(colours)


def test_an_outlying_bar_runs_off_the_axis_with_its_value_written():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    means = pd.Series([-3.1, -1.2, 100.0, 105.0, 110.0, 120.0, 130.0, 5484.0])
    ax.bar(range(len(means)), means)
    assert plots._clip_outliers(ax, means, [0.0] * len(means), [0.0] * len(means))
    low, high = ax.get_ylim()
    assert low < -3.1 and 130 < high < 5484  # the best bars stay in, the outlier is cut
    assert [t.get_text() for t in ax.texts] == ["5484"]
    plain = Figure().add_subplot()
    assert not plots._clip_outliers(plain, pd.Series([1.0, 2.0, 3.0, 4.0, 6.0]), [0.5] * 5, [0.5] * 5)
    mild = pd.Series([0.9, 1.0, 1.1, 1.2, 1.3, 1.5, 1.7, 5.6])  # far by the fence, but the others keep half the panel
    assert not plots._clip_outliers(Figure().add_subplot(), mild, [0.3] * 8, [0.3] * 8)


def test_bands_are_clipped_to_what_the_metric_can_be():
    import math

    assert plots._bounds("accuracy") == (0.0, 1.0) and plots._bounds("within_11.25") == (0.0, 1.0)
    assert plots._bounds("error") == (0.0, 100.0)
    for name in ("mse", "normalized_loss", "abs_error", "rel_error", "mean_angle", "median_angle"):
        assert plots._bounds(name) == (0.0, math.inf), name
    assert plots._bounds("score") == (-math.inf, math.inf)


def test_each_panel_ranks_and_measures_its_own_tasks():
    """A 10-task panel beside a 2-task one: the N-task fronts of each panel use that panel's tasks
    (a NaN column of the other panel no longer drops them)."""
    rows = []
    for panel, tasks in (("ten", [f"t{i}" for i in range(10)]), ("two", ["t0", "t1"])):
        for method, shift in (("a", 0.0), ("b", 1.0)):
            for task in tasks:
                rows.append({"panel": panel, "method": method, "strategy": method, "seed": 0, "task": task,
                             "value": shift + (0.5 if task == "t5" and method == "a" else 0.0)})
    rows = pd.DataFrame(rows)
    data = pd.DataFrame({"panel": ["ten", "ten", "two", "two"], "method": ["a", "b", "a", "b"],
                         "is_static": False})
    out = plots._all_task_fronts(data, rows, hib=False)
    assert len(out["ten"]["tasks"]) == 10 and out["two"]["tasks"] == ["t0", "t1"]


def test_curves_use_integer_epoch_ticks(sel):
    fig = plots.curves(sel.results, metric="mse").attrs["figure"]
    for ax in fig.axes:
        fig.canvas.draw() if hasattr(fig.canvas, "draw") else None
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)


def test_pareto_without_static_runs_shows_the_stl_point_and_the_front(sel):
    selected = sel.selected[sel.selected["strategy"] != "static"]
    data = plots.pareto(selected, split="test", metric="mse")
    (ax,) = data.attrs["figure"].axes
    labels = ax.get_legend_handles_labels()[1]
    assert "static weights" not in labels and "static front" not in labels
    assert "stl (single-task)" in labels and "Pareto front" in labels
    stl = selected[selected["is_baseline"] & (selected["split"] == "test") & (selected["metric"] == "mse")]
    x, y = next(iter(data.attrs["stl"].values()))
    assert x == pytest.approx(stl[stl["task"] == "task0"]["value"].mean())
    assert y == pytest.approx(stl[stl["task"] == "task1"]["value"].mean())
    assert data["on_pareto"].any()
