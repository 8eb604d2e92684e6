"""`--tune trainer.lr`: hyper-parameters chosen per method on validation (Sener & Koltun 2018, "lr
chosen on validation", docs/protocols.md#multimnist), on hand-made tidy tables of the shape collect builds."""
from __future__ import annotations

import pandas as pd
import pytest

from mtl_bench.cli import main
from mtl_bench.report.collect import Collection, write_table
from mtl_bench.report.papers import load_preset
from mtl_bench.report.pipeline import make_table


def tidy(runs, metric="accuracy", higher_is_better=True, rule="best", sel_metric="mean/accuracy", study=False):
    """A results table: ``runs`` are ``(strategy, tasks, lr, seed, {split: value or [value per epoch]})``;
    every task of a run logs the same value. ``study``: run folders laid out as an mtl-bench tune
    study's (``STUDY/METHOD/trial_K/seed_S``, one trial per lr)."""
    rows = []
    for strategy, tasks, lr, seed, values in runs:
        run = (f"study/{strategy}-{'+'.join(tasks)}/trial_{lr}/seed_{seed}" if study
               else f"{strategy}-{'+'.join(tasks)}-lr{lr}-s{seed}")
        info = {"run": run, "status": "completed", "dataset": "multimnist", "strategy": strategy, "seed": seed,
                "tasks": ",".join(tasks), "n_tasks": len(tasks), "seconds_per_epoch": 1.0, "sel_rule": rule,
                "sel_split": "val", "sel_metric": sel_metric, "sel_k": 10, "sel_average": "metric",
                "cfg.trainer.lr": str(lr), "cfg.dataset.tasks": str(tasks), "cfg.strategy.name": strategy}
        for split, value in values.items():
            for epoch, v in enumerate(value if isinstance(value, list) else [value]):
                for task in tasks:
                    rows.append({**info, "epoch": epoch, "step": epoch, "split": split, "task": task,
                                 "metric": metric, "value": v, "higher_is_better": higher_is_better})
    results = pd.DataFrame(rows)
    return Collection(results=results, runs=results.drop_duplicates("run").assign(reason=""))


BOTH = ["left", "right"]
RUNS = [
    # ew: lr 0.1 has the best single val seed and by far the best test, but 0.01 the best val mean
    ("ew", BOTH, 0.01, 0, {"val": 0.90, "test": 0.80}), ("ew", BOTH, 0.01, 1, {"val": 0.80, "test": 0.78}),
    ("ew", BOTH, 0.1, 0, {"val": 0.95, "test": 0.99}), ("ew", BOTH, 0.1, 1, {"val": 0.70, "test": 0.98}),
    # uw: 0.1 is better on val, worse on test
    ("uw", BOTH, 0.01, 0, {"val": 0.60, "test": 0.95}), ("uw", BOTH, 0.01, 1, {"val": 0.60, "test": 0.95}),
    ("uw", BOTH, 0.1, 0, {"val": 0.85, "test": 0.75}), ("uw", BOTH, 0.1, 1, {"val": 0.85, "test": 0.75}),
    # single-task baselines, tuned per task: left prefers 0.01, right 0.1
    ("ew", ["left"], 0.01, 0, {"val": 0.9, "test": 0.5}), ("ew", ["left"], 0.1, 0, {"val": 0.5, "test": 0.9}),
    ("ew", ["right"], 0.01, 0, {"val": 0.5, "test": 0.9}), ("ew", ["right"], 0.1, 0, {"val": 0.9, "test": 0.5}),
]


