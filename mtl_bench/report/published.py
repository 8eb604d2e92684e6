"""Published tables (results/published/*.csv) read in the units runs record.

Published CSVs are wide: ``method`` (our strategy name, ``stl`` for single-task), ``label`` (the
paper's name), one ``task/metric`` column per metric in the paper's units (percent for
fractions), optional ``printed_mr`` / ``printed_delta_m`` columns as printed.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .directions import display_scale, higher_is_better


def _package_root() -> Path:
    return Path(__file__).resolve().parents[1]


def published_dir() -> Path:
    """results/published of a clone, else the copy shipped in the package."""
    here = _package_root()
    for candidate in (here.parent / "results" / "published", here / "published"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("results/published not found; reinstall mtl-bench")


def load_published(name: str) -> pd.DataFrame:
    """A published table in long form: method, label, task, metric, value (in the units runs
    record, i.e. percentages of fractions divided by 100), higher_is_better, source."""
    path = Path(name) if str(name).endswith(".csv") else published_dir() / f"{name}.csv"
    if not path.exists():
        raise ValueError(f"no published table {path}; available: "
                         f"{', '.join(p.stem for p in published_dir().glob('*.csv'))}")
    wide = pd.read_csv(path, comment="#")
    rows = []
    for _, row in wide.iterrows():
        for column in wide.columns:
            if "/" not in column or pd.isna(row[column]):
                continue
            task, metric = column.split("/", 1)
            rows.append({"method": row["method"], "label": row.get("label", row["method"]), "task": task,
                         "metric": metric, "value": float(row[column]) / display_scale(metric),
                         "higher_is_better": higher_is_better(metric), "source": path.stem})
    return pd.DataFrame(rows)


def printed_scores(name: str) -> pd.DataFrame:
    """``method``, ``printed_mr``, ``printed_delta_m`` of a published CSV (NaN when not printed)."""
    path = Path(name) if str(name).endswith(".csv") else published_dir() / f"{name}.csv"
    wide = pd.read_csv(path, comment="#")
    for column in ("printed_mr", "printed_delta_m"):
        if column not in wide:
            wide[column] = math.nan
    return wide[["method", "label", "printed_mr", "printed_delta_m"]]
