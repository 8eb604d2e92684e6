"""Comparison tables: rows methods, columns task metrics, Delta_m%, mean rank, relative time.

:func:`score_table` turns selected values (:func:`mtl_bench.report.selection.selected_values`,
annotated by :func:`mtl_bench.report.groups.annotate`) into a :class:`ScoreTable`; its
``to_markdown`` / ``to_latex`` / ``to_csv`` render it with the best value of each column in bold
(the single-task row is shown for reference, never ranked or marked). Config keys tuned on val
(``--tune trainer.lr``, :func:`mtl_bench.report.selection.tune`) get a column after the method with
the value chosen for the row (per task for the single-task row when the tasks' choices differ).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from .baselines import Baselines
from .directions import arrow, display_scale, label
from .scores import delta_m, mean_rank, paired_test, seed_stats
from .stats import CONFIDENCE, N_RESAMPLES, SEED, bootstrap_ci, holm, probability_of_improvement

SKIP_METRICS = ("loss", "weight")
# a metric that is another one divided by a constant has the same relative change: both in the
# default columns would count that task twice in Δm (a regression task's normalized_loss = mse / scale)
SCALED_COPIES = {"normalized_loss": "mse"}
CI_KINDS = ("t", "bootstrap")       # --ci: Student t half-widths (default) | percentile bootstrap intervals
CORRECTIONS = ("none", "holm")      # --correction of the p-values against the reference
MIN_SEEDS = 3    # rows with fewer seeds are marked: their 95% CI says little (Student t, n - 1 dof)
FEW_SEEDS = "†"
FEW_SEEDS_NOTE = (f"{FEW_SEEDS}: fewer than {MIN_SEEDS} seeds; the 95% CI over seeds is not informative "
                  f"(none with 1 seed; with 2, t = 12.7 times the standard error). Nothing is clipped.")
BELOW_BAR = "‡"  # a metric mean worse than the bar set for it (--bar METRIC=VALUE)


@dataclass
class ScoreTable:
    """``frame``: one row per (panel, method) with ``<column>`` means, ``<column>:ci`` half-widths,
    ``delta_m``, ``delta_m:ci``, ``mr``, ``time``, ``p``, ``n``; ``columns``: the metric columns
    (``task/metric`` or ``mean/metric``) with their direction in ``directions``."""

    frame: pd.DataFrame
    columns: list[str]
    directions: dict[str, bool]
    caption: str
    notes: list[str] = field(default_factory=list)
    reference: str = "ew"
    tuned: list[str] = field(default_factory=list)   # config keys chosen on val: text columns of frame
    label_column: str | None = None  # a text column of frame shown after the method (the paper's row name)
    ci: str = "t"                    # t: mean ± half-width | bootstrap: mean [low, high] (<column>:low/:high)
    correction: str = "none"         # holm: column p holds Holm-adjusted p-values (p_raw the raw ones)
    poi: bool = False                # a column P(Δm better than the reference), ties 1/2
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per run: its Δm and metric columns
    bars: dict[str, float] = field(default_factory=dict)  # metric -> value in its stored units (--bar)

    # ------------------------------------------------------------------ rendering
    def _cells(self, fmt: str) -> dict[str, tuple[list[str], list[list[str]]]]:
        """panel -> (header, rows of cells); a panel shows only the columns it has values for."""
        printed = "printed_delta_m" in self.frame
        panels: dict[str, tuple[list[str], list[list[str]]]] = {}
        for panel, rows in self.frame.groupby("panel", sort=False):
            columns = [c for c in self.columns if rows[c].notna().any()]
            tuned = [k for k in ([self.label_column] if self.label_column else []) + self.tuned if k in rows]
            header = ["method"] + tuned + [f"{c.split('/')[0]} {label(c.split('/')[1])} "
                                   f"{arrow(c.split('/')[1], self.directions[c])}" for c in columns]
            header += ["Δm% ↓"] + (["printed Δm%"] if printed else [])
            header += ["MR ↓", f"time/epoch (×{self.reference}) ↓",
                       f"p vs {self.reference}" + (" (Holm)" if self.correction == "holm" else "")]
            header += [f"P(Δm < {self.reference})"] if self.poi else []
            cost = [c for c in COST_COLUMNS if _shown(self.frame, c)]
            header += [COST_COLUMNS[c] for c in cost] + ["seeds"]
            ranked = rows[~rows["is_baseline"]]
            best = {}
            for c in columns + ["delta_m", "mr", "time"]:
                values = ranked[c].dropna()
                if not values.empty:
                    best[c] = values.max() if self.directions.get(c, False) else values.min()
            lines = []
            for _, row in rows.iterrows():
                def mark(c, scale=1.0, digits=2):
                    # best as shown: values equal to the best at the printed precision tie
                    return (not row["is_baseline"] and c in best and not pd.isna(row[c])
                            and f"{row[c] * scale:.{digits}f}" == f"{best[c] * scale:.{digits}f}")
                cells = [str(row["method"])] + ["" if pd.isna(row[k]) else _short(str(row[k])) for k in tuned]
                for c in columns:
                    scale = display_scale(c.split("/")[1])
                    digits = _digits(best.get(c, row[c]) * scale)
                    cells.append(_cell(row[c], row[f"{c}:ci"], scale, digits, mark(c, scale, digits), fmt,
                                       self._interval(row, c)) + (f" {BELOW_BAR}" if self.below_bar(row, c) else "")
                                 + _fewer_seeds(row, c))
                cells.append(_cell(row["delta_m"], row["delta_m:ci"], 1, 2, mark("delta_m"), fmt,
                                   self._interval(row, "delta_m")) + _fewer_seeds(row, "delta_m"))
                if printed:
                    flag = " (!)" if row.get("inconsistent") else ""
                    cells.append(_cell(row["printed_delta_m"], math.nan, 1, 2, False, fmt) + flag)
                cells.append(_cell(row["mr"], math.nan, 1, 2, mark("mr"), fmt))
                cells.append(_cell(row["time"], math.nan, 1, 2, mark("time"), fmt))
                cells.append("" if pd.isna(row["p"]) else f"{row['p']:.3g}")
                if self.poi:
                    cells.append("" if pd.isna(row.get("poi")) else f"{row['poi']:.2f}")
                cells += [_cost_cell(row, c) for c in cost]
                cells.append(_seeds_cell(row["n"]))
                lines.append(cells)
            panels[str(panel)] = (header, lines)
        return panels

    def below_bar(self, row, column: str) -> bool:
        """The row's mean of ``column`` is worse than the bar set for its metric (``--bar``)."""
        bar = self.bars.get(column.split("/")[1])
        if bar is None or pd.isna(row[column]) or math.isclose(row[column], bar, rel_tol=1e-9):
            return False  # (a mean that shows as the bar itself, 0.8999999999999999 for 0.9, is not below it)
        return row[column] < bar if self.directions[column] else row[column] > bar

    def set_bars(self, bars: dict[str, float]) -> None:
        """Mark the metric means worse than ``bars`` (metric -> value in the table's units, e.g.
        ``{"accuracy": 90}`` for 90%): a ‡ after the value, a note, and the CSV column ``below_bar``."""
        shown = sorted({c.split("/")[1] for c in self.columns})
        unknown = sorted(set(bars) - set(shown))
        if unknown:
            raise ValueError(f"--bar {', '.join(unknown)}: no such metric in the table; its metrics: {', '.join(shown)}")
        self.bars = {metric: value / display_scale(metric) for metric, value in bars.items()}
        self.frame["below_bar"] = [",".join(c for c in self.columns if self.below_bar(row, c))
                                   for _, row in self.frame.iterrows()]
        for metric, value in bars.items():
            self.notes.append(f"{BELOW_BAR}: mean {label(metric)} worse than {value:g}, the bar set with "
                              f"--bar {metric}={value:g}.")

    def _interval(self, row, column: str):
        """``(low, high)`` of a bootstrap table, else None (a ± half-width is shown)."""
        return (row[f"{column}:low"], row[f"{column}:high"]) if self.ci == "bootstrap" else None

    def to_markdown(self) -> str:
        out = []
        for panel, (header, lines) in self._cells("md").items():
            out.append(f"**{panel}**\n")
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join("---" for _ in header) + "|")
            out.extend("| " + " | ".join(cells) + " |" for cells in lines)
            out.append("")
        out.append(self.caption)
        out.extend(f"- {note}" for note in self.notes)
        return "\n".join(out) + "\n"

    def to_latex(self) -> str:
        tex = lambda s: (s.replace("%", r"\%").replace("_", r"\_").replace("Δm", r"$\Delta_m$")
                         .replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$").replace("±", r"$\pm$")
                         .replace("×", r"$\times$").replace("–", "--"))
        out = []
        for panel, (header, lines) in self._cells("latex").items():
            out += [r"\begin{table}[t]", r"\centering", r"\small",
                    rf"\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}", r"\toprule",
                    " & ".join(tex(h) for h in header) + r" \\", r"\midrule"]
            out.extend(" & ".join(tex(c) for c in cells) + r" \\" for cells in lines)
            caption = f"{panel}. {self.caption}" + "".join(f" {n}" for n in self.notes)
            out += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{tex(caption)}}}", r"\end{table}", ""]
        return "\n".join(out)

    def to_csv(self) -> str:
        return self.frame.to_csv(index=False)

    def render(self, fmt: str = "md") -> str:
        if fmt not in ("md", "latex", "csv"):
            raise ValueError(f"--format {fmt!r}: choose md, latex or csv")
        return {"md": self.to_markdown, "latex": self.to_latex, "csv": self.to_csv}[fmt]()


