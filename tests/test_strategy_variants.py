"""Strategy variant configs (the settings of another paper's code) compose and reach the run."""
import pytest

from mtl_bench.train import run_experiment

SMALL = ["dataset.num_samples=200", "dataset.num_val=50", "dataset.num_test=50", "trainer.batch_size=50",
         "trainer.epochs=1"]


@pytest.mark.parametrize("variant, strategy, space, hparams", [
    ("mgda_nash", "mgda", "params", {"normalization": "none", "weights_sum": "n_tasks"}),
    ("imtl_g_nash", "imtl_g", "params", {}),
    ("uw_nash", "uw", None, {"preset": "nash"}),
    ("dwa_window", "dwa", None, {"variant": "window"}),
])
def test_variant_sets_its_options_and_space(compose, tmp_path, variant, strategy, space, hparams):
    cfg = compose([f"strategy={variant}", *SMALL])
    assert cfg.strategy.name == strategy
    for key, value in hparams.items():
        assert cfg.strategy[key] == value
    summary = run_experiment(cfg, tmp_path)
    assert summary["identity"]["strategy"] == strategy and summary["identity"]["grad_space"] == space


def test_command_line_space_beats_the_variant(compose, tmp_path):
    summary = run_experiment(compose(["strategy=mgda_nash", "grad.space=representation", *SMALL]), tmp_path)
    assert summary["identity"]["grad_space"] == "representation"