def test_tune_keeps_the_best_mean_val_lr_per_method_and_never_reads_test():
    table, sel = make_table(tidy(RUNS), tune=["trainer.lr"])
    frame = table.frame.set_index("method")
    assert set(frame.index) == {"stl", "ew", "uw"}       # one panel: lr no longer splits it
    assert frame["panel"].nunique() == 1
    assert frame.loc["ew", "trainer.lr"] == "0.01" and frame.loc["uw", "trainer.lr"] == "0.1"
    assert frame.loc["stl", "trainer.lr"] == "left=0.01 right=0.1"
    # the reported numbers are the test values of the chosen runs only
    assert frame.loc["ew", "left/accuracy"] == pytest.approx(0.79)
    assert frame.loc["uw", "left/accuracy"] == pytest.approx(0.75)
    assert frame.loc["stl", "left/accuracy"] == pytest.approx(0.5)
    assert set(sel.selected["cfg.trainer.lr"][sel.selected["method"] == "ew"]) == {"0.01"}
    assert set(sel.results["run"]) == set(sel.selected["run"])   # plots see the chosen runs only
    tuning = sel.tuning.set_index(["method", "tasks"])
    assert tuning.loc[("ew", "left,right"), "score"] == pytest.approx(0.85)
    # same val numbers, test flipped: the choice does not move
    flipped = [(s, t, lr, seed, {"val": v["val"], "test": 1 - v["test"]}) for s, t, lr, seed, v in RUNS]
    _, again = make_table(tidy(flipped), tune=["trainer.lr"])
    assert again.tuning[["method", "tasks", "trainer.lr"]].equals(sel.tuning[["method", "tasks", "trainer.lr"]])


def test_a_complete_grid_gets_no_warning_and_an_incomplete_one_is_named():
    table, sel = make_table(tidy(RUNS), tune=["trainer.lr"])
    assert (sel.tuning["incomplete"] == "").all()
    assert not any("INCOMPLETE" in note for note in table.notes)
    # uw lost its lr 0.1 runs, ew one seed of lr 0.01: the table says so, by method and value
    partial = [r for r in RUNS if not (r[0] == "uw" and r[2] == 0.1) and not (r[0] == "ew" and len(r[1]) == 2
                                                                               and r[2] == 0.01 and r[3] == 1)]
    table, sel = make_table(tidy(partial), tune=["trainer.lr"])
    gaps = sel.tuning.set_index(["method", "tasks"])["incomplete"]
    assert gaps[("uw", "left,right")] == "no runs at trainer.lr=0.1"
    assert gaps[("ew", "left,right")] == "trainer.lr=0.01 on 1 of 2 seeds"
    assert gaps[("stl", "left")] == ""
    note = next(note for note in table.notes if note.startswith("INCOMPLETE GRID"))
    assert "uw: no runs at trainer.lr=0.1" in note and "ew: trainer.lr=0.01 on 1 of 2 seeds" in note


def test_partly_overlapping_grids_and_single_task_holes_are_named():
    """ew ran {0.01, 0.1}, uw {0.01, 0.001}: each lacks one the other ran; the single-task runs
    (tuned apart from the methods) lack 0.001, which uw ran."""
    runs = [r for r in RUNS if r[0] != "uw"] + \
           [("uw", BOTH, lr, s, {"val": 0.6, "test": 0.9}) for lr in (0.01, 0.001) for s in (0, 1)]
    _, sel = make_table(tidy(runs), tune=["trainer.lr"])
    gaps = sel.tuning.set_index(["method", "tasks"])["incomplete"]
    assert gaps[("ew", "left,right")] == "no runs at trainer.lr=0.001"
    assert gaps[("uw", "left,right")] == "no runs at trainer.lr=0.1"
    assert gaps[("stl", "left")] == gaps[("stl", "right")] == "no runs at trainer.lr=0.001"


def test_the_methods_of_tune_studies_are_not_an_incomplete_grid_but_a_grid_apart_is():
    """Optuna draws each method's values (some shared by chance): no INCOMPLETE GRID for trial
    folders. The same values from a grid sweep are holes, a method that shares no value included."""
    drawn = [("ew", BOTH, lr, s, {"val": 0.9, "test": 0.8}) for lr in (0.001, 0.01) for s in (0, 1)] + \
            [("uw", BOTH, lr, s, {"val": 0.9, "test": 0.8}) for lr in (0.001, 0.005) for s in (0, 1)] + \
            [("dwa", BOTH, 0.02, s, {"val": 0.9, "test": 0.8}) for s in (0, 1)]
    _, sel = make_table(tidy(drawn, study=True), tune=["trainer.lr"])
    assert (sel.tuning["incomplete"] == "").all()
    _, sel = make_table(tidy(drawn), tune=["trainer.lr"])
    gaps = sel.tuning.set_index("method")["incomplete"]
    assert gaps["dwa"] == "no runs at trainer.lr=0.001, trainer.lr=0.005, trainer.lr=0.01"
    assert gaps["ew"] == "no runs at trainer.lr=0.005, trainer.lr=0.02"