# cost columns of the summary.json cost block: shown when a run of the table has the value
COST_COLUMNS = {"backward_passes": "enc. backward/step", "solver_calls": "solver fails/calls"}


def _shown(frame: pd.DataFrame, column: str) -> bool:
    """Backward passes: some run recorded them; solver failures: some run called a solver."""
    if column not in frame:
        return False
    values = pd.to_numeric(frame[column], errors="coerce")
    return bool((values > 0).any()) if column == "solver_calls" else bool(values.notna().any())


def _cost_cell(row, column: str) -> str:
    value = row.get(column)
    if value is None or pd.isna(value):
        return "–"
    if column == "solver_calls":
        return "–" if value == 0 else f"{int(row['solver_failures'])}/{int(value)}"
    return f"{value:.2f}"


def _short(text: str) -> str:
    """A tuned value as shown: long numbers drawn by Optuna (0.0017826497151386949) to 4 digits."""
    if len(text) <= 8:
        return text
    try:
        return f"{float(text):.4g}"
    except ValueError:
        return text


def _fewer_seeds(row, column: str) -> str:
    """`` (k/n seeds)`` after a mean over fewer seeds than its row has (the others' value is
    missing); nothing otherwise (and for a frame without per-cell counts)."""
    k, n = row.get(f"{column}:n"), row.get("n")
    if k is None or n is None or pd.isna(k) or pd.isna(n) or k == 0 or k >= n:
        return ""
    return f" ({int(k)}/{int(n)} seeds)"


