"""collect and model selection over real run directories (tests/report_runs.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from report_runs import ONE_THREAD, synthetic_runs

from conftest import ROOT, cli
from mtl_bench.report import collect, read_table
from mtl_bench.report.groups import annotate
from mtl_bench.report.pipeline import select_all
from mtl_bench.report.selection import selected_values


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return synthetic_runs(tmp_path_factory)


@pytest.fixture
def with_broken(runs, tmp_path):
    """The runs plus a killed one (status still running) and one that failed, as the trainer leaves them."""
    root = tmp_path / "runs"
    shutil.copytree(runs, root)
    done = sorted(p.parent for p in (root / "mtl").glob("*/summary.json"))[0]
    for name, status, extra in (("killed", "running", {}), ("failed", "failed", {"error": "RuntimeError: boom"})):
        target = root / name
        shutil.copytree(done, target)
        summary = json.loads((target / "summary.json").read_text())
        summary.update(status=status, epochs_completed=1, **extra)
        (target / "summary.json").write_text(json.dumps(summary))
    crashed = root / "crashed" / ".hydra"
    crashed.mkdir(parents=True)
    shutil.copy(done / ".hydra" / "config.yaml", crashed / "config.yaml")
    return root


def test_collect_builds_one_tidy_table_from_sweeps_and_single_runs(runs):
    found = collect([runs])
    res = found.results
    assert res["run"].nunique() == 6 + 3 + 2        # completed: mtl, static, stl
    assert set(res["status"]) == {"completed"}
    assert {"epoch", "step", "split", "task", "metric", "value", "higher_is_better", "strategy", "seed",
            "dataset", "seconds_per_epoch"} <= set(res.columns)
    # one row per (run, epoch, step, split, task, metric)
    assert not res.duplicated(["run", "epoch", "step", "split", "task", "metric"]).any()
    assert set(res["split"]) == {"train", "train_step", "val", "test"}
    # directions come from summary.json (recorded by the trainer)
    summary = json.loads((sorted(p.parent for p in (runs / "mtl").glob("*/summary.json"))[0] / "summary.json").read_text())
    assert summary["directions"]["task0"] == {"normalized_loss": False, "mse": False}
    assert not res.loc[res["metric"] == "mse", "higher_is_better"].any()
    # the diverged run is listed, not mixed in
    assert list(found.excluded["status"]) == ["diverged"]
    assert "diverged" in found.describe_excluded()
    assert not res["run"].str.contains("diverged").any()


def test_incomplete_and_failed_runs_are_listed_not_mixed_in(with_broken):
    found = collect([with_broken])
    excluded = found.excluded.set_index("status")
    assert set(excluded.index) == {"running", "failed", "diverged", "no summary"}
    assert "1/3 epochs" in excluded.loc["running", "reason"]
    assert "boom" in excluded.loc["failed", "reason"]
    for name in ("killed", "failed", "crashed", "diverged"):
        assert not found.results["run"].str.endswith(name).any()
    text = found.describe_excluded()
    assert "4 run(s) left out" in text and "killed" in text and "crashed" in text
    # the CLI prints them
    out = cli("collect", str(with_broken), cwd=with_broken, env=ONE_THREAD)
    assert out.returncode == 0, out.stderr
    assert "left out" in out.stdout and "failed" in out.stdout and "11 completed run(s)" in out.stdout


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_collect_writes_a_table_that_reads_back(runs, tmp_path, suffix):
    out = cli("collect", str(runs), "--out", str(tmp_path / f"results{suffix}"), cwd=tmp_path, env=ONE_THREAD)
    assert out.returncode == 0, out.stderr
    table = read_table(tmp_path / f"results{suffix}")
    direct = collect([runs]).results
    assert len(table) == len(direct)
    key = ["run", "epoch", "step", "split", "task", "metric"]
    merged = table.merge(direct, on=key, suffixes=("", "_d"))
    assert (merged["value"] - merged["value_d"]).abs().max() < 1e-12
    # a collected table is itself a valid input
    again = collect([tmp_path / f"results{suffix}"])
    assert again.results["run"].nunique() == 11
    from mtl_bench.report.pipeline import make_table
    from_file, _ = make_table([tmp_path / f"results{suffix}"], metrics=["mse"])
    from_dirs, _ = make_table([runs], metrics=["mse"])
    a = from_file.frame.set_index("method")["delta_m"]
    b = from_dirs.frame.set_index("method")["delta_m"]
    assert a.sort_index().to_numpy() == pytest.approx(b.sort_index().to_numpy())


def _one_run(runs, strategy="ew", seed=0):
    res = annotate(collect([runs]).results)
    run = res[(res["strategy"] == strategy) & (res["seed"] == seed) & ~res["is_baseline"]]["run"].iloc[0]
    return res[res["run"] == run]


def test_selection_rules_on_val(runs):
    frame = _one_run(runs)
    val = frame[(frame["split"] == "val") & (frame["task"] == "task1") & (frame["metric"] == "mse")]
    by_epoch = val.set_index("epoch")["value"]
    best = selected_values(frame, rule="best", split="val", metric="task1/mse")
    assert best["selected_epochs"].iloc[0] == str(int(by_epoch.idxmin()))
    last = selected_values(frame, rule="last")
    assert last["selected_epochs"].iloc[0] == "3"
    k2 = selected_values(frame, rule="mean_last_k", k=2)
    got = k2[(k2["split"] == "val") & (k2["task"] == "task1") & (k2["metric"] == "mse")]["value"].iloc[0]
    assert got == pytest.approx(by_epoch.loc[[2, 3]].mean())


def test_selection_never_reads_test_unless_named(runs):
    frame = _one_run(runs).copy()
    a = selected_values(frame, rule="best", split="val", metric="mean/mse")
    val_best = int(a["selected_epochs"].iloc[0])
    other = 1 if val_best != 1 else 2
    # make test prefer another epoch: a rule reading test would pick it
    test = frame["split"] == "test"
    poisoned = frame.copy()
    poisoned.loc[test, "value"] = (poisoned.loc[test, "epoch"] != other).astype(float)
    b = selected_values(poisoned, rule="best", split="val", metric="mean/mse")
    assert int(b["selected_epochs"].iloc[0]) == val_best
    # without a val split, best does not fall back to test ...
    no_val = frame[frame["split"] != "val"]
    with pytest.raises(ValueError, match="no 'val' split.*asked for by name"):
        selected_values(no_val, rule="best", split="val", metric="mean/mse")
    # a rule asked for by name selects on val even when the run's config named test for its own rule
    configured = poisoned.assign(sel_rule="mean_last_k", sel_split="test")
    c = selected_values(configured, rule="best", metric="mean/mse")
    assert int(c["selected_epochs"].iloc[0]) == val_best
    # ... but selects on test when test is named
    named = selected_values(poisoned, rule="best", split="test", metric="mean/mse")
    assert int(named["selected_epochs"].iloc[0]) == other


def test_delta_m_selection_against_single_task_runs(runs):
    sel = select_all([runs], rule="delta_m", split="val")
    mtl = sel.selected[~sel.selected["is_baseline"]]
    assert set(mtl["selection"]) == {"delta_m"}
    # check one run by hand: its chosen epoch minimises Delta_m on val against the seed-0 baselines
    from mtl_bench.report.scores import delta_m
    run = mtl[(mtl["strategy"] == "uw") & (mtl["seed"] == 0)]["run"].iloc[0]
    frame = sel.results[(sel.results["run"] == run) & (sel.results["split"] == "val")]
    stl = sel.selected[sel.selected["is_baseline"] & (sel.selected["split"] == "val")]
    base = {(t, m): v for t, m, v in stl[["task", "metric", "value"]].itertuples(index=False)}
    scores = {}
    for epoch, rows in frame.groupby("epoch"):
        values = {(t, m): v for t, m, v in rows[["task", "metric", "value"]].itertuples(index=False)}
        scores[epoch] = delta_m(values, base, {k: False for k in base})
    chosen = mtl[mtl["run"] == run]["selected_epochs"].iloc[0]
    assert int(chosen) == min(scores, key=scores.get)


def test_report_layer_does_not_import_torch():
    code = ("import sys, mtl_bench.report.pipeline, mtl_bench.report.plots, mtl_bench.report.papers; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.returncode == 0, out.stderr


def test_delta_m_rule_from_the_run_config_matches_the_flag(runs):
    from mtl_bench.report.collect import Collection

    found = collect([runs])
    configured = Collection(results=found.results.assign(sel_rule="delta_m", sel_split="val"), runs=found.runs)
    by_config = select_all(configured).selected
    by_flag = select_all([runs], rule="delta_m").selected
    mtl = lambda s: s[~s["is_baseline"]].drop_duplicates("run").set_index("run")["selected_epochs"].sort_index()
    assert (mtl(by_config) == mtl(by_flag)).all()
    assert set(by_config.loc[~by_config["is_baseline"], "selection"]) == {"delta_m"}
    # the single-task runs cannot be scored by Delta_m against themselves: they fall back to last
    assert set(by_config.loc[by_config["is_baseline"], "selection"]) == {"last"}


def test_runs_that_differ_only_in_computation_neutral_keys_share_a_panel(tmp_path):
    """trainer.host_memory (and a key a newer mtl-bench adds), compilation and the batched-gradient
    bound never split a table's panels; the process count does (batch norm per process)."""
    import shutil

    import yaml

    from mtl_bench.report.groups import annotate

    runs = sorted((ROOT / "results" / "zoo_multimnist" / "runs" / "mtl").glob("*strategy=ew"))
    assert len(runs) == 3
    for i, (run, memory) in enumerate(zip(runs, [None, "heap", "system"])):
        copy = shutil.copytree(run, tmp_path / f"run{i}", ignore=shutil.ignore_patterns("checkpoint.pt"))
        config = yaml.safe_load((copy / ".hydra" / "config.yaml").read_text())
        if memory is None:
            config["trainer"].pop("host_memory", None)
        else:
            config["trainer"]["host_memory"] = memory
        config["trainer"]["compile"] = bool(i % 2)
        config["grad"]["vmap_max_bytes"] = 2**30 * (i + 1)
        (copy / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    table = annotate(collect([tmp_path]).results)
    assert table["panel"].nunique() == 1 and set(table["method"]) == {"ew"}
    config = yaml.safe_load((tmp_path / "run2" / ".hydra" / "config.yaml").read_text())
    config["trainer"]["distributed"] = {"nproc": 4, "sync_batchnorm": False}
    (tmp_path / "run2" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert annotate(collect([tmp_path]).results)["panel"].nunique() == 2


def test_collect_refuses_a_file_it_could_not_read_back_and_an_empty_folder(runs, tmp_path):
    out = cli("collect", str(runs), "--out", str(tmp_path / "runs.txt"), cwd=tmp_path)
    assert out.returncode == 2 and "name a .parquet or a .csv file" in out.stderr and not (tmp_path / "runs.txt").exists()
    (tmp_path / "empty").mkdir()
    out = cli("collect", str(tmp_path / "empty"), "--out", str(tmp_path / "none.csv"), cwd=tmp_path)
    assert out.returncode == 2 and "no completed runs below" in out.stderr and not (tmp_path / "none.csv").exists()


def test_a_nan_epoch_makes_the_mean_of_the_last_epochs_nan_as_in_the_run(runs):
    """mean_last_k over epochs one of which is NaN (e.g. dataset.miou_absent=nan) is NaN, in the
    report as in the trainer's own summary.json: averaging the other epochs would hide it."""
    import math

    from mtl_bench.protocol import run_selection

    frame = _one_run(runs).copy()
    cell = (frame["split"] == "val") & (frame["task"] == "task1") & (frame["metric"] == "mse")
    frame.loc[cell & (frame["epoch"] == 2), "value"] = math.nan
    k2 = selected_values(frame, rule="mean_last_k", k=2)
    values = k2[k2["split"] == "val"].set_index(["task", "metric"])["value"]
    assert math.isnan(values[("task1", "mse")]) and not math.isnan(values[("task0", "mse")])
    last = selected_values(frame, rule="last")  # epoch 3 alone has a value
    assert not math.isnan(last[(last["split"] == "val") & (last["task"] == "task1")
                               & (last["metric"] == "mse")]["value"].iloc[0])
    history = {1: {"val": {"a": {"acc": 0.5}}}, 2: {"val": {"a": {"acc": math.nan}}}}
    assert math.isnan(run_selection({"rule": "mean_last_k", "k": 2}, history, {"a": {"acc": True}})
                      ["metrics"]["val"]["a"]["acc"])


def test_step_records_hold_the_weights_of_their_step(runs):
    """DWA's weights are constant within an epoch and change at its end: every step record of an
    epoch holds that epoch's weights (records kept DWA's own buffer, so the steps of epoch 2 read
    epoch 3's weights once on_epoch_end had changed it)."""
    frame = collect([runs]).results
    dwa = frame[(frame["strategy"] == "dwa") & (frame["metric"] == "weight")]
    assert len(dwa) and dwa["epoch"].nunique() == 3
    for (run, epoch, task), rows in dwa.groupby(["run", "epoch", "task"]):
        steps = rows[rows["split"] == "train_step"]["value"]
        (mean,) = rows[rows["split"] == "train"]["value"]
        assert len(steps) and steps.to_numpy() == pytest.approx(mean, rel=1e-6), (run, epoch, task)
    assert not (dwa[dwa["split"] == "train"]["value"] == 1.0).all()  # the weights did move


def test_run_columns_keep_the_types_each_runs_own_frame_gave_them():
    """The run columns are joined to all runs' records at once, with the column types of one frame
    per run concatenated (as collect built them before): an integer setting that one run leaves
    empty stays an object column of ints and None, not floats, so tables print ``3``, not ``3.0``."""
    import pandas as pd

    from mtl_bench.report.collect import _with_run_columns

    records = [pd.DataFrame({"epoch": [1, 2], "value": [0.5, 0.25]}), pd.DataFrame({"epoch": [1], "value": [0.75]})]
    rows = [{"run": "a", "cfg.model.width": 3}, {"run": "b", "cfg.model.width": None}]
    (joined,) = _with_run_columns(records, rows)
    one_by_one = pd.concat([frame.assign(**row) for frame, row in zip(records, rows)], ignore_index=True)
    assert joined["cfg.model.width"].tolist() == [3, 3, None] and joined["cfg.model.width"].dtype == object
    assert joined["cfg.model.width"].dtype == one_by_one["cfg.model.width"].dtype
    assert joined["run"].tolist() == ["a", "a", "b"] and joined["value"].tolist() == [0.5, 0.25, 0.75]