def test_without_tune_each_lr_is_its_own_panel():
    table, _ = make_table(tidy(RUNS))
    assert set(table.frame["panel"]) == {"multimnist trainer.lr=0.01", "multimnist trainer.lr=0.1"}


def test_tune_respects_a_lower_is_better_metric():
    runs = [("ew", BOTH, lr, seed, {"val": v, "test": 0.1}) for lr, v in ((0.001, 0.30), (0.01, 0.10), (0.1, 0.20))
            for seed in (0, 1)]
    table, sel = make_table(tidy(runs, metric="error", higher_is_better=False, sel_metric="mean/error"),
                            tune=["trainer.lr"], baseline="none")
    assert table.frame.set_index("method").loc["ew", "trainer.lr"] == "0.01"
    assert sel.tuning["candidates"].iloc[0] == "0.001: 0.3, 0.01: 0.1, 0.1: 0.2"   # numeric order


def test_tune_scores_the_val_values_of_the_runs_rule():
    # rule last: the last epoch's val counts, not the best epoch's
    runs = [("ew", BOTH, 0.01, 0, {"val": [0.9, 0.5], "test": [0.5, 0.5]}),
            ("ew", BOTH, 0.1, 0, {"val": [0.6, 0.7], "test": [0.5, 0.5]})]
    _, last = make_table(tidy(runs, rule="last", sel_metric="mean/accuracy"), tune=["trainer.lr"], baseline="none")
    _, best = make_table(tidy(runs, rule="best"), tune=["trainer.lr"], baseline="none")
    assert last.tuning["trainer.lr"].iloc[0] == "0.1" and best.tuning["trainer.lr"].iloc[0] == "0.01"


def test_tune_without_a_metric_asks_for_one():
    runs = tidy(RUNS, rule="last", sel_metric=None)
    with pytest.raises(ValueError, match="--tune-metric"):
        make_table(runs, tune=["trainer.lr"])
    table, _ = make_table(runs, tune=["trainer.lr"], tune_metric="mean/accuracy")
    assert table.frame.set_index("method").loc["uw", "trainer.lr"] == "0.1"
    with pytest.raises(ValueError, match="no run has this config key"):
        make_table(runs, tune=["trainer.lrr"], tune_metric="mean/accuracy")


def test_rendered_table_and_cli_show_the_chosen_lr(tmp_path, capsys):
    table, _ = make_table(tidy(RUNS), tune=["trainer.lr"])
    md = table.to_markdown()
    assert "| method | trainer.lr | left accuracy % ↑" in md
    assert "| ew | 0.01 |" in md and "| uw | 0.1 |" in md and "| stl | left=0.01 right=0.1 |" in md
    assert "trainer.lr chosen per method" in md and "test never used" in md
    assert r"trainer.lr" in table.to_latex() and "trainer.lr" in table.to_csv()
    path = write_table(tidy(RUNS).results, tmp_path / "runs.csv")
    main(["table", str(path), "--tune", "trainer.lr"])
    out = capsys.readouterr().out
    assert "| uw | 0.1 |" in out and "multimnist trainer.lr" not in out


def test_sener_koltun_presets_sweep_and_tune_the_lr():
    for name in ("sener_koltun_multimnist", "sener_koltun_celeba"):
        meta = load_preset(name)
        assert meta["table"]["tune"] == ["trainer.lr"]
        assert meta["main_grid"]["trainer.lr"] == "1e-4,5e-4,1e-3,5e-3,1e-2,5e-2"