FEWER_SEEDS_NOTE = ("(k/n seeds): that cell's mean and interval are over k of the row's n seeds; the others have "
                    "no value for it (a NaN value, no single-task run of that task and seed, or an undefined Δm).")


def _seeds_cell(n) -> str:
    if n is None or pd.isna(n):
        return ""
    return f"{int(n)}{FEW_SEEDS if n < MIN_SEEDS else ''}"


def _digits(value: float) -> int:
    if value is None or pd.isna(value) or value == 0:
        return 2
    return 2 if abs(value) >= 1 else max(2, 1 - int(math.floor(math.log10(abs(value)))) + 2)


def _cell(value, ci, scale: float, digits: int, bold: bool, fmt: str, interval=None) -> str:
    if value is None or pd.isna(value):
        return "–"
    text = f"{value * scale:.{digits}f}"
    if interval is not None:
        if not pd.isna(interval[0]):
            text += f" [{interval[0] * scale:.{digits}f}, {interval[1] * scale:.{digits}f}]"
    elif ci is not None and not pd.isna(ci):
        text += f" ± {ci * scale:.{digits}f}"
    if bold:
        text = f"**{text}**" if fmt == "md" else (rf"\textbf{{{text}}}" if fmt == "latex" else text)
    return text


# ---------------------------------------------------------------------- computation
def _only_task_means(values: dict, base: dict) -> bool:
    """True when the baseline holds ``("mean", metric)`` for every metric of ``values`` and no
    per-task entry (a published table printing only the mean over tasks)."""
    metrics = {m for _, m in values}
    return bool(metrics) and all(("mean", m) in base for m in metrics) and not any(k in base for k in values)


