"""Runs made before the config schemas stay what they were: a fresh run with the same settings
lands in the same table row and panel, a committed run is recognised as completed, and a
checkpoint written by the code before the schemas resumes (docs/configuration.md#compatibility)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SENER = ROOT / "results" / "sener_koltun_multimnist" / "runs" / "mtl"
SENER_RUN = "+experiment=sener_koltun_multimnist,seed={seed},strategy=mgda,trainer.lr=0.01"
GRADNORM_RUN = ROOT / "results" / "gradnorm_toy" / "runs" / "mtl" / "+experiment=gradnorm_toy,seed=0,strategy=ew"
OLD_RUN = ROOT / "tests" / "fixtures" / "run_before_schemas"  # 1 epoch of uw, written by the code before the schemas


def composed_by_the_cli(run_cli, cwd: Path, overrides: list[str]) -> str:
    """The job config `mtl-bench run` composes now (the text it saves as .hydra/config.yaml)."""
    proc = run_cli("run", *overrides, "--cfg", "job", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("changed, together", [([], True), (["trainer.momentum=0.5"], False)])
def test_a_run_after_the_schemas_groups_with_a_committed_run(run_cli, tmp_path, changed, together):
    from mtl_bench.report import collect
    from mtl_bench.report.groups import annotate

    committed = tmp_path / "runs" / "committed"
    shutil.copytree(SENER / SENER_RUN.format(seed=0), committed)
    fresh = tmp_path / "runs" / "fresh"  # seed 1's files, with the config the CLI composes today
    shutil.copytree(SENER / SENER_RUN.format(seed=1), fresh)
    overrides = SENER_RUN.format(seed=1).split(",") + changed
    (fresh / ".hydra" / "config.yaml").write_text(composed_by_the_cli(run_cli, tmp_path, overrides))
    assert yaml.safe_load((fresh / ".hydra" / "config.yaml").read_text())["trainer"]["optimizer"] == "sgd"

    rows = annotate(collect([str(tmp_path / "runs")]).results).drop_duplicates("run").set_index("run")
    assert len(rows) == 2
    a, b = rows.loc[str(committed)], rows.loc[str(fresh)]
    assert (a["panel"] == b["panel"] and a["method"] == b["method"]) is together, (a["panel"], b["panel"])


def test_a_committed_run_is_recognised_as_completed(run_cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(GRADNORM_RUN, run)
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    proc = run_cli("run", "+experiment=gradnorm_toy", "seed=0", "strategy=ew", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "already completed" in proc.stdout + proc.stderr  # said on the console ...
    after = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # ... and every file of the run is as it was, its log included


def test_a_checkpoint_of_the_code_before_the_schemas_resumes(run_cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    overrides = [o for o in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) if "epochs" not in o]
    proc = run_cli("run", *overrides, "trainer.epochs=1", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0 and "already completed" in proc.stdout + proc.stderr, proc.stderr

    refused = run_cli("run", *overrides, "trainer.epochs=2", "trainer.lr=0.01", f"hydra.run.dir={run}", cwd=tmp_path)
    assert refused.returncode == 2 and "trainer.lr" in refused.stderr  # the stored settings are still checked

    proc = run_cli("run", *overrides, "trainer.epochs=2", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in (run / "mtl-bench.log").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    epochs = {json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()}
    assert epochs >= {1, 2}