def test_sensitivity_plot_draws_val_and_test_per_value_and_stars_the_choice(tmp_path):
    """`plot --kind sensitivity`: per method (stl per task) the mean val score at each lr, which
    chose, beside the test score of the same runs; the star sits where the table's choice is."""
    from mtl_bench.report import plots
    from mtl_bench.report.pipeline import select_all

    sel = select_all(tidy(RUNS), tune=["trainer.lr"])
    data = plots.sensitivity(sel.grid, sel.tuning, out=tmp_path)
    assert {p.rsplit(".", 1)[1] for p in data.attrs["files"]} == {"png", "pdf"}
    rows = data.set_index(["line", "cfg.trainer.lr"])
    assert set(data["line"]) == {"ew", "uw", "stl (left)", "stl (right)"}
    assert rows.loc[("ew", "0.01"), "mean"] == pytest.approx(0.85)          # val, mean over the two seeds
    assert rows.loc[("ew", "0.1"), "mean"] == pytest.approx(0.825)
    assert rows.loc[("ew", "0.1"), "mean_test"] == pytest.approx(0.985)     # test of the runs not chosen
    assert rows.loc[("ew", "0.01"), "n"] == 2 and rows.loc[("ew", "0.01"), "low"] < 0.85
    chosen = data[data["chosen"]].set_index("line")["cfg.trainer.lr"].to_dict()
    assert chosen == {"ew": "0.01", "uw": "0.1", "stl (left)": "0.01", "stl (right)": "0.1"}
    assert "stars: the value the table chose" in data.attrs["note"] and "1-2 seeds" in data.attrs["note"]


def test_sensitivity_plot_needs_a_tuned_grid(tmp_path, capsys):
    path = write_table(tidy(RUNS).results, tmp_path / "runs.csv")
    with pytest.raises(SystemExit) as err:
        main(["plot", str(path), "--kind", "sensitivity", "--out", str(tmp_path / "figs")])
    assert err.value.code == 2 and "pass --tune KEY" in capsys.readouterr().err
    main(["plot", str(path), "--kind", "sensitivity", "--tune", "trainer.lr", "--out", str(tmp_path / "figs")])
    assert (tmp_path / "figs" / "sensitivity.png").exists()


def test_sensitivity_plot_without_a_test_split_and_with_a_method_without_the_key(tmp_path):
    """Runs without test values: the validation panels only (a log axis of NaN crashed before). A
    method that lacks the tuned key is one value, drawn as a level line, not a point of the axis."""
    import math

    from mtl_bench.report import plots
    from mtl_bench.report.pipeline import select_all

    no_test = [(s, t, lr, seed, {"val": v["val"]}) for s, t, lr, seed, v in RUNS]
    collection = tidy(no_test + [("static", BOTH, 0, 0, {"val": 0.7}), ("static", BOTH, 0, 1, {"val": 0.8})])
    results = collection.results
    results.loc[results["strategy"] == "static", "cfg.trainer.lr"] = math.nan   # static has no trainer.lr here
    sel = select_all(collection, tune=["trainer.lr"])
    data = plots.sensitivity(sel.grid, sel.tuning, out=tmp_path)
    figure = data.attrs["figure"]
    assert len(figure.axes) == 2                                      # val, and val near the best
    assert data["mean_test"].isna().all()
    static = data[data["line"] == "static"]
    assert list(static["cfg.trainer.lr"]) == ["–"] and static["mean"].iloc[0] == pytest.approx(0.75)
    assert figure.axes[0].get_xscale() == "log" and "dotted: a method without trainer.lr" in data.attrs["note"]


def test_the_note_says_when_the_epochs_were_selected_on_test():
    """--tune chooses on val, but at the epochs each run's rule picked: runs that select their
    epochs on test (protocol.selection.split=test) let test into the choice, and the note says so."""
    on_test = tidy(RUNS)
    on_test.results["sel_split"] = "test"
    md = make_table(on_test, tune=["trainer.lr"])[0].to_markdown()
    assert "test never used" not in md
    assert "epochs were selected on test (best: test mean/accuracy), so test entered the choice" in md
    # --select-split val: the runs' rule on val, and test stays out
    assert "test never used" in make_table(on_test, tune=["trainer.lr"], selection={"split": "val"})[0].to_markdown()