def _task_means(values: dict, reduce=lambda v: sum(v) / len(v)) -> dict:
    """``{(task, metric): v}`` -> ``{("mean", metric): reduce(values of that metric)}``."""
    grouped: dict = {}
    for (_, metric), value in values.items():
        grouped.setdefault(metric, []).append(value)
    return {("mean", metric): reduce(v) for metric, v in grouped.items()}


def default_columns(selected: pd.DataFrame, split: str, metrics=None) -> list[str]:
    """Every ``task/metric`` of the multi-task runs on ``split``, in logged order, except losses,
    weights and a metric whose unscaled original is there too (``SCALED_COPIES``; or only
    ``metrics`` when given)."""
    rows = selected[(selected["split"] == split) & ~selected["is_baseline"]]
    pairs = list(dict.fromkeys(zip(rows["task"], rows["metric"])))
    chosen = [p for p in pairs if (p[1] in metrics if metrics else p[1] not in SKIP_METRICS)]
    if not metrics:  # one of a metric and its scaled copy (the same task's)
        chosen = [(t, m) for t, m in chosen if (t, SCALED_COPIES.get(m)) not in chosen]
    if not chosen and not metrics:
        chosen = [p for p in pairs if p[1] != "weight"]
    return [f"{t}/{m}" for t, m in chosen]


def _run_values(rows: pd.DataFrame, columns: list[str]) -> dict[str, float]:
    """Each ``task/metric`` column's value in one run's rows (``mean/metric``: the mean over its
    tasks, NaN when one of them is NaN: a mean over the other tasks would pass for all of them)."""
    triples = list(zip(rows["task"], rows["metric"], rows["value"]))
    out = {}
    for column in columns:
        task, metric = column.split("/", 1)
        picked = [v for t, m, v in triples if m == metric and (task == "mean" or t == task)]
        out[column] = float(pd.Series(picked, dtype="float64").mean(skipna=False)) if picked else math.nan
    return out


