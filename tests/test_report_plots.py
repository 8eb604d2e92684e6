"""Plots render headless (PNG and PDF) and return the data they drew."""
from __future__ import annotations

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
    expected = rows.groupby("epoch")["value"].agg(["mean", "min", "max"])
    got = data[(data["method"] == "dwa") & (data["task"] == "task1")].set_index("epoch")
    assert got["value"].to_numpy() == pytest.approx(expected["mean"].to_numpy())
    assert got["low"].to_numpy() == pytest.approx(expected["min"].to_numpy())
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
