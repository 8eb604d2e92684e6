"""A user's own strategy, model and data (examples/my_project) through the CLI and the Python API."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_project"
SEARCH = "hydra.searchpath=[file://conf]"


@pytest.fixture()
def project(tmp_path) -> Path:
    """A copy of the example project with its data.npz written."""
    root = tmp_path / "my_project"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "data.npz"))
    subprocess.run([sys.executable, "make_data.py"], cwd=root, check=True)
    return root


def project_env(root: Path) -> dict:
    repo = str(Path(__file__).resolve().parents[1])
    return {"PYTHONPATH": os.pathsep.join([str(root), repo, os.environ.get("PYTHONPATH", "")])}


def test_user_strategies_model_and_data_run_in_a_sweep_beside_built_ins_and_reach_the_table(project):
    env = project_env(project)
    sweep = cli("run", "-m", "strategy=ew,mgda,softmax_loss,unit_grad", "dataset=toy_npz", SEARCH, "seed=0,1",
                "trainer.epochs=2", "hydra.sweep.dir=sweeps/mtl", cwd=project, env=env)
    assert sweep.returncode == 0, sweep.stderr
    stl = cli("run", "-m", "strategy=ew", "dataset.tasks=[digit],[size]", "dataset=toy_npz", SEARCH, "seed=0,1",
              "trainer.epochs=2", "hydra.sweep.dir=sweeps/stl", cwd=project, env=env)
    assert stl.returncode == 0, stl.stderr
    table = cli("table", "sweeps", "--format", "csv", cwd=project, env=env)
    assert table.returncode == 0, table.stderr
    rows = {line.split(",")[1] for line in table.stdout.splitlines()[1:] if line.count(",") > 2}
    assert {"ew", "mgda", "softmax_loss", "unit_grad", "stl"} <= rows, table.stdout
    import json

    run = next((project / "sweeps" / "mtl").glob("*strategy=unit_grad*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["identity"]["strategy"] == "unit_grad" and summary["identity"]["grad_space"] == "representation"
    assert summary["identity"]["model"] == "small_mlp" and summary["identity"]["dataset"] == "toy_npz"


def test_python_api_runs_resumes_and_loads_typed_runs(project, monkeypatch):
    import mtl_bench

    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))
    args = ("strategy=softmax_loss", "strategy.temperature=0.5", "dataset=toy_npz", SEARCH)
    first = mtl_bench.run(*args, "trainer.epochs=1", run_dir="runs/api")
    assert first["status"] == "completed" and first["epochs_completed"] == 1
    resumed = mtl_bench.run(*args, "trainer.epochs=2", run_dir="runs/api")
    assert resumed["status"] == "completed" and resumed["epochs_completed"] == 2
    frame = mtl_bench.load_runs("runs")
    assert frame["cfg.trainer.epochs"].dtype.name == "Int64" and frame["cfg.trainer.epochs"].iloc[0] == 2
    assert frame["cfg.strategy.temperature"].dtype.kind == "f" and frame["cfg.strategy.temperature"].iloc[0] == 0.5
    assert frame["cfg.trainer.deterministic"].dtype.name == "boolean"


@pytest.mark.parametrize("override,message", [
    ("strategy._target_=my_mtl.Nope", "module 'my_mtl' has no 'Nope'"),
    ("strategy._target_=no_such_module.Mine", "cannot import module 'no_such_module'"),
    ("strategy._target_=my_mtl.build_small_mlp", "is not a strategy class"),
    ("model._target_=my_mtl.load_npz", "cannot be called with"),
    ("model._target_=my_mtl.SoftmaxLossWeighting", "cannot be called with"),
    # a dataset key the loader does not take: one line naming the loader and the keys, as for models
    ("+dataset.nn=3", r"dataset._target_=my_mtl.load_npz cannot be called with \(batch_size, seed, path, "
                      r"val_fraction, nn\)"),
    ("dataset._target_=my_mtl.build_small_mlp", "dataset._target_=my_mtl.build_small_mlp cannot be called with"),
    ("model.hiden=3", r"model.hiden is not a key of model: did you mean model.hidden\? its keys are"),
    # a hyper-parameter the user's config does not list: add it with +, not "did you mean" itself
    ("strategy.loss_weighting=uw", r"is a hyper-parameter of strategy unit_grad that its config does not list: "
                                   r"give it with \+strategy.loss_weighting="),
])
def test_a_bad_plug_in_is_one_clear_error(project, monkeypatch, override, message):
    import mtl_bench
    from mtl_bench.api import RunError

    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))
    with pytest.raises(RunError, match=message):
        mtl_bench.run("strategy=unit_grad", "dataset=toy_npz", SEARCH, override, "trainer.epochs=1", run_dir="runs/bad")


def test_a_strategy_class_the_loop_cannot_call_is_refused_before_the_first_step():
    """The contract of a user's class, checked when it is looked up: n_tasks first (else the task
    count silently fills the first hyper-parameter), its level's method defined and callable as the
    loop calls it."""
    import torch

    from mtl_bench.strategies import GradientAggregator, GradientWeighting, LossWeighting, build_strategy

    class NoTasks(LossWeighting):
        def __init__(self, temperature: float = 2.0):
            super().__init__(1)

        def weights(self, losses, gramian=None):
            return torch.ones_like(losses)

    class NoWeights(GradientWeighting):
        pass

    class LossesOnly(GradientWeighting):
        def weights(self, losses):
            return torch.ones_like(losses)

    class OwnCombine(LossWeighting):  # combine instead of weights: fine
        def combine(self, losses):
            return losses.sum(), torch.ones_like(losses)

    class Aggregator(GradientAggregator):
        def aggregate(self, jacobian, losses):
            return jacobian.sum(0), torch.ones_like(losses)

    cases = [(NoTasks, "its constructor must take the number of tasks first, def __init__(self, n_tasks, ...); "
                       "it takes (temperature)"),
             (NoWeights, "NoWeights does not define weights(): a GradientWeighting must"),
             (LossesOnly, "LossesOnly.weights(self, losses) cannot be called as the training loop calls it: "
                          "weights(losses=, gramian=)"),
             (Aggregator, "aggregate(x, x, representation=)")]
    for cls, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            build_strategy(cls, 2)
    assert isinstance(build_strategy(OwnCombine, 2), OwnCombine)


def test_typed_config_columns_leave_text_and_lists_alone():
    import pandas as pd

    from mtl_bench.api import typed_config_columns

    frame = pd.DataFrame({"cfg.a": ["1", "2", None], "cfg.b": ["0.5", "1e-3", "2"], "cfg.c": ["sgd", "adam", "sgd"],
                          "cfg.d": ["[left]", "[right]", None], "cfg.e": ["True", "False", "True"], "value": [1, 2, 3]})
    typed = typed_config_columns(frame)
    assert typed["cfg.a"].dtype.name == "Int64" and typed["cfg.a"].isna().iloc[2]
    assert typed["cfg.b"].tolist() == [0.5, 0.001, 2.0]
    assert typed["cfg.c"].tolist() == ["sgd", "adam", "sgd"] and typed["cfg.d"].iloc[0] == "[left]"
    assert typed["cfg.e"].tolist() == [True, False, True]


def test_runs_made_before_a_config_key_existed_stay_in_their_method_and_panel():
    """Runs of one strategy, some made before its config gained ``_target_`` (or any new option),
    are one method in one panel; a key that really varies still splits."""
    import pandas as pd

    from mtl_bench.report.groups import annotate

    runs = pd.DataFrame({
        "run": ["old", "new", "other"], "dataset": "d", "n_tasks": 2, "strategy": ["ew", "ew", "ew"],
        "cfg.strategy._target_": [None, "mtl_bench.strategies.EqualWeighting", "mtl_bench.strategies.EqualWeighting"],
        "cfg.trainer.lr": [0.01, 0.01, 0.01], "cfg.dataset.label_fraction": [None, "0.1", "0.5"]})
    out = annotate(runs).set_index("run")
    assert out.loc["old", "method"] == out.loc["new", "method"] == "ew"
    assert out.loc["new", "panel"] != out.loc["other", "panel"]  # label_fraction 0.1 vs 0.5


def test_tune_preflight_finds_a_users_strategy_through_hydra_searchpath(project, monkeypatch):
    from mtl_bench.tune.study import Tuner

    monkeypatch.chdir(project)
    space = project / "space.yaml"
    space.write_text("metric: mean/accuracy\nmethods:\n  softmax_loss:\n    strategy.temperature: {low: 0.1, high: 2.0}\n")
    Tuner(project / "study", ["softmax_loss"], 1, str(space), overrides=["dataset=toy_npz", SEARCH]).preflight()
    missing = project / "missing.yaml"
    missing.write_text("metric: mean/accuracy\nmethods:\n  softmax_loss:\n    strategy.nope: {low: 0.1, high: 2.0}\n")
    with pytest.raises(ValueError, match="strategy.nope is not a config key of strategy=softmax_loss"):
        Tuner(project / "study2", ["softmax_loss"], 1, str(missing), overrides=["dataset=toy_npz", SEARCH]).preflight()


def test_a_plug_in_whose_own_import_fails_is_told_apart_from_a_missing_module(tmp_path, monkeypatch):
    from mtl_bench.plugins import locate

    (tmp_path / "brokenmod.py").write_text("import not_installed_pkg_xyz\n\nclass Mine:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="module 'brokenmod' was found but its own import of "
                                         "'not_installed_pkg_xyz' failed"):
        locate("brokenmod.Mine", "strategy._target_")
    with pytest.raises(ValueError, match="cannot import module 'absent_mod_xyz'.*on PYTHONPATH"):
        locate("absent_mod_xyz.Mine", "strategy._target_")
    # a package of one's own whose __init__ imports a submodule it lacks: found, its import failed
    (tmp_path / "mypkg_xyz").mkdir()
    (tmp_path / "mypkg_xyz" / "__init__.py").write_text("import mypkg_xyz.helpers\n")
    with pytest.raises(ValueError, match="module 'mypkg_xyz' was found but its own import of 'mypkg_xyz.helpers'"):
        locate("mypkg_xyz.Mine", "strategy._target_")