def test_a_zoomed_sensitivity_panel_draws_no_band_of_a_value_out_of_view():
    """The lower row zooms on the lines' bests: the band of a learning rate that did not train (its
    mean far below the window) used to cross the whole panel as a spike; it is not drawn there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from mtl_bench.report import plots

    group = pd.DataFrame({"line": ["ew"] * 3, "cfg.trainer.lr": ["0.0001", "0.01", "0.1"], "x": [1e-4, 1e-2, 1e-1],
                          "mean": [0.2, 0.95, 0.96], "low": [-0.5, 0.94, 0.95], "high": [0.9, 0.96, 0.97],
                          "chosen": [False, False, True]})
    _, ax = plt.subplots()
    plots._draw_sensitivity(ax, group, "", "log", "cfg.trainer.lr", (0.93, 0.97))
    (band,) = ax.collections
    xs = [x for path in band.get_paths() for x, _ in path.vertices]
    assert min(xs) == pytest.approx(1e-2)   # from the first point in view: no polygon reaches lr 1e-4
    _, ax = plt.subplots()
    plots._draw_sensitivity(ax, group, "", "log", "cfg.trainer.lr", (0.0, 1.0))
    assert min(x for path in ax.collections[0].get_paths() for x, _ in path.vertices) == pytest.approx(1e-4)


def test_plot_task_labels_rename_the_tasks_where_drawn_and_refuse_an_unknown_task(tmp_path, capsys):
    """`--task-label TASK=LABEL`: a figure names a task by what it is (gradnorm_toy's sigma), in its
    legends and panel titles; the data it plots says the same; a task the runs lack is one line."""
    path = write_table(tidy(RUNS).results, tmp_path / "runs.csv")
    figs = tmp_path / "figs"
    main(["plot", str(path), "--kind", "curves", "--metric", "accuracy", "--task-label", "left=left digit",
          "--csv", str(tmp_path / "drawn.csv"), "--out", str(figs)])
    drawn = pd.read_csv(tmp_path / "drawn.csv")
    assert set(drawn["task"]) == {"left digit", "right"}
    with pytest.raises(SystemExit) as err:
        main(["plot", str(path), "--kind", "curves", "--task-label", "middle=x", "--out", str(figs)])
    assert err.value.code == 2
    assert "--task-label: no task 'middle' in these runs; their tasks: left, right" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--kind", "delta", "--task-label", "left=L"], "--task-label: --kind delta names no task (it names methods)"),
    (["--kind", "curves", "--task-label", "left=right"],
     "--task-label left=right: 'right' is another task of these runs; the two would be drawn as one"),
    (["--kind", "curves", "--task-label", "left=x", "--task-label", "right=x"], "--task-label: two tasks labelled 'x'"),
])
def test_plot_task_labels_that_would_mislead_are_refused(tmp_path, capsys, args, message):
    """A label for a figure without tasks would be dropped unseen; a label that is another task's
    name, or shared by two tasks, would draw two tasks as one."""
    path = write_table(tidy(RUNS).results, tmp_path / "runs.csv")
    with pytest.raises(SystemExit) as err:
        main(["plot", str(path), *args, "--out", str(tmp_path / "figs")])
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_plot_task_labels_may_swap_two_tasks_names(tmp_path):
    path = write_table(tidy(RUNS).results, tmp_path / "runs.csv")
    main(["plot", str(path), "--kind", "curves", "--metric", "accuracy", "--task-label", "left=right",
          "--task-label", "right=left", "--csv", str(tmp_path / "drawn.csv"), "--out", str(tmp_path / "figs")])
    assert set(pd.read_csv(tmp_path / "drawn.csv")["task"]) == {"left", "right"}
