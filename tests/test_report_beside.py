"""Our rows beside a paper's printed numbers, on a hand-made score table."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from mtl_bench.report.beside import beside_published
from mtl_bench.report.tables import ScoreTable


def score_table(rows, panels=("multimnist",)):
    frame = pd.DataFrame([{"panel": panels[i % len(panels)], "method": m, "left/accuracy": l, "left/accuracy:ci": lci,
                           "right/accuracy": r, "right/accuracy:ci": math.nan, "n": n}
                          for i, (m, l, lci, r, n) in enumerate(rows)])
    return ScoreTable(frame, ["left/accuracy", "right/accuracy"], {"left/accuracy": True, "right/accuracy": True}, "")


def test_rows_in_the_papers_order_with_differences_in_its_units():
    table = score_table([("mgda", 0.9701, 0.0012, 0.9550, 3), ("stl", 0.9700, 0.0010, 0.9600, 3),
                         ("uniform", 0.9571, 0.0025, 0.9427, 2), ("pcgrad", 0.95, 0.001, 0.94, 3)])
    text = beside_published(table, "sener_koltun_multimnist")
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [line.split(" | ")[0] for line in lines] == ["| stl", "| uniform", "| mgda"]  # paper order; pcgrad not printed
    assert lines[0] == "| stl | Single task | 97.00 ± 0.10 | 97.23 | -0.23 | 96.00 | 95.90 | +0.10 | 3 |"
    assert lines[1].startswith("| uniform | Uniform scaling | 95.71 ± 0.25 | 96.46 | -0.75 |")
    assert lines[1].endswith("| 2† |")
    assert "left accuracy % (ours) | published | ours − published" in text


def test_one_panel_and_shared_columns_are_required():
    with pytest.raises(ValueError, match="one panel"):
        beside_published(score_table([("stl", 0.97, 0.0, 0.96, 3), ("uniform", 0.96, 0.0, 0.95, 3)],
                                     panels=("a", "b")), "sener_koltun_multimnist")
    table = score_table([("stl", 0.97, 0.0, 0.96, 3)])
    table.columns = ["left/loss"]
    with pytest.raises(ValueError, match="none of the table's columns"):
        beside_published(table, "sener_koltun_multimnist")


def test_the_cli_option_is_checked_before_reading_runs(tmp_path, capsys):
    from mtl_bench.cli import main

    for bad in (["--beside", "sener_koltun_multimnist"], ["--beside", "published:sener_koltun_multimnist", "--format", "csv"]):
        with pytest.raises(SystemExit) as err:
            main(["table", str(tmp_path), *bad])
        assert err.value.code == 2
        assert "--beside" in capsys.readouterr().err


def test_small_values_keep_the_papers_digits():
    """NYUv2's depth errors print four decimals (0.5261): at two, 0.5474 and 0.5261 would read
    0.55 and 0.53 with a difference of +0.02."""
    frame = pd.DataFrame([{"panel": "nyuv2", "method": "nash", "depth/abs_error": 0.5474, "depth/abs_error:ci": 0.0123,
                           "n": 3}])
    table = ScoreTable(frame, ["depth/abs_error"], {"depth/abs_error": False}, "")
    line = next(line for line in beside_published(table, "nash_mtl_nyuv2").splitlines() if line.startswith("| nash"))
    assert "| 0.5474 ± 0.0123 | 0.5261 | +0.0213 |" in line
