"""`mtl-bench tune`: equal Optuna budgets per method on val, resumable after a kill (issue 13)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, cli

optuna = pytest.importorskip("optuna")

from mtl_bench.tune.space import load_space, method_params, override  # noqa: E402
from mtl_bench.tune.study import Tuner  # noqa: E402

SMALL = ["trainer.epochs=12", "dataset.num_samples=1500", "dataset.num_val=200", "dataset.num_test=100",
         "trainer.log_interval=5"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _trials(directory: Path) -> dict[str, list]:
    storage = f"sqlite:///{directory / 'optuna.db'}"
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).get_trials()
            for s in optuna.get_all_study_summaries(storage)}


def test_presets_load_and_give_each_method_its_own_parameters():
    space = load_space("synthetic")
    assert space["metric"] == "mean/normalized_loss"
    assert list(method_params(space, "ew")) == ["trainer.lr"]
    assert list(method_params(space, "gradnorm")) == ["trainer.lr", "strategy.alpha"]
    assert space["params"]["trainer.lr"]["log"] is True
    assert load_space("multimnist")["metric"] == "mean/accuracy"
    assert override("trainer.lr", 0.1 + 0.2) == "trainer.lr=0.30000000000000004"   # exact, not rounded


def test_bad_settings_are_one_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  trainer.lr: {low: 0.1, high: 0.01}\n")
    with pytest.raises(ValueError, match="needs low < high"):
        load_space(str(bad))
    with pytest.raises(ValueError, match="no search space preset"):
        Tuner(tmp_path, ["ew"], 1, "nope")
    with pytest.raises(ValueError, match="tune sets strategy"):
        Tuner(tmp_path, ["ew"], 1, "synthetic", overrides=["strategy=mgda"])
    missing = tmp_path / "missing.yaml"
    missing.write_text("metric: mean/loss\nmethods:\n  ew:\n    strategy.alpha: {low: 0.0, high: 1.0}\n")
    with pytest.raises(ValueError, match="strategy.alpha is not a config key of strategy=ew"):
        Tuner(tmp_path / "s", ["ew"], 1, str(missing)).run()
    result = cli("tune", "--dir", str(tmp_path / "s2"), "--methods", "ew", "--trials", "1", "trainer.lrr=0.1",
                 cwd=tmp_path)
    assert result.returncode == 2 and "trainer.lrr" in result.stderr and "Traceback" not in result.stderr
    assert "did you mean trainer.lr?" in result.stderr   # the line a run gives
    with pytest.raises(ValueError, match="trainer.epochs=0 is out of range"):   # a value a run would refuse
        Tuner(tmp_path / "s4", ["ew"], 1, "synthetic", overrides=["trainer.epochs=0"]).run()
    with pytest.raises(ValueError, match="--metric left/accuracy: the runs have no task 'left'; their tasks: task0"):
        Tuner(tmp_path / "s5", ["ew"], 1, "synthetic", metric="left/accuracy").run()
    with pytest.raises(ValueError, match="protocol.selection.split=test: tune scores each trial on val"):
        Tuner(tmp_path / "s6", ["ew"], 1, "synthetic", overrides=[
            "protocol.selection.rule=best", "protocol.selection.split=test",
            "protocol.selection.metric=mean/normalized_loss"]).run()
    assert not list(tmp_path.glob("s[456]/*/trial_*"))
    # a search space with metric: null tunes the runs' own selection metric (docs/tuning.md)
    runs_metric = tmp_path / "runs_metric.yaml"
    runs_metric.write_text("metric: null\nparams:\n  trainer.lr: {low: 0.001, high: 0.1, log: true}\n")
    tuner = Tuner(tmp_path / "s7", ["ew"], 1, str(runs_metric), overrides=[
        "protocol.selection.rule=best", "protocol.selection.metric=mean/mse"])
    tuner.preflight()
    assert tuner.metric == "mean/mse" and tuner.higher is False
    with pytest.raises(ValueError, match="--metric None: give the val metric"):  # and the runs name none
        Tuner(tmp_path / "s8", ["ew"], 1, str(runs_metric)).preflight()
    # a metric of one's own: its direction is asked for, and --direction gives it
    with pytest.raises(ValueError, match="give --direction maximize or --direction minimize"):
        Tuner(tmp_path / "s9", ["ew"], 1, "synthetic", metric="mean/score")
    assert Tuner(tmp_path / "s9", ["ew"], 1, "synthetic", metric="mean/score", direction="maximize").higher is True
    assert Tuner(tmp_path / "s9", ["ew"], 1, "synthetic", metric="mean/accuracy", direction="minimize").higher is False
    with pytest.raises(ValueError, match="MNIST not found"):   # missing data: before any trial, not in each
        Tuner(tmp_path / "s3", ["ew"], 1, "synthetic", overrides=["dataset=multimnist",
                                                                  f"dataset.root={tmp_path / 'nowhere'}"]).run()
    assert not list((tmp_path / "s3").glob("*/trial_*"))


def test_a_killed_study_resumes_to_the_same_budget_without_redoing_a_finished_trial(tmp_path):
    study = tmp_path / "study"
    args = [sys.executable, "-m", "mtl_bench", "tune", "--dir", str(study), "--methods", "ew,gradnorm",
            "--trials", "2", *SMALL]
    first = subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    killed_in = None
    while time.time() < deadline and first.poll() is None:   # wait for a finished trial and a running one
        state = json.loads((study / "tune.json").read_text()) if (study / "tune.json").exists() else {}
        if state and sum(m["complete"] for m in state["methods"].values()) >= 1:
            running = [p for p in study.glob("*/trial_*/seed_0/checkpoint.pt")
                       if not (p.parent / "summary.json").exists()
                       or json.loads((p.parent / "summary.json").read_text())["status"] != "completed"]
            if running:
                killed_in = running[0].parent
                break
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()[0][-3000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(1.0)  # the orphaned trial run gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and stops
    before = {m: [t for t in ts if t.state == optuna.trial.TrialState.COMPLETE] for m, ts in _trials(study).items()}
    assert sum(map(len, before.values())) >= 1
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in study.glob("*/trial_*/seed_0/metrics.jsonl")
              if json.loads((p.parent / "summary.json").read_text())["status"] == "completed"}

    second = subprocess.run(args, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    after = _trials(study)
    assert set(after) == {"ew", "gradnorm"}
    for method, trials in after.items():  # the same budget for both, all finished, none lost
        assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2, (method, trials)
        assert sorted(p.name for p in (study / method).glob("trial_*")) == ["trial_000", "trial_001"]
        drawn = [tuple(sorted(t.params.items())) for t in trials]
        assert len(set(drawn)) == len(drawn)   # a resumed sampler draws new values, not its first ones again
        for old in before.get(method, []):
            kept = after[method][old.number]
            assert kept.value == old.value and kept.params == old.params
    for path, (mtime, data) in stamps.items():  # a finished trial's runs were not trained again
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == data
    assert killed_in is not None
    assert json.loads((killed_in / "summary.json").read_text())["status"] == "completed"
    assert "resumed in" in second.stdout
    assert "resuming" in (killed_in / "mtl-bench.log").read_text()   # from its checkpoint, not from scratch

    table = cli("table", str(study), "--tune", cwd=tmp_path)
    assert table.returncode == 0, table.stderr[-3000:]
    header = next(line for line in table.stdout.splitlines() if line.startswith("| method"))
    assert header.startswith("| method | trainer.lr | strategy.alpha | trials |")
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in table.stdout.splitlines()
            if line.startswith(("| ew |", "| gradnorm |"))}
    for method, trials in after.items():
        best = min(trials, key=lambda t: t.value)   # normalized_loss: lower is better
        assert rows[method][1] == f"{best.params['trainer.lr']:.4g}"
        assert rows[method][3] == "2"
        if method == "gradnorm":
            assert rows[method][2] == f"{best.params['strategy.alpha']:.4g}"
    assert rows["ew"][2] == "–"
    assert "trials: finished trials" in table.stdout and "test never used" in table.stdout


def test_parallel_trials_score_the_mean_over_seeds_of_the_val_metric(tmp_path):
    study = tmp_path / "study"
    result = cli("tune", "--dir", str(study), "--methods", "ew,dwa", "--trials", "1", "--seeds", "0,1",
                 "--n-jobs", "2", "trainer.epochs=2", "dataset.num_samples=300", "dataset.num_val=100",
                 "dataset.num_test=100", cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _trials(study)
    assert {m: len(t) for m, t in trials.items()} == {"ew": 1, "dwa": 1}
    assert set(trials["dwa"][0].params) == {"trainer.lr", "strategy.temp"}
    for method, (trial,) in trials.items():
        per_seed = []
        for seed in (0, 1):   # protocol last: the last epoch's val normalized_loss, mean over tasks
            run = study / method / "trial_000" / f"seed_{seed}"
            config = (run / ".hydra" / "config.yaml").read_text()
            assert f"lr: {trial.params['trainer.lr']}" in config
            records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            last = [r["value"] for r in records if r["split"] == "val" and r["metric"] == "normalized_loss"
                    and r["epoch"] == max(x["epoch"] for x in records)]
            assert len(last) == 2
            per_seed.append(sum(last) / 2)
        assert trial.value == pytest.approx(sum(per_seed) / 2, rel=1e-9)
    state = json.loads((study / "tune.json").read_text())
    assert state["direction"] == "minimize" and state["methods"]["ew"]["trials"] == 1
    again = cli("tune", "--dir", str(study), "--methods", "ew,dwa", "--trials", "1", "--seeds", "0",
                cwd=tmp_path)
    assert again.returncode == 2 and "seeds=[0, 1]" in again.stderr   # other settings: refused, nothing run


def test_trials_spent_are_counted_per_study_and_method(tmp_path):
    from mtl_bench.tune.study import study_of_run, trials_spent

    for study, methods in (("mtl", {"ew": 3, "gradnorm": 3}), ("stl_task0", {"ew": 2})):
        (tmp_path / study).mkdir()
        (tmp_path / study / "tune.json").write_text(json.dumps({"methods": {m: {"trials": n} for m, n in methods.items()}}))
    spent = trials_spent([tmp_path])
    root = tmp_path.resolve()
    assert spent == {(root / "mtl", "ew"): 3, (root / "mtl", "gradnorm"): 3, (root / "stl_task0", "ew"): 2}
    assert study_of_run(tmp_path / "stl_task0" / "ew" / "trial_001" / "seed_0") == (root / "stl_task0", "ew")
    assert trials_spent([tmp_path / "mtl"]) == {(root / "mtl", "ew"): 3, (root / "mtl", "gradnorm"): 3}


def test_sigterm_interrupts_the_running_trial_which_the_next_start_resumes(tmp_path):
    study = tmp_path / "study"
    args = [sys.executable, "-m", "mtl_bench", "tune", "--dir", str(study), "--methods", "ew", "--trials", "1",
            *SMALL[:-1], "trainer.epochs=40"]
    first = subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = study / "ew" / "trial_000" / "seed_0" / "checkpoint.pt"
    deadline = time.time() + 180
    while time.time() < deadline and first.poll() is None and not checkpoint.exists():
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 143, err[-3000:]
    assert "stopped by SIGTERM" in err and "resume with the same command" in err
    run = checkpoint.parent
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    assert [t.state for t in _trials(study)["ew"]] == [optuna.trial.TrialState.RUNNING]

    second = subprocess.run(args, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    (trial,) = _trials(study)["ew"]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.number == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert "resuming" in (run / "mtl-bench.log").read_text()
