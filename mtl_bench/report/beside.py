"""Our rows beside a paper's printed numbers (``mtl-bench table DIR --beside published:NAME``).

For every method that both our table and the published CSV (results/published/NAME.csv) have, in
the paper's row order: each metric column as we measured it (mean ± 95% CI over seeds), as the
paper printed it, and the difference ours − published, in the paper's units.
"""
from __future__ import annotations

import math

import pandas as pd

from .directions import display_scale, label
from .published import load_published, printed_scores
from .tables import ScoreTable, _digits, _seeds_cell


def beside_published(table: ScoreTable, name: str) -> str:
    """The Markdown comparison of ``table`` (one panel) with published table ``name``."""
    published = load_published(name)
    order = printed_scores(name)
    panels = table.frame["panel"].unique()
    if len(panels) != 1:
        raise ValueError(f"--beside compares one panel with the paper; this table has {len(panels)}: "
                         f"{', '.join(map(str, panels))} (select the runs of one setting)")
    ours = table.frame.set_index("method")
    columns = [c for c in table.columns
               if ((published["task"] + "/" + published["metric"]) == c).any()]
    if not columns:
        raise ValueError(f"published:{name} has none of the table's columns ({', '.join(table.columns)})")
    header = ["method", "paper"]
    for column in columns:
        task, metric = column.split("/", 1)
        header += [f"{task} {label(metric)} (ours)", "published", "ours − published"]
    header.append("seeds")
    lines = []
    for method, paper in zip(order["method"], order["label"]):
        if method not in ours.index:
            continue
        row = ours.loc[method]
        cells = [method, str(paper)]
        for column in columns:
            task, metric = column.split("/", 1)
            scale = display_scale(metric)
            printed = published[(published["method"] == method) & (published["task"] == task)
                                & (published["metric"] == metric)]["value"]
            mine, ci = row[column], row[f"{column}:ci"]
            paper_value = float(printed.iloc[0]) if len(printed) else math.nan
            d = _digits(mine * scale if math.isnan(paper_value) else paper_value * scale)  # as the main table: 0.5261
            cells.append("–" if pd.isna(mine) else f"{mine * scale:.{d}f}" + ("" if pd.isna(ci) else f" ± {ci * scale:.{d}f}"))
            cells.append("–" if math.isnan(paper_value) else f"{paper_value * scale:.{d}f}")
            diff = (mine - paper_value) * scale
            cells.append("–" if pd.isna(diff) else f"{diff:+.{d}f}")
        cells.append(_seeds_cell(row["n"]))
        lines.append(cells)
    if not lines:
        raise ValueError(f"no method of the table is in published:{name} ({', '.join(order['method'])})")
    out = [f"**Beside the published numbers ({name})**", "",
           "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    out += ["", "ours: mean ± 95% CI over seeds of the table above; published: as printed in the paper; "
                "ours − published in the paper's units. Rows in the paper's order, where both have the method."]
    return "\n".join(out) + "\n"
