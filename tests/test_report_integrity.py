"""The report layer never prints a number from a run whose files disagree (issue 11, items 1, 2)."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from report_runs import ONE_THREAD, synthetic_runs

from conftest import cli
from mtl_bench.report import collect
from mtl_bench.report.integrity import load_records
from mtl_bench.report.pipeline import make_table


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return synthetic_runs(tmp_path_factory)


@pytest.fixture
def copy(runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs, root)
    return root


def completed_runs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("summary.json")
                  if json.loads(p.read_text())["status"] == "completed")


def truncate_to_epochs(run: Path, epochs: int) -> None:
    path = run / "metrics.jsonl"
    kept = [l for l in path.read_text().splitlines(keepends=True) if json.loads(l)["epoch"] <= epochs]
    path.write_text("".join(kept))


def test_a_truncated_history_of_a_completed_run_is_left_out_and_named(copy):
    run = next(r for r in completed_runs(copy / "mtl") if "strategy=uw" in r.name)
    truncate_to_epochs(run, 2)  # the summary says 3 epochs completed
    found = collect([copy])
    assert not found.results["run"].eq(str(run)).any()
    row = found.runs.set_index("run").loc[str(run)]
    assert row["status"] == "damaged"
    assert "metrics.jsonl holds epochs 1-2" in row["reason"] and "3 epoch(s) completed" in row["reason"]
    out = cli("table", str(copy), "--metrics", "mse", cwd=copy, env=ONE_THREAD)
    assert out.returncode == 0, out.stderr
    assert f"damaged    {run}" in out.stderr


def test_a_history_whose_last_epoch_disagrees_with_the_summary_is_left_out(copy):
    run = completed_runs(copy / "mtl")[0]
    summary = json.loads((run / "summary.json").read_text())
    summary["final"]["test"]["task0"]["mse"] += 1.0
    (run / "summary.json").write_text(json.dumps(summary))
    row = collect([copy]).runs.set_index("run").loc[str(run)]
    assert row["status"] == "damaged" and "test/task0/mse at epoch 3" in row["reason"]


def test_a_corrupt_summary_is_named_and_the_rest_is_tabulated(copy):
    run = completed_runs(copy / "mtl")[0]
    text = (run / "summary.json").read_text()
    (run / "summary.json").write_text(text[: len(text) // 2])
    for command in ("table", "collect"):
        out = cli(command, str(copy), "--metrics" if command == "table" else "--out", "mse" if command == "table"
                  else str(copy / "r.csv"), cwd=copy, env=ONE_THREAD)
        assert out.returncode == 0, out.stderr
        assert f"{run / 'summary.json'} is unreadable" in out.stdout + out.stderr
    assert "10 completed run(s)" in out.stdout


# damage -> (what it does to a completed run, the file its reason must name)
DAMAGES = {
    "truncated metrics": (lambda run: truncate_to_epochs(run, 1), "metrics.jsonl"),
    "torn last line": (lambda run: _cut(run / "metrics.jsonl", 0.9), "metrics.jsonl"),
    "empty metrics": (lambda run: (run / "metrics.jsonl").write_text(""), "metrics.jsonl"),
    "malformed line": (lambda run: _insert(run / "metrics.jsonl", "{not json\n"), "metrics.jsonl"),
    "record without keys": (lambda run: _insert(run / "metrics.jsonl", '{"epoch": 1}\n'), "metrics.jsonl"),
    "two records on a line": (lambda run: _insert(run / "metrics.jsonl", '{"epoch": 1, "step": 0, "split": "val", '
                                                  '"task": "a", "metric": "m", "value": 1} {"epoch": 1}\n'), "metrics.jsonl"),
    "missing summary": (lambda run: (run / "summary.json").unlink(), "summary.json"),
    "corrupt summary": (lambda run: _cut(run / "summary.json", 0.5), "summary.json"),
    "summary not an object": (lambda run: (run / "summary.json").write_text("[1, 2]"), "summary.json"),
    "missing config": (lambda run: (run / ".hydra" / "config.yaml").unlink(), "config.yaml"),
    "corrupt config": (lambda run: (run / ".hydra" / "config.yaml").write_text("seed: [unclosed\n  x: {"),
                       "config.yaml"),
}


def _cut(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _insert(path: Path, line: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(len(lines) // 2, line)
    path.write_text("".join(lines))


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_damaged_run_folders(copy, seed):
    """Random damages to random completed runs: no valid run is lost, no damaged run contributes a
    number, and every damaged one is listed with the damaged file's name."""
    rng = random.Random(seed)
    runs = completed_runs(copy)
    damaged = dict(zip(rng.sample(runs, 4), rng.sample(sorted(DAMAGES), 4)))
    for run, damage in damaged.items():
        DAMAGES[damage][0](run)
    found = collect([copy])
    valid = {str(r) for r in runs if r not in damaged}
    assert set(found.results["run"].unique()) == valid
    excluded = found.excluded.set_index("run")
    for run, damage in damaged.items():
        assert str(run) in excluded.index, damage
        assert DAMAGES[damage][1] in excluded.loc[str(run), "reason"], (damage, excluded.loc[str(run), "reason"])
    assert found.describe_excluded().count("\n") == len(found.excluded)
    if any("mtl" in str(r) for r in valid):
        table, _ = make_table([copy], metrics=["mse"])
        assert set(table.frame["n"]) <= {1, 2}


