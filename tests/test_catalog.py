"""`mtl-bench list`: every config of every group, variants included, each with a description."""
from __future__ import annotations

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
