"""Out-of-range values, values of the wrong type and keys that do not exist: one line naming the
key, the value, what is allowed and an example, before anything is trained or written
(mtl_bench/schemas)."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from mtl_bench.schemas import SCHEMAS, TrainerConfig
from mtl_bench.schemas.base import example_of
from mtl_bench.schemas.check import explain, validate

MULTIMNIST = ["dataset=multimnist"]


def refusal(compose, overrides) -> str:
    """The message a run with ``overrides`` is refused with (composition or validation)."""
    tasks = ["left", "right"] if "dataset=multimnist" in overrides else ["task0", "task1"]
    try:
        validate(compose(overrides), tasks)
    except Exception as err:  # noqa: BLE001 - Hydra's composition errors and ours
        return explain(err) or str(err)
    raise AssertionError(f"{overrides} was accepted")


@pytest.mark.parametrize("overrides,message", [
    (["trainer.epochs=0"], "trainer.epochs=0 is out of range: an integer >= 1, e.g. trainer.epochs=20"),
    (["trainer.epochs=ten"], "trainer.epochs=ten has the wrong type: an integer >= 1, e.g. trainer.epochs=20"),
    (["+trainer.epoch=1"], "trainer.epoch is not a key of trainer: did you mean trainer.epochs?"),
    (["trainer.epocs=3"], "trainer.epocs is not a key of trainer: did you mean trainer.epochs?"),
    (["trainer.log_interval=0"], "trainer.log_interval=0 is out of range: an integer >= 1"),
    (["trainer.lr=-0.1"], "trainer.lr=-0.1 is out of range: a number > 0"),
    (["trainer.lr=fast"], "trainer.lr=fast has the wrong type: a number > 0, e.g. trainer.lr=0.01"),
    (["trainer.momentum=1.5"], "trainer.momentum=1.5 is out of range"),
    (["trainer.optimizer=lbfgs"], "trainer.optimizer='lbfgs' is out of range: sgd, adam, adamw or a node"),
    (["trainer.optimizer={lr:0.1}"], "trainer.optimizer={'lr': 0.1} is out of range"),
    (["trainer.scheduler=poly"], "trainer.scheduler='poly' is out of range: none, step, cosine or a node"),
    (["trainer.device=tpu"], "trainer.device='tpu' is out of range: auto, cpu, cuda or cuda:N"),
    (["trainer.checkpoint=maybe"], "trainer.checkpoint=maybe has the wrong type: true or false"),
    (["grad.method=fast"], "grad.method='fast' is out of range: one of loop, vmap, auto"),
    (["grad.space=head"], "grad.space='head' is out of range"),
    (["grad.chunk_size=0"], "grad.chunk_size=0 is out of range"),
    (["+grad.chunk=4"], "grad.chunk is not a key of grad: did you mean grad.chunk_size?"),
    (["diagnostics.every=-1"], "diagnostics.every=-1 is out of range"),
    (["diagnostics.every=often"], "diagnostics.every=often has the wrong type"),
    (["+diagnostics.evry=5"], "diagnostics.evry is not a key of diagnostics: did you mean diagnostics.every?"),
    (["seed=abc"], "seed='abc' has the wrong type: an integer, e.g. seed=0"),
    (["protocol.selection.rule=first"], "protocol.selection.rule='first' is out of range: one of last, best"),
    (["protocol.selection.k=0"], "protocol.selection.k=0 is out of range"),
    (["model.hidden=0"], "model.hidden=0 is out of range: an integer >= 1"),
    (["model.activation=gelu"], "model.activation='gelu' is out of range: one of relu, tanh"),
    (["+model.width=3"], "model.width is not a key of model"),
    (["dataset.num_tasks=0"], "dataset.num_tasks=0 is out of range"),
    (["dataset.num_val=20000"], "dataset.num_val=20000 is out of range: fewer than dataset.num_samples=10000 (the rest "
                                "trains), e.g. dataset.num_val=1000"),
    (["dataset.num_samples=200"], "dataset.num_val=1000 is out of range: fewer than dataset.num_samples=200 (the rest "
                                  "trains), e.g. dataset.num_val=20"),
    (["dataset.tasks=[]"], "dataset.tasks=[] is out of range: a non-empty list of task names"),
    ([*MULTIMNIST, "dataset.tasks=[]"], "dataset.tasks=[] is out of range: a non-empty list of task names (a subset "
                                        "for single-task baselines), or null for every task, e.g. dataset.tasks=[left]"),
    ([*MULTIMNIST, "dataset.tasks=left"], "dataset.tasks=left has the wrong type: a non-empty list of task names "
                                          "(a subset for single-task baselines), or null for every task, "
                                          "e.g. dataset.tasks=[left]"),
    ([*MULTIMNIST, "dataset.label_fraction=2.0"], "dataset.label_fraction=2.0 is out of range: a fraction in (0, 1]"),
    ([*MULTIMNIST, "dataset.label_fraction={left:0.1,rigth:1.0}"], "dataset.label_fraction names unknown task 'rigth'; "
                                                                   "the tasks are left, right"),
    ([*MULTIMNIST, "dataset.label_fraction={left:0,right:1.0}"], "dataset.label_fraction.left=0 is out of range"),
    ([*MULTIMNIST, "dataset.val_size=-1"], "dataset.val_size=-1 is out of range"),
    ([*MULTIMNIST, "model.dropout=none"], "model.dropout='none' is out of range: one of standard, faithful"),
    (["dataset=nyuv2", "+dataset.augmentation.flp=false"], "dataset.augmentation.flp is not a key of "
                                                            "dataset.augmentation: did you mean dataset.augmentation.flip?"),
    (["dataset=celeba", "dataset.image_size=0"], "dataset.image_size=0 is out of range"),
    (["dataset=celeba", "dataset.preprocess=caffe"], "dataset.preprocess='caffe' is out of range: one of plain, sener_koltun"),
    (["dataset=arrays", "dataset.val_fraction=1.5"], "dataset.val_fraction=1.5 is out of range"),
    (["strategy=mgda_nash", "strategy.space=weights"], "grad.space='weights' is out of range"),
    (["strategy=gradnorm", "strategy.alpha=high"], "strategy.alpha='high' has the wrong type: a number like the "
                                                     "default, e.g. strategy.alpha=1.5"),
    (["strategy=dwa", "+strategy.tmp=3"], "strategy.tmp is not a hyper-parameter of strategy dwa: did you mean "
                                          "strategy.temp? its hyper-parameters are temp=2.0"),
    (["strategy=dwa", "strategy.tmp=3"], "strategy.tmp is not in the config of strategy dwa: did you mean "
                                         "strategy.temp? its hyper-parameters are temp=2.0"),
])
def test_bad_values_are_refused_in_one_line(compose, overrides, message):
    text = refusal(compose, overrides)
    assert message in text and "\n" not in text, text


@pytest.mark.parametrize("overrides", [[], MULTIMNIST, ["+experiment=sener_koltun_multimnist"],
                                       ["+experiment=zoo_synthetic_t10"], ["+experiment=gradnorm_toy"],
                                       ["+experiment=nash_mtl_nyuv2"], ["+experiment=sener_koltun_celeba"],
                                       ["dataset=nyuv2"], ["dataset=nyuv2", "trainer=nyuv2_libmtl"],
                                       ["dataset=celeba"], ["dataset=arrays"], ["protocol=delta_m"],
                                       [*MULTIMNIST, "dataset.label_fraction={left:0.1,right:1.0}"],
                                       ["trainer.optimizer={_target_:torch.optim.RMSprop,alpha:0.9}",
                                        "trainer.scheduler={_target_:torch.optim.lr_scheduler.ExponentialLR,gamma:0.9}"]])
def test_every_shipped_config_is_valid_and_typed(compose, overrides):
    typed = validate(compose(overrides), None)
    assert set(typed) == {"trainer", "grad", "diagnostics", "protocol", "dataset", "model"}
    assert isinstance(typed["trainer"], TrainerConfig)


def test_every_schema_key_says_what_it_means_and_gives_an_example_that_passes():
    for name, schema in SCHEMAS.items():
        for field in dataclasses.fields(schema):
            if dataclasses.is_dataclass(field.default_factory) or field.name == "name":
                continue
            assert field.metadata.get("help") and field.metadata.get("allowed"), f"{name}.{field.name}"
            key = f"{schema.GROUP}.{field.name}"
            example = example_of(field, key, "x").split(" or ")[0]
            assert example.startswith(f"{key}="), example
            schema(**{field.name: yaml.safe_load(example.split("=", 1)[1])})  # passes the field's check


def test_the_trainer_receives_the_typed_node(compose):
    from mtl_bench.schemas.check import typed_node

    cfg = compose(["+experiment=sener_koltun_multimnist"])
    config = typed_node(cfg.trainer, TrainerConfig)
    assert isinstance(config, TrainerConfig)
    assert (config.optimizer, config.lr, config.momentum, config.scheduler, config.step_size) == ("sgd", 0.01, 0.9,
                                                                                                  "step", 30)
    with pytest.raises(ValueError, match="trainer.epoch is not a key of trainer"):  # an untyped node too
        typed_node({"epoch": 3}, TrainerConfig)


def test_the_cli_refuses_before_writing_a_run(run_cli, tmp_path):
    for override, message in [("+trainer.epoch=1", "did you mean trainer.epochs?"),
                               ("trainer.log_interval=0", "trainer.log_interval=0 is out of range"),
                               ("trainer.epochs=ten", "trainer.epochs=ten has the wrong type: an integer >= 1"),
                               # found when the run builds its optimiser: still one line, no folder
                               ("trainer.optimizer={_target_:torch.optim.SGD,foo:1}",
                                "trainer.optimizer._target_=torch.optim.SGD cannot be called with (parameter groups, "
                                "lr, foo): got an unexpected keyword argument 'foo'"),
                               ("trainer.scheduler={_target_:torch.optim.lr_scheduler.StepLR}",
                                "trainer.scheduler._target_=torch.optim.lr_scheduler.StepLR cannot be called with "
                                "(optimizer): missing a required argument: 'step_size'")]:
        proc = run_cli("run", override, "hydra.run.dir=r", cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not (tmp_path / "r").exists()


def test_a_sweep_refused_for_one_jobs_value_leaves_no_plan_and_restores_the_last(run_cli, tmp_path):
    """Every job's settings are checked before the first starts: a bad value in one refuses the
    sweep, and the folder is as it was (no plan; the plan of the sweep before it, unchanged)."""
    proc = run_cli("run", "-m", "trainer.epochs=1,ten", "hydra.sweep.dir=new", cwd=tmp_path)
    assert proc.returncode == 2 and "trainer.epochs=ten has the wrong type" in proc.stderr
    assert not (tmp_path / "new").exists()
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    plan = "hydra: {}  # the plan of an earlier sweep\n"
    (sweep / "multirun.yaml").write_text(plan)
    proc = run_cli("run", "-m", "strategy=ew,mgdaa", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert proc.returncode == 2 and "Could not find 'strategy/mgdaa'" in proc.stderr
    assert sorted(p.name for p in sweep.iterdir()) == ["multirun.yaml"]
    assert (sweep / "multirun.yaml").read_text() == plan


@pytest.mark.parametrize("body, message", [
    ("epochs: ten\n", "trainer.epochs=ten (in 'trainer/mine') has the wrong type: an integer >= 1"),
    ("epoch: 3\n", "trainer.epoch is not a key of trainer: did you mean trainer.epochs?"),
    ("epochs: 0\n", "trainer.epochs=0 is out of range: an integer >= 1"),
])
def test_a_bad_value_in_a_users_config_file_is_one_line(compose, tmp_path, body, message):
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "mine.yaml").write_text("defaults:\n  - default\n  - _self_\n" + body)
    text = refusal(compose, ["trainer=mine", f"hydra.searchpath=[file://{tmp_path}]"])
    assert message in text and "\n" not in text, text
