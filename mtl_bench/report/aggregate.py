"""Across benchmarks: rliable-style aggregates of Delta_m% (Agarwal et al. 2021; docs/statistics.md).

Every panel of a :class:`~mtl_bench.report.tables.ScoreTable` (a dataset and its settings) is one
benchmark; Delta_m% puts them on one scale (0 = the single-task baselines, lower is better). Per
method: the interquartile mean and the mean of its runs' Delta_m pooled over benchmarks (each
benchmark weighing the same, whatever its number of runs), and the
probability that it improves on the reference, each with a stratified percentile bootstrap interval
(:func:`mtl_bench.report.stats.aggregate`); the performance profile is
:func:`mtl_bench.report.stats.performance_profile`.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .stats import CONFIDENCE, N_RESAMPLES, SEED, aggregate, performance_profile
from .tables import MIN_SEEDS, ScoreTable


def run_deltas(table: ScoreTable) -> pd.DataFrame:
    """``panel, method, seed, delta_m`` of every multi-task run with a Delta_m."""
    runs = table.runs
    if runs.empty or "delta_m" not in runs:
        raise ValueError("no runs with Δm: the aggregate needs single-task baselines (or --baseline published:NAME)")
    runs = runs[~runs["is_baseline"].astype(bool)].dropna(subset=["delta_m"])
    if runs.empty:
        raise ValueError("no runs with Δm: the aggregate needs single-task baselines (or --baseline published:NAME)")
    return runs.groupby(["panel", "method", "seed"], sort=False)["delta_m"].mean().reset_index()


@dataclass
class AggregateTable:
    frame: pd.DataFrame      # one row per method: benchmarks, runs, iqm, mean, poi with :low / :high
    reference: str
    caption: str
    notes: list

    def _rows(self) -> tuple[list[str], list[list[str]]]:
        header = ["method", "benchmarks", "runs", "IQM Δm% [95% CI] ↓", "mean Δm% [95% CI] ↓",
                  f"P(Δm < {self.reference}) [95% CI] ↑"]
        lines = []
        for _, row in self.frame.iterrows():
            cell = lambda c, d: ("–" if pd.isna(row[c]) else f"{row[c]:.{d}f}"  # noqa: E731
                                 + ("" if pd.isna(row[f"{c}:low"]) else f" [{row[f'{c}:low']:.{d}f}, {row[f'{c}:high']:.{d}f}]"))
            lines.append([str(row["method"]), str(int(row["benchmarks"])), str(int(row["runs"])),
                          cell("iqm", 2), cell("mean", 2), cell("poi", 2)])
        return header, lines

    def to_markdown(self) -> str:
        header, lines = self._rows()
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out + ["", self.caption] + [f"- {n}" for n in self.notes]) + "\n"

    def to_latex(self) -> str:
        tex = lambda s: (s.replace("%", r"\%").replace("_", r"\_").replace("Δm", r"$\Delta_m$")  # noqa: E731
                         .replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$").replace("–", "--"))
        header, lines = self._rows()
        out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}",
               r"\toprule", " & ".join(tex(h) for h in header) + r" \\", r"\midrule"]
        out += [" & ".join(tex(c) for c in cells) + r" \\" for cells in lines]
        caption = self.caption + "".join(f" {n}" for n in self.notes)
        return "\n".join(out + [r"\bottomrule", r"\end{tabular}", rf"\caption{{{tex(caption)}}}", r"\end{table}", ""])

    def to_csv(self) -> str:
        return self.frame.to_csv(index=False)

    def render(self, fmt: str = "md") -> str:
        return {"md": self.to_markdown, "latex": self.to_latex, "csv": self.to_csv}[fmt]()


def aggregate_table(table: ScoreTable) -> AggregateTable:
    runs = run_deltas(table)
    frame = aggregate(runs, reference=table.reference)
    benchmarks = runs["panel"].nunique()
    caption = (f"Across {benchmarks} benchmark(s) (the table's panels): Δm% of every run (lower is better), "
               f"pooled over benchmarks, each benchmark weighing the same. IQM: interquartile mean (mean of the "
               f"middle 50% of the runs; Agarwal et al. 2021). P(Δm < {table.reference}): per benchmark, the probability that a run of the method has "
               f"a lower Δm than a run of {table.reference} (all pairs, ties 1/2), averaged over the benchmarks both "
               f"ran. [95% CI]: stratified percentile bootstrap (runs resampled within each benchmark), "
               f"{N_RESAMPLES} resamples, seed {SEED}, confidence {CONFIDENCE:g}.")
    notes = []
    few = runs.groupby(["panel", "method"]).size()
    if (few < MIN_SEEDS).any():
        notes.append(f"Some methods have fewer than {MIN_SEEDS} runs on a benchmark: their intervals say next to "
                     f"nothing (none with 1 run).")
    counts = few.groupby(level="method").nunique()
    if (counts > 1).any():
        notes.append(f"Methods with different numbers of runs per benchmark ({', '.join(counts[counts > 1].index)}): "
                     f"a benchmark's runs count as 1/n each, so that every benchmark weighs the same.")
    if benchmarks < 2:
        notes.append("One benchmark only: these are that benchmark's own statistics, not an aggregate.")
    return AggregateTable(frame, table.reference, caption, notes)


def profile(table: ScoreTable, taus=None) -> pd.DataFrame:
    """Performance profiles of the table's runs at ``taus`` (default: 101 points over the Δm range)."""
    import numpy as np

    runs = run_deltas(table)
    if taus is None:
        low, high = float(runs["delta_m"].min()), float(runs["delta_m"].max())
        pad = 0.05 * (high - low or 1.0)
        taus = np.linspace(low - pad, high + pad, 101)
    return performance_profile(runs, taus)
