"""Tables that say what their numbers stand on, on hand-made results (each case once pooled,
dropped or ranked something silently): runs of different task sets, values missing on some seeds,
a zero baseline, a method without a value of a column, repeated runs of a seed, and the aggregate
across benchmarks with different numbers of runs."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mtl_bench.report import plots
from mtl_bench.report.aggregate import aggregate_table
from mtl_bench.report.collect import Collection
from mtl_bench.report.pipeline import make_table, select_all
from mtl_bench.report.scores import mean_rank

SEEDS = (0, 1, 2)


class Runs:
    """A results table built run by run: ``add(strategy, {task: value}, seed)``."""

    def __init__(self, metric: str = "accuracy", higher_is_better: bool = True):
        self.rows, self.metric, self.hib = [], metric, higher_is_better

    def add(self, strategy, values: dict, seed: int, dataset: str = "mm", name: str | None = None):
        tasks = list(values)
        run = name or f"{dataset}-{strategy}-{'+'.join(tasks)}-s{seed}"
        info = {"run": run, "status": "completed", "dataset": dataset, "strategy": strategy, "seed": seed,
                "tasks": ",".join(tasks), "n_tasks": len(tasks), "seconds_per_epoch": 1.0, "sel_rule": "last",
                "sel_split": "val", "sel_metric": None, "sel_k": 10, "sel_average": "metric",
                "cfg.dataset.tasks": str(tasks), "cfg.strategy.name": strategy}
        for split in ("val", "test"):
            for task, value in values.items():
                self.rows.append({**info, "epoch": 0, "step": 0, "split": split, "task": task,
                                  "metric": self.metric, "value": value, "higher_is_better": self.hib})
        return self

    def baselines(self, tasks, value=0.5, dataset="mm", seeds=SEEDS):
        for seed in seeds:
            for task in tasks:
                self.add("ew", {task: value}, seed, dataset)
        return self

    def collection(self) -> Collection:
        results = pd.DataFrame(self.rows)
        return Collection(results=results, runs=results.drop_duplicates("run").assign(reason=""))

    def table(self, **kwargs):
        return make_table(self.collection(), **kwargs)[0]


def rows_of(table):
    return table.frame.set_index(["panel", "method"])


def test_runs_of_different_task_sets_are_different_comparisons():
    runs = Runs().baselines(["a", "b", "c"])
    for seed in SEEDS:
        runs.add("ew", {"a": 0.9, "b": 0.9}, seed)
        runs.add("ew", {"a": 0.6, "b": 0.6, "c": 0.6}, seed)
        runs.add("uw", {"a": 0.7, "b": 0.7, "c": 0.7}, seed)
    table = runs.table()
    frame = rows_of(table)
    # never one "ew" row averaging a 2-task and a 3-task run per seed (-50 with a CI of 0)
    assert frame.loc[("mm tasks=a,b", "ew"), "delta_m"] == pytest.approx(-80.0)
    assert frame.loc[("mm tasks=a,b,c", "ew"), "delta_m"] == pytest.approx(-20.0)
    assert frame.loc[("mm tasks=a,b,c", "uw"), "delta_m"] == pytest.approx(-40.0)
    assert frame.loc[("mm tasks=a,b,c", "uw"), "mr"] == 1.0 and frame.loc[("mm tasks=a,b,c", "ew"), "mr"] == 2.0
    assert frame.loc[("mm", "stl"), "n"] == 3  # the single-task runs stay in the panel of the dataset
    assert "**mm tasks=a,b**" in table.to_markdown()
    # the pareto plot of a task set's panel has its dataset's single-task point
    pareto = plots.pareto(select_all(runs.collection()).selected, tasks=["a", "b"])
    assert pareto.attrs["stl"]["mm tasks=a,b"] == pareto.attrs["stl"]["mm tasks=a,b,c"] == (0.5, 0.5)


def test_one_task_set_keeps_the_panel_name():
    runs = Runs().baselines(["a", "b"])
    for seed in SEEDS:
        runs.add("ew", {"a": 0.6, "b": 0.6}, seed).add("uw", {"b": 0.7, "a": 0.7}, seed)  # order aside
    assert set(rows_of(runs.table()).index.get_level_values("panel")) == {"mm"}


def test_a_cell_over_fewer_seeds_than_its_row_says_so():
    runs = Runs().baselines(["left", "right"])
    for seed, left in zip(SEEDS, [0.7, math.nan, 0.4]):
        runs.add("ew", {"left": 0.6, "right": 0.6}, seed).add("uw", {"left": left, "right": 0.6}, seed)
    table = runs.table(columns=["left/accuracy", "right/accuracy", "mean/accuracy"])
    frame = rows_of(table)
    uw = frame.loc[("mm", "uw")]
    assert uw["n"] == 3 and uw["left/accuracy:n"] == 2 and uw["right/accuracy:n"] == 3
    assert uw["left/accuracy"] == pytest.approx(0.55)
    # a mean over tasks with a task missing is missing, not the other task's value
    assert uw["mean/accuracy:n"] == 2 and uw["mean/accuracy"] == pytest.approx((0.65 + 0.5) / 2)
    assert uw["delta_m:n"] == 2
    uw_line = next(line for line in table.to_markdown().splitlines() if line.startswith("| uw "))
    assert uw_line.count("(2/3 seeds)") == 3
    assert any(note.startswith("(k/n seeds)") for note in table.notes)
    ew_line = next(line for line in table.to_markdown().splitlines() if line.startswith("| ew "))
    assert "seeds)" not in ew_line


def test_a_single_task_row_missing_a_seed_of_a_task_says_so():
    runs = Runs().baselines(["left"]).baselines(["right"], seeds=(0,))
    for seed in SEEDS:
        runs.add("ew", {"left": 0.6, "right": 0.6}, seed)
    stl_line = next(line for line in runs.table().to_markdown().splitlines() if line.startswith("| stl "))
    assert "50.00 (1/3 seeds)" in stl_line


def test_a_zero_baseline_leaves_out_that_seeds_delta_m_with_a_note():
    runs = Runs(metric="error", higher_is_better=False)
    for seed in SEEDS:
        runs.add("ew", {"left": 0.0 if seed == 0 else 0.1}, seed).add("ew", {"right": 0.2}, seed)
        runs.add("ew", {"left": 0.1, "right": 0.2}, seed).add("uw", {"left": 0.05, "right": 0.2}, seed)
    table = runs.table()
    uw = rows_of(table).loc[("mm", "uw")]
    assert uw["delta_m"] == pytest.approx(-25.0) and uw["delta_m:n"] == 2
    assert any("baseline of left/error is 0 in mm for seed 0" in note for note in table.notes)


def test_mean_rank_needs_every_column():
    table = pd.DataFrame({"acc": [0.9, 0.9, 0.8, np.nan], "err": [0.1, 0.2, 0.2, 0.05],
                          "gone": [np.nan] * 4}, index=list("ABCD"))
    ranks = mean_rank(table, {"acc": True, "err": False, "gone": True})
    assert ranks["A"] == 1.5 and ranks["B"] == 2.0 and ranks["C"] == 3.0  # a column nobody has: left out
    assert math.isnan(ranks["D"])  # its one rank (1) is not comparable with the others' two


def test_a_method_without_a_column_gets_no_mean_rank_in_the_table():
    runs = Runs().baselines(["left", "right"])
    for seed in SEEDS:
        runs.add("ew", {"left": 0.6, "right": 0.6}, seed).add("uw", {"left": 0.7, "right": 0.5}, seed)
        runs.add("mgda", {"left": 0.9, "right": math.nan}, seed)
    table = runs.table()
    frame = rows_of(table)
    assert math.isnan(frame.loc[("mm", "mgda"), "mr"])
    # mgda's left value still ranks the others: ew (3 + 1) / 2, uw (2 + 2) / 2
    assert frame.loc[("mm", "ew"), "mr"] == 2.0 and frame.loc[("mm", "uw"), "mr"] == 2.0
    assert any(note.startswith("MR of mgda in mm left out") for note in table.notes)


def test_several_runs_of_one_seed_are_named():
    runs = Runs().baselines(["left", "right"])
    for seed in SEEDS:
        runs.add("ew", {"left": 0.6, "right": 0.6}, seed)
    runs.add("ew", {"left": 0.8, "right": 0.8}, 0, name="copy-of-seed-0")
    table = runs.table()
    assert rows_of(table).loc[("mm", "ew"), "n"] == 3
    note = next(note for note in table.notes if note.startswith("ew in mm has 2 runs of seed(s) 0"))
    assert "copy-of-seed-0" in note and "mm-ew-left+right-s0" in note


def test_the_aggregate_weighs_every_benchmark_the_same():
    """Two methods equal on every benchmark are equal across them, whatever their run counts."""
    runs = Runs()
    for dataset, value in (("hard", 0.45), ("easy", 0.9)):
        runs.baselines(["left", "right"], dataset=dataset, seeds=range(5))
        for seed in range(3):
            runs.add("ew", {"left": 0.5, "right": 0.5}, seed, dataset)
        for method, seeds in (("A", 5 if dataset == "hard" else 3), ("B", 3 if dataset == "hard" else 5)):
            for seed in range(seeds):
                runs.add(method, {"left": value + 0.01 * seed, "right": value + 0.01 * seed}, seed, dataset)
    aggregate = aggregate_table(runs.table())
    frame = aggregate.frame.set_index("method")
    for column in ("iqm", "mean", "iqm:low", "iqm:high", "mean:low", "mean:high"):
        assert not math.isnan(frame.loc["A", column])
    assert frame.loc["A", "runs"] == 8 and frame.loc["B", "runs"] == 8
    # A's hard runs (5) repeated 3 times, its easy runs (3) 5 times: 15 values each
    hard, easy = -100 * (0.45 + 0.01 * np.arange(5) - 0.5) / 0.5, -100 * (0.9 + 0.01 * np.arange(3) - 0.5) / 0.5
    pooled = np.concatenate([np.repeat(easy, 5), np.repeat(hard, 3)])
    assert frame.loc["A", "iqm"] == pytest.approx(stats.trim_mean(pooled, 0.25), rel=1e-12)
    assert frame.loc["A", "mean"] == pytest.approx((hard.mean() + easy.mean()) / 2, rel=1e-12)
    # B ran 3 seeds on hard and 5 on easy: its first seeds are A's, so only the weighting could differ
    hard_b, easy_b = hard[:3], -100 * (0.9 + 0.01 * np.arange(5) - 0.5) / 0.5
    assert frame.loc["B", "mean"] == pytest.approx((hard_b.mean() + easy_b.mean()) / 2, rel=1e-12)
    assert any("different numbers of runs per benchmark (A, B)" in note for note in aggregate.notes)
    assert "each benchmark weighing the same" in aggregate.caption


def test_a_named_reference_or_column_the_runs_lack_is_refused():
    runs = Runs().baselines(["left", "right"])
    for seed in SEEDS:
        runs.add("ew", {"left": 0.6, "right": 0.6}, seed).add("uw", {"left": 0.7, "right": 0.5}, seed)
    with pytest.raises(ValueError, match="--reference nope: no such method in the table; its methods: ew, uw"):
        runs.table(reference="nope")
    with pytest.raises(ValueError, match="--columns left/error: not logged by the runs on test; their columns: "
                                         "left/accuracy, right/accuracy"):
        runs.table(columns=["left/accuracy", "left/error"])
    assert rows_of(runs.table(columns=["mean/accuracy"])).loc[("mm", "uw"), "mean/accuracy"] == pytest.approx(0.6)
    # the default reference is ew where the table has it, and nothing where it has not
    without_ew = Runs().baselines(["left"])
    for seed in SEEDS:
        without_ew.add("uw", {"left": 0.7}, seed=seed, name=f"uw-{seed}").add("mgda", {"left": 0.6}, seed=seed,
                                                                                 name=f"mgda-{seed}")
    assert without_ew.table().reference == "ew"