def score_table(selected: pd.DataFrame, baselines: Baselines | None, split: str = "test", columns=None,
                metrics=None, delta_average: str = "metric", reference: str | None = None, tuned=(), ci: str = "t",
                correction: str = "none", poi: bool = False) -> ScoreTable:
    """The comparison table of annotated selected values on ``split`` (see module docstring).

    Delta_m of each run is taken over the ``task/metric`` columns (a ``mean/metric`` column
    stands for that metric of every task), against ``baselines`` matched by panel, task and seed; its mean, 95% CI and paired
    test against ``reference`` are over seeds. MR ranks the non-baseline methods of a panel on
    the metric columns (mean over seeds). ``tuned``: config keys whose chosen values are shown.
    ``ci="bootstrap"`` adds percentile bootstrap intervals of the mean over seeds (``<column>:low`` /
    ``:high``, shown as ``[low, high]``); ``correction="holm"`` adjusts the p-values of each panel's
    comparisons with ``reference`` (Holm 1979; ``p_raw`` keeps the raw ones); ``poi`` adds the
    probability that a seed's Δm is lower than a reference seed's, ties counted 1/2 (``poi``).
    ``reference``: None is ``ew`` where a panel has it; a named one must be a method of the table.
    ``columns`` given must be the runs' (or ``mean/`` of a metric they log).
    """
    if ci not in CI_KINDS:
        raise ValueError(f"--ci {ci!r}: choose {' or '.join(CI_KINDS)}")
    if correction not in CORRECTIONS:
        raise ValueError(f"--correction {correction!r}: choose {' or '.join(CORRECTIONS)}")
    rows = selected[selected["split"] == split]
    if rows.empty:
        raise ValueError(f"no selected values on split {split!r}")
    methods = sorted(set(rows.loc[~rows["is_baseline"], "method"]))
    if reference is not None and reference not in methods:
        raise ValueError(f"--reference {reference}: no such method in the table; its methods: {', '.join(methods)}")
    reference = reference or "ew"
    logged = [f"{t}/{m}" for t, m in dict.fromkeys(zip(rows["task"], rows["metric"]))]
    unknown = [c for c in columns or [] if c not in logged and not (c.startswith("mean/")
                                                                 and any(x.endswith("/" + c[5:]) for x in logged))]
    if unknown:
        raise ValueError(f"--columns {','.join(unknown)}: not logged by the runs on {split}; their columns: "
                         f"{', '.join(logged)} (or mean/METRIC for a metric's mean over tasks)")
    columns = list(columns) if columns else default_columns(selected, split, metrics)
    if not columns:
        raise ValueError("no metric columns to show")
    hib = rows.drop_duplicates("metric").set_index("metric")["higher_is_better"].to_dict()
    directions = {c: bool(hib[c.split("/", 1)[1]]) for c in columns}
    pairs = {tuple(c.split("/", 1)) for c in columns if not c.startswith("mean/")}
    means = {c.split("/", 1)[1] for c in columns if c.startswith("mean/")}
    in_delta = lambda task, metric: (task, metric) in pairs or metric in means
    notes: list[str] = []
    per_run = []
    first_rows = rows.drop_duplicates("run").set_index("run", drop=False)
    # each run's own columns come from its first row; its group holds only the values' columns
    # (grouping the hundred config columns of every run made the table slow)
    values_of_runs = rows[["run", "task", "metric", "value", "higher_is_better"]]
    for run, group in values_of_runs.groupby("run", sort=False):
        info = first_rows.loc[run]
        record = {"panel": info["panel"], "method": info["method"], "is_baseline": bool(info["is_baseline"]),
                  "strategy": info["strategy"], "seed": info["seed"], "run": run,
                  "seconds_per_epoch": info.get("seconds_per_epoch", math.nan),
                  "cpu_seconds_per_epoch": info.get("cpu_seconds_per_epoch", math.nan),
                  "epoch_statistic": info.get("epoch_statistic", "mean"), **_run_values(group, columns),
                  **{c: info.get(c, math.nan) for c in RUN_COSTS},
                  "tasks": info.get("tasks"), **{key: info.get(f"cfg.{key}") for key in tuned}}
        used = group[[in_delta(t, m) for t, m in zip(group["task"], group["metric"])]]
        values = {(t, m): v for t, m, v in used[["task", "metric", "value"]].itertuples(index=False)}
        base = baselines.lookup(info, split, tasks=list(group["task"].unique())) if baselines else {}
        missing = [f"{t}/{m}" for t, m in values if (t, m) not in base]
        dirs = {(t, m): bool(h) for t, m, h in used[["task", "metric", "higher_is_better"]].itertuples(index=False)}
        if missing and _only_task_means(values, base):
            # a published table that prints only the mean over tasks (e.g. CelebA's mean error)
            values, dirs = _task_means(values), _task_means(dirs, reduce=lambda v: v[0])
            missing = []
            note = "Delta_m against a baseline of task means: the runs' task-averaged metrics are compared"
            if note not in notes:
                notes.append(note)
        zero = [f"{t}/{m}" for t, m in values if base.get((t, m)) == 0]
        if values and not missing and not zero:
            record["delta_m"] = delta_m(values, base, dirs, delta_average)
        elif zero:
            record["delta_m"] = math.nan
            notes.append(f"baseline of {', '.join(zero)} is 0 in {info['panel']} for seed {info['seed']}: Delta_m "
                         f"(relative to the baseline) is undefined and left out for that seed's runs")
        else:
            record["delta_m"] = math.nan
            if baselines and missing and not info["is_baseline"]:
                notes.append(f"no baseline for {', '.join(missing)} in {info['panel']}: Delta_m of {info['method']} left out")
        per_run.append(record)
    per_run = pd.DataFrame(per_run)
    out = []
    for (panel, method), group in per_run.groupby(["panel", "method"], sort=False):
        row = {"panel": panel, "method": method, "is_baseline": bool(group["is_baseline"].iloc[0]),
               "strategy": group["strategy"].iloc[0], "n": group["seed"].nunique(),
               "seeds": ",".join(str(s) for s in sorted(group["seed"].unique()))}
        runs_per_seed = group["seed"].value_counts()
        repeated = sorted(runs_per_seed[runs_per_seed > 1].index)
        if repeated and not row["is_baseline"]:
            names = ", ".join(group[group["seed"].isin(repeated)]["run"].astype(str))
            notes.append(f"{method} in {panel} has {runs_per_seed.max()} runs of seed(s) "
                         f"{','.join(map(str, repeated))}: a seed's value is the mean of its runs ({names})")
        for column in columns + ["delta_m"]:
            per_seed = group.groupby("seed")[column].mean().tolist()
            stats = seed_stats(per_seed)
            row[column], row[f"{column}:ci"], row[f"{column}:std"] = stats["mean"], stats["ci"], stats["std"]
            row[f"{column}:n"] = stats["n"]  # the seeds behind this cell: fewer than n where values are missing
            if ci == "bootstrap":
                row[f"{column}:low"], row[f"{column}:high"] = bootstrap_ci(per_seed)
        for clock in ("seconds_per_epoch", "cpu_seconds_per_epoch"):
            # a row's mean over its runs; NaN when one of them did not record it
            row[clock] = pd.to_numeric(group[clock], errors="coerce").mean(skipna=False)
        row.update(_row_costs(group))
        row.update({key: _chosen(group, key) for key in tuned})
        out.append(row)
    table = pd.DataFrame(out)
    table["mr"], table["time"], table["p"] = math.nan, math.nan, math.nan
    if poi:
        table["poi"] = math.nan
    clocks = set()
    for panel, group in table.groupby("panel", sort=False):
        ranked = group[~group["is_baseline"]]
        if len(ranked):
            table.loc[ranked.index, "mr"] = mean_rank(ranked[columns], directions)
            for method in ranked[table.loc[ranked.index, "mr"].isna()]["method"]:
                notes.append(f"MR of {method} in {panel} left out: it lacks a value of a column the others have")
        ref = group[group["method"] == reference]
        if len(ref):
            clock = _clock(group)
            clocks.add(clock)
            table.loc[group.index, "time"] = group[clock] / ref[clock].iloc[0]
            ref_dm = per_run[(per_run["panel"] == panel) & (per_run["method"] == reference)]
            ref_dm = ref_dm.groupby("seed")["delta_m"].mean().dropna().to_dict()
            for idx, row in ranked.iterrows():
                if row["method"] == reference:
                    continue
                mine = per_run[(per_run["panel"] == panel) & (per_run["method"] == row["method"])]
                mine = mine.groupby("seed")["delta_m"].mean().dropna().to_dict()
                table.loc[idx, "p"] = paired_test(mine, ref_dm)["pvalue"]
                if poi:
                    table.loc[idx, "poi"] = probability_of_improvement(list(mine.values()), list(ref_dm.values()))
    if correction == "holm":
        table["p_raw"] = table["p"]
        for _, group in table.groupby("panel", sort=False):
            table.loc[group.index, "p"] = holm(group["p"].tolist())
    table["_order"] = (~table["is_baseline"]).astype(int)  # the single-task row first
    table = table.sort_values(["panel", "_order"], kind="stable").drop(columns="_order").reset_index(drop=True)
    if baselines is not None:
        notes = sorted(baselines.notes) + list(dict.fromkeys(notes))
    seeds = sorted(table["n"].unique())
    rule_column = "selection_rule" if "selection_rule" in selected else "selection"
    rules = "; ".join(sorted(selected[rule_column].dropna().unique())) if rule_column in selected else "config"
    interval = (f"mean [95% CI] (percentile bootstrap of the mean, {N_RESAMPLES} resamples, seed {SEED})"
                if ci == "bootstrap" else "mean ± 95% CI (Student t)")
    caption = (f"{split} split, model selection: {rules}; values: {interval} over "
               f"{'/'.join(map(str, seeds))} seed(s) (column seeds). Δm% (Maninis et al. 2019) averaged per "
               f"{delta_average} against {baselines.source if baselines else 'no baseline'}; lower is better. "
               f"MR: mean rank over the metric columns (1 = best, ties take the lower rank). "
               f"{_time_caption(clocks, reference, _epoch_statistic(per_run, table))}"
               f"p: paired t-test of Δm against {reference} over matching seeds"
               + (f", Holm-corrected for the comparisons with {reference} in each panel (family-wise error "
                  f"rate {1 - CONFIDENCE:.2g}: p < {1 - CONFIDENCE:.2g} is a difference)" if correction == "holm"
                  else ", not corrected for the multiple comparisons (--correction holm corrects them)")
               + ". "
               + (f"P(Δm < {reference}): probability that a run's Δm is lower than a {reference} run's, over all "
                  f"pairs, ties counted 1/2 (Agarwal et al. 2021). " if poi else "")
               + "Bold: best per column (the stl row is not ranked).")
    if _shown(table, "backward_passes"):
        caption += " enc. backward/step: encoder backward passes per training step (mean over runs)."
    if _shown(table, "solver_calls"):
        caption += " solver fails/calls: failed and total calls of the strategy's solver, summed over seeds."
    if (table["n"] < MIN_SEEDS).any():
        notes.append(FEW_SEEDS_NOTE)
    if any(_fewer_seeds(row, c) for _, row in table.iterrows() for c in columns + ["delta_m"]):
        notes.append(FEWER_SEEDS_NOTE)
    if (ci != "t" or correction != "none" or poi) and (table["n"] < MIN_SEEDS).any():
        notes.append(f"Intervals, tests and probabilities over fewer than {MIN_SEEDS} seeds say next to nothing: "
                     f"add seeds before reading a difference.")
    return ScoreTable(table, columns, {**directions, "delta_m": False, "mr": False, "time": False}, caption,
                      notes, reference, list(tuned), ci=ci, correction=correction, poi=poi, runs=per_run)


