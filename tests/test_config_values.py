"""Out-of-range values and keys that do not exist: one line naming the key, the value, what is
allowed and an example, before anything is trained or written."""
from __future__ import annotations

import pytest
from mtl_bench.config_check import VALUE_RULES, check_new_keys, check_values

MULTIMNIST = ["dataset=multimnist"]


@pytest.mark.parametrize("overrides,message", [
    (["trainer.epochs=0"], "trainer.epochs=0 is out of range: an integer >= 1, e.g. trainer.epochs=20"),
    (["trainer.log_interval=0"], "trainer.log_interval=0 is out of range: an integer >= 1"),
    (["trainer.lr=-0.1"], "trainer.lr=-0.1 is out of range: a number > 0"),
    (["trainer.momentum=1.5"], "trainer.momentum=1.5 is out of range"),
    (["trainer.optimizer=lbfgs"], "trainer.optimizer='lbfgs' is out of range: one of sgd, adam, adamw"),
    (["trainer.scheduler=poly"], "one of none, step, cosine"),
    (["grad.method=fast"], "grad.method='fast' is out of range: one of loop, vmap, auto"),
    (["grad.space=head"], "grad.space='head' is out of range"),
    (["grad.chunk_size=0"], "grad.chunk_size=0 is out of range"),
    ([*MULTIMNIST, "dataset.tasks=[]"], "dataset.tasks=[] must be a non-empty list of task names, e.g. dataset.tasks=[left]"),
    ([*MULTIMNIST, "dataset.tasks=left"], "dataset.tasks='left' must be a non-empty list of task names, e.g. "
                                          "dataset.tasks=[left]"),
    ([*MULTIMNIST, "dataset.label_fraction=2.0"], "dataset.label_fraction=2.0 is out of range: a fraction in (0, 1]"),
    ([*MULTIMNIST, "dataset.label_fraction={left:0.1,rigth:1.0}"], "dataset.label_fraction names unknown task 'rigth'; "
                                                                   "the tasks are left, right"),
    ([*MULTIMNIST, "dataset.label_fraction={left:0,right:1.0}"], "dataset.label_fraction.left=0 is out of range"),
    ([*MULTIMNIST, "dataset.val_size=-1"], "dataset.val_size=-1 is out of range"),
])
def test_out_of_range_values_are_refused(compose, overrides, message):
    cfg = compose(overrides)
    tasks = ["left", "right"] if "dataset=multimnist" in overrides else ["task0", "task1"]
    with pytest.raises(ValueError) as err:
        check_values(cfg, tasks)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("overrides", [[], MULTIMNIST, ["+experiment=sener_koltun_multimnist"],
                                       ["+experiment=zoo_synthetic_t10"], ["dataset=nyuv2"], ["dataset=celeba"],
                                       [*MULTIMNIST, "dataset.label_fraction={left:0.1,right:1.0}"]])
def test_every_shipped_config_is_in_range(compose, overrides):
    check_values(compose(overrides), None)


def test_every_rule_names_an_example_that_passes_it():
    for key, (accepts, _, example) in VALUE_RULES.items():
        assert example.startswith(f"{key}=")
        assert accepts(_parse(example)), key


def _parse(example):
    import yaml

    return yaml.safe_load(example.split("=", 1)[1])


def test_a_key_added_with_plus_must_exist(compose):
    reference = compose([])
    with pytest.raises(ValueError, match=r"trainer.epoch is not a key of trainer: did you mean trainer.epochs\?"):
        check_new_keys(reference, ["+trainer.epoch=1"])
    check_new_keys(reference, ["+experiment=gradnorm_toy", "trainer.epochs=3"])  # a group appended, a plain override


def test_the_cli_refuses_before_writing_a_run(run_cli, tmp_path):
    proc = run_cli("run", "+trainer.epoch=1", "hydra.run.dir=r", cwd=tmp_path)
    assert proc.returncode == 2 and "did you mean trainer.epochs?" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("run", "trainer.log_interval=0", "hydra.run.dir=r2", cwd=tmp_path)
    assert proc.returncode == 2 and "trainer.log_interval=0 is out of range" in proc.stderr