CONFIG_TEXTS = [
    "trainer:\n  lr: 1e-3\n  wd: 1.0e-08\n  steps: 1_000\n",   # floats without a dot, as OmegaConf reads them
    "day: 2001-12-14\nflag: yes\nnothing: null\nbig: .inf\n",    # a date stays text (YAML 1.1 would make a date)
    "path: ${hydra:runtime.cwd}/data\nlist: [1, null, 'x', 2.5]\nnested: {a: {b: []}}\n",
    "a: 1\na: 2\n",                                               # a duplicate key is an error
    "a: [1, 2\n",                                                 # a torn file is an error
]


@pytest.mark.parametrize("text", CONFIG_TEXTS)
def test_run_configs_read_as_omegaconf_reads_them(text, tmp_path):
    """The report layer's fast config reader (libyaml) gives what ``OmegaConf.load`` gives, and
    fails where it fails."""
    from omegaconf import OmegaConf

    from mtl_bench.report.integrity import load_config

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(text)
    config, problem = load_config(tmp_path)
    try:
        expected = OmegaConf.to_container(OmegaConf.load(tmp_path / ".hydra" / "config.yaml"), resolve=False)
    except Exception:
        assert config == {} and "is unreadable" in problem
    else:
        assert problem == "" and config == expected


def test_a_real_run_config_reads_as_omegaconf_reads_it(runs):
    from omegaconf import OmegaConf

    from mtl_bench.report.integrity import load_config

    for run in completed_runs(runs):
        config, problem = load_config(run)
        assert problem == "" and config == OmegaConf.to_container(OmegaConf.load(run / ".hydra/config.yaml"),
                                                                  resolve=False)


def test_metrics_lines_read_as_json_reads_them_one_by_one(tmp_path):
    """The fast line parser takes what ``json.loads`` of each line takes: a line with a record and
    anything after it, a torn line, or a value that is not a record is malformed (numbered 1-based,
    blank lines skipped but counted)."""
    good = '{"epoch": 1, "step": 0, "split": "val", "task": "a", "metric": "m", "value": NaN}'
    (tmp_path / "metrics.jsonl").write_text("\n".join([
        good, "", f"  {good}  ", good + " {}", good[:-3], "[1, 2]", '"text"', good.replace('"epoch": 1', '"epoch": 1.0'),
    ]) + "\n")
    records, bad = load_records(tmp_path)
    assert bad == [4, 5, 6, 7, 8] and len(records) == 2
    assert records[0]["metric"] == "m" and records[0]["value"] != records[0]["value"]  # NaN, as json reads it