def _clock(panel: pd.DataFrame) -> str:
    """The time column's clock in one panel: the process CPU time per epoch when every row has it
    (CPU runs since 0.2: other processes on the machine barely move it), else the wall time."""
    return "cpu_seconds_per_epoch" if panel["cpu_seconds_per_epoch"].notna().all() else "seconds_per_epoch"


def _epoch_statistic(per_run: pd.DataFrame, table: pd.DataFrame) -> str:
    """How the runs behind the time column measured an epoch: "mean" (every run's mean epoch, as
    runs recorded it before they kept each epoch's time), "median" (every run's median epoch after
    the first) or "mixed"."""
    timed = per_run[per_run["panel"].isin(table.loc[table["time"].notna(), "panel"])]
    kinds = set(timed["epoch_statistic"]) if "epoch_statistic" in timed else set()
    return "mean" if kinds <= {"mean"} else "median" if kinds == {"median after the first"} else "mixed"


def _time_caption(clocks: set, reference: str, statistic: str = "mean") -> str:
    if not clocks:
        return ""
    measure = "mean training" if statistic == "mean" else "training"
    per_epoch = {"mean": "per epoch",
                 "median": "per epoch (each run's median epoch after the first, which holds one-off costs)",
                 "mixed": "per epoch (each run's median epoch after the first; the mean of all its epochs for "
                          "runs that did not record each epoch)"}[statistic]
    if clocks == {"cpu_seconds_per_epoch"}:
        return (f"time/epoch: {measure} CPU time of the process {per_epoch} relative to {reference} (CPU "
                f"runs; other load on the machine barely changes it, unlike the wall time). ")
    what = "wall time" if clocks == {"seconds_per_epoch"} else "wall time (CPU time in panels where every run has it)"
    return (f"time/epoch: {measure} {what} {per_epoch} relative to {reference}, as measured on the machine "
            f"that ran each run: comparable only between runs made together on one machine. ")


