"""`mtl-bench list`: every config of every group, variants included, each with a description."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtl_bench.catalog import GROUPS, listing

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_every_config_file_is_listed_with_a_description():
    text = listing(CONFIGS)
    for group in GROUPS:
        for path in (CONFIGS / group).glob("*.yaml"):
            line = next((line for line in text.splitlines() if line.split()[:1] == [path.stem]), None)
            assert line is not None, f"{group}/{path.stem} is not listed"
            assert len(line.split()) > 1, f"{group}/{path.stem} has no description"


def test_variants_say_what_they_set():
    text = listing(CONFIGS, "strategies")
    for variant, setting in [("mgda_nash", "normalization=none"), ("uw_nash", "preset=nash"),
                             ("dwa_window", "variant=window"), ("imtl_g_nash", "scale_heads=True"),
                             ("uniform", "reduction=mean")]:
        line = next(line for line in text.splitlines() if line.split()[:1] == [variant])
        assert "variant of" in line and setting in line


def test_an_unknown_group_is_refused():
    with pytest.raises(ValueError, match="choose all, strategies"):
        listing(CONFIGS, "optimisers")


def test_run_help_says_what_every_key_of_every_config_means():
    from mtl_bench.catalog import group_meanings, key_comments

    undocumented = []
    for group in ("dataset", "model", "strategy", "trainer", "protocol"):
        meanings = group_meanings(CONFIGS / group, group)
        for path in (CONFIGS / group).glob("*.yaml"):
            undocumented += [f"{group}/{path.stem}: {k}" for k, _, m in key_comments(path, group)
                             if not (m or meanings.get(k)) and not k.endswith(".name")]
    undocumented += [f"config: {k}" for k, _, m in key_comments(CONFIGS / "config.yaml", "")
                     if not m and not k.startswith("hydra.")]
    assert not undocumented, "keys without a comment saying what they mean:\n" + "\n".join(undocumented)


def test_run_help_prints_the_chosen_groups_keys(run_cli, tmp_path):
    proc = run_cli("run", "dataset=multimnist", "strategy=cagrad", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    text = proc.stdout[proc.stdout.index("What each key means"):]
    assert "strategy.gramian_scaling" in text and "official" in text
    assert "dataset.label_fraction" in text and "trainer.momentum" in text and "protocol.selection.metric" in text
    # every key of the chosen trainer, from its schema, though trainer/multimnist.yaml states only a few
    assert "trainer.log_interval" in text and "steps between step-level loss/weight records" in text
    assert re.search(r"trainer.optimizer +sgd ", text) and "_target_" in text


def test_every_schema_key_has_a_meaning_for_run_help():
    from mtl_bench.catalog import schema_keys, schema_of

    for group in ("dataset", "model", "trainer", "protocol"):
        for path in (CONFIGS / group).glob("*.yaml"):
            schema = schema_of(path)
            assert schema is not None, f"{group}/{path.stem} names no schema"
            assert all(meaning for key, _, meaning in schema_keys(schema, group) if not key.endswith(".name"))


def test_run_help_lists_the_keys_of_a_users_own_config(run_cli, tmp_path):
    """A strategy config of one's own (``hydra.searchpath=[file://conf]``) gets its section too:
    the keys its file states, with their comments, and where the file is."""
    (tmp_path / "conf" / "strategy").mkdir(parents=True)
    (tmp_path / "conf" / "strategy" / "softmax_loss.yaml").write_text(
        "_target_: my_mtl.SoftmaxLoss\nname: softmax_loss\ntemperature: 1.0  # softmax temperature over the losses\n")
    proc = run_cli("run", "strategy=softmax_loss", "hydra.searchpath=[file://conf]", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout[proc.stdout.index("What each key means"):]
    assert "strategy=softmax_loss (conf/strategy/softmax_loss.yaml):" in text
    assert re.search(r"strategy.temperature +1.0 +softmax temperature over the losses", text)