RUN_COSTS = ("backward_passes_per_step", "solver_calls", "solver_failures")


def _row_costs(runs: pd.DataFrame) -> dict:
    """Encoder backward passes per step (mean over the row's runs), solver calls and failures (sums;
    NaN when no run recorded them)."""
    values = {c: pd.to_numeric(runs[c], errors="coerce") if c in runs else pd.Series(dtype=float) for c in RUN_COSTS}
    total = lambda v: v.sum() if v.notna().any() else math.nan  # noqa: E731
    return {"backward_passes": values["backward_passes_per_step"].mean(),
            "solver_calls": total(values["solver_calls"]), "solver_failures": total(values["solver_failures"])}


def _chosen(runs: pd.DataFrame, key: str) -> str:
    """The value of tuned config ``key`` of a row's runs: one value, else ``task=value`` per task
    (a count per value beyond 4 tasks, e.g. the 40 single-task CelebA baselines)."""
    per_task = dict(zip(runs["tasks"].astype(str), runs[key].map(lambda v: "–" if pd.isna(v) else str(v))))
    values = list(dict.fromkeys(per_task.values()))
    if len(values) == 1:
        return values[0]
    if len(per_task) <= 4:
        return " ".join(f"{t}={v}" for t, v in per_task.items())
    return ", ".join(f"{v} (×{list(per_task.values()).count(v)})" for v in values)
