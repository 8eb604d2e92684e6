"""Plots of a results table; each function returns the data frame it drew.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no display) and saved as PNG and
PDF when ``out`` is given; the written paths are in ``frame.attrs["files"]``.

- :func:`weights`: task weights over training steps (GradNorm, Chen et al. 2018, Fig. 2 top), one
  y-axis for all panels when the methods' weights are within 10x of each other in scale.
- :func:`curves`: a per-task metric over epochs.
- :func:`pareto`: two tasks' metrics against each other, with the single-task point and the front
  of the methods' non-dominated points; runs of ``strategy=static`` with different weights trace
  the static-weight front (Xin et al. 2022).
- :func:`delta`: Delta_m% bars with their 95% confidence intervals over seeds.
- :func:`cost`: Delta_m% against seconds per epoch.
- :func:`conflict`: the gradient diagnostics (``diagnostics.every``) over training: share of
  conflicting task-gradient pairs, their mean cosine and the Gramian's condition number.
- :func:`aggregate`: across benchmarks, the IQM of Delta_m% and the probability of improvement
  over the reference with stratified bootstrap intervals; :func:`profile`: performance profiles
  (Agarwal et al. 2021; :mod:`mtl_bench.report.aggregate`).
- :func:`sensitivity`: a tuned key's values (``--tune trainer.lr``) against the val score that
  chose among them and the test score of the same runs, one line per method: how much the
  choice matters and whether validation and test agree on it.

Lines are means over seeds and bands or error bars 95% confidence intervals over seeds (Student t;
none with one seed); every figure says so, with the number of seeds, in a line under its panels
(also ``frame.attrs["note"]``). Epochs and steps sit on integer ticks. A method (a task, in
:func:`weights`) keeps one colour and marker in every panel, named in one legend beside them.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

KINDS = ("weights", "curves", "pareto", "delta", "cost", "conflict", "aggregate", "profile", "sensitivity")


def _figure(n_panels: int = 1, width: float = 4.2, height: float = 3.2, max_cols: int = 3):
    from matplotlib.figure import Figure

    cols = min(n_panels, max_cols)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    return fig, axes


def _seed_band(rows: pd.DataFrame, keys: list[str], value: str = "value") -> pd.DataFrame:
    """Mean, 95% CI (``low``, ``high``; Student t, NaN for one seed) and count ``n`` of ``value``
    over the rows (one per seed) of each group of ``keys``."""
    from scipy import stats

    data = rows.groupby(keys, sort=False)[value].agg(mean="mean", std="std", n="count").reset_index()
    half = stats.t.ppf(0.975, (data["n"] - 1).clip(lower=1)) * data["std"] / data["n"] ** 0.5
    half = half.where(data["n"] > 1)
    return data.assign(low=data["mean"] - half, high=data["mean"] + half).drop(columns="std")


def _seeds(n: pd.Series) -> str:
    low, high = int(n.min()), int(n.max())
    return f"{low} seed(s)" if low == high else f"{low}-{high} seeds"


def _note(fig, frame: pd.DataFrame, text: str) -> None:
    """Say under the panels what the marks are (kept in ``frame.attrs["note"]``), wrapped to the
    figure's width (about 16 characters of 7-point text per inch)."""
    import textwrap

    fig.text(0.5, 0.0, textwrap.fill(text, width=max(40, int(16 * fig.get_figwidth()))), ha="center", va="top",
             fontsize=7)
    frame.attrs["note"] = text


def _integer_ticks(ax, axis: str = "x") -> None:
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(nbins="auto", integer=True))


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def _styles(names) -> dict[str, dict]:
    """One colour and marker per name (method or task), the same in every panel of a figure: 20
    colours (tab20, the strong shade first) and ten markers, so that 24 methods stay apart."""
    from matplotlib import colormaps

    palette = colormaps["tab20"].colors
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return {name: {"color": palette[order[i % 20]], "marker": MARKERS[i % len(MARKERS)]}
            for i, name in enumerate(dict.fromkeys(names))}


def _legend(fig, axes) -> None:
    """One legend for the figure, outside the panels (a legend per panel covers its data once
    a study has a dozen methods): every label drawn, once, in the order first drawn."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside right upper", fontsize=7,
                   ncols=1 if len(entries) <= 30 else 2)


def _title(text: str, width: int = 48) -> str:
    """A panel title wrapped to its panel's width (long panel names: a preset's overrides)."""
    import textwrap

    return "\n".join(textwrap.fill(line, width) for line in str(text).split("\n"))


def _bounds(metric: str) -> tuple[float, float]:
    """The values ``metric`` can take, for clipping confidence bands: fractions in [0, 1], error %
    in [0, 100], losses and errors from 0."""
    from .directions import DISPLAY_SCALE

    if metric in DISPLAY_SCALE or metric.startswith("within_"):
        return 0.0, 1.0
    if metric == "error":
        return 0.0, 100.0
    if metric in ("loss", "mse", "normalized_loss", "abs_error", "rel_error", "mean_angle", "median_angle"):
        return 0.0, math.inf
    return -math.inf, math.inf


def _save(fig, frame: pd.DataFrame, out, name: str) -> pd.DataFrame:
    files = []
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "pdf"):
            path = out / f"{name}.{ext}"
            fig.savefig(path, dpi=150, bbox_inches="tight")
            files.append(str(path))
    frame.attrs["files"] = files
    frame.attrs["figure"] = fig
    return frame


def _better(rows: pd.DataFrame) -> str:
    """`` (higher is better)`` or `` (lower is better)`` for the rows' metric, as recorded with
    them; empty when they do not say."""
    if "higher_is_better" not in rows or rows.empty:
        return ""
    return " (higher is better)" if bool(rows["higher_is_better"].iloc[0]) else " (lower is better)"


def _mtl(results: pd.DataFrame) -> pd.DataFrame:
    return results[~results["is_baseline"]] if "is_baseline" in results else results


def weights(results: pd.DataFrame, out=None, name: str = "weights") -> pd.DataFrame:
    """Task weights against the optimiser step, mean over seeds, one panel per (panel, method).

    Uses the step-level records (``split=train_step``) of a run, or its epoch means
    (``split=train``) when it logged none."""
    rows = _mtl(results)
    rows = rows[(rows["metric"] == "weight") & rows["split"].isin(["train_step", "train"])]
    if rows.empty:
        raise ValueError("no task weights recorded in these runs")
    has_steps = rows[rows["split"] == "train_step"].groupby("run").size()
    keep = rows["run"].map(lambda r: "train_step" if r in has_steps.index else "train")
    rows = rows[rows["split"] == keep]
    data = _seed_band(rows, ["panel", "method", "task", "step"]).rename(columns={"mean": "weight"})
    groups = list(data.groupby(["panel", "method"], sort=False))
    styles = _styles(data["task"])
    fig, axes = _figure(len(groups))
    for ax, ((panel, method), group) in zip(axes, groups):
        for task, line in group.groupby("task", sort=False):
            ax.plot(line["step"], line["weight"], label=task, color=styles[task]["color"])
            ax.fill_between(line["step"], line["low"], line["high"], alpha=0.2, color=styles[task]["color"])
        ax.set_title(_title(f"{method}\n{panel}"), fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("task weight")
        _integer_ticks(ax)
    _legend(fig, axes)
    shared = _share_y(axes, groups)
    _note(fig, data, f"lines: mean task weight over {_seeds(data['n'])}; bands: 95% CI over seeds (Student t); "
                     + ("one y-axis for every panel" if shared else
                        "each panel its own y-axis (the methods' weights differ in scale by more than 10x)"))
    return _save(fig, data, out, name)


def _share_y(axes, groups) -> bool:
    """One y-range for every panel, so that weights compare across methods, when their scales
    are within 10x of each other (a method whose weights are T or 100 times another's would flatten
    the others' lines); whether it was shared."""
    ranges = [pd.concat([g["weight"], g["low"], g["high"]]).dropna() for _, g in groups]
    spans = [float(r.abs().max()) for r in ranges if len(r)]
    if not spans or (min(spans) > 0 and max(spans) / min(spans) > 10):
        return False
    values = pd.concat(ranges)
    pad = 0.05 * (values.max() - values.min() or 1.0)
    for ax in axes:
        ax.set_ylim(values.min() - pad, values.max() + pad)
    return True


def curves(results: pd.DataFrame, metric: str | None = None, split: str = "val", out=None,
           name: str = "curves") -> pd.DataFrame:
    """``metric`` on ``split`` per epoch, one panel per (panel, task), one line per method."""
    rows = results[results["split"] == split]
    if rows.empty:
        raise ValueError(f"no {split!r} records in these runs")
    if metric is None:
        names = [m for m in rows["metric"].unique() if m not in ("loss", "weight")]
        metric = names[0] if names else rows["metric"].iloc[0]
    rows = rows[rows["metric"] == metric]
    if rows.empty:
        raise ValueError(f"no metric {metric!r} on {split!r}")
    data = _seed_band(rows, ["panel", "method", "task", "epoch"]).rename(columns={"mean": "value"})
    low, high = _bounds(metric)  # a band past what the metric can be would stretch the axis
    data["low"], data["high"] = data["low"].clip(lower=low, upper=high), data["high"].clip(lower=low, upper=high)
    groups = list(data.groupby(["panel", "task"], sort=False))
    styles = _styles(data["method"])
    fig, axes = _figure(len(groups))
    for ax, ((panel, task), group) in zip(axes, groups):
        for method, line in group.groupby("method", sort=False):
            style = styles[method]
            ax.plot(line["epoch"], line["value"], label=method, color=style["color"],
                    marker=style["marker"] if len(line) < 30 else None, markersize=3)
            ax.fill_between(line["epoch"], line["low"], line["high"], alpha=0.15, color=style["color"])
        ax.set_title(_title(f"{task} ({panel})"), fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{split} {metric}{_better(rows)}")
        _integer_ticks(ax)
    _legend(fig, axes)
    _note(fig, data, f"lines: mean over {_seeds(data['n'])}; bands: 95% CI over seeds (Student t)")
    data.attrs["metric"] = metric
    return _save(fig, data, out, name)


def front(points: pd.DataFrame, higher_x: bool, higher_y: bool) -> pd.Series:
    """Which points are not dominated (at least as good on both axes, better on one)."""
    sx = 1 if higher_x else -1
    sy = 1 if higher_y else -1
    x, y = points["x"].to_numpy() * sx, points["y"].to_numpy() * sy
    keep = []
    for i in range(len(points)):
        dominated = ((x >= x[i]) & (y >= y[i]) & ((x > x[i]) | (y > y[i]))).any()
        keep.append(not dominated)
    return pd.Series(keep, index=points.index)


def pareto(selected: pd.DataFrame, split: str = "test", metric: str | None = None, tasks=None, out=None,
           name: str = "pareto") -> pd.DataFrame:
    """Two tasks' ``metric`` on ``split`` (mean over seeds per method); ``static`` methods with
    different weights form the static-weight front (``on_front``: non-dominated among them);
    ``on_pareto``: non-dominated among all methods; the single-task runs give the ``stl`` point
    (each task's own baseline, mean over seeds) when there are any."""
    rows = _mtl(selected)
    rows = rows[rows["split"] == split]
    if metric is None:
        names = [m for m in rows["metric"].unique() if m not in ("loss", "weight")]
        metric = names[0] if names else "loss"
    rows = rows[rows["metric"] == metric]
    every_task = rows
    tasks = list(tasks) if tasks else list(dict.fromkeys(rows["task"]))[:2]
    if len(tasks) != 2:
        raise ValueError(f"the pareto plot needs two tasks (--tasks A,B), found {tasks}")
    logged = list(dict.fromkeys(rows["task"]))
    unknown = [t for t in tasks if t not in logged]
    if unknown:
        raise ValueError(f"--tasks {','.join(unknown)}: the runs have no {split} {metric} of it; their tasks: "
                         f"{', '.join(logged)}")
    rows = rows[rows["task"].isin(tasks)]
    stl = _stl_point(selected, split, metric, tasks)
    wide = rows.pivot_table(index=["panel", "method", "strategy", "seed"], columns="task", values="value").reset_index()
    grouped = wide.groupby(["panel", "method", "strategy"], sort=False)
    data = grouped[tasks].mean().reset_index().assign(n=grouped.size().to_numpy())
    for task, axis in zip(tasks, ("x", "y")):  # 95% CI half-widths over seeds (Student t)
        band = _seed_band(wide, ["panel", "method", "strategy"], task)
        data[f"{axis}_ci"] = (band["high"] - band["mean"]).to_numpy()
    data = data.rename(columns={tasks[0]: "x", tasks[1]: "y"})
    data["is_static"] = data["strategy"] == "static"
    data["on_front"], data["on_pareto"] = False, False
    hib = bool(rows["higher_is_better"].iloc[0])
    for _, group in data.groupby("panel"):
        data.loc[group.index, "on_pareto"] = front(group, hib, hib)
        static = group[group["is_static"]]
        if len(static):
            data.loc[static.index, "on_front"] = front(static, hib, hib)
    hypervolumes = _all_task_fronts(data, every_task, hib)
    groups = list(data.groupby("panel", sort=False))
    styles = _styles(data.loc[~data["is_static"], "method"])
    fig, axes = _figure(len(groups), 4.8, 4.0)
    for ax, (panel, group) in zip(axes, groups):
        _draw_pareto_panel(ax, group, stl.get(panel), styles)
        ax.set_xlabel(f"{tasks[0]} {split} {metric}{_better(rows)}")
        ax.set_ylabel(f"{tasks[1]} {split} {metric}{_better(rows)}")
        ax.set_title(_title(panel), fontsize=8)
    _legend(fig, axes)
    note = (f"points: mean over {_seeds(data['n'])} per method, error bars: 95% CI over seeds (Student t); "
            f"dashed: front of the non-dominated points")
    drawn_of = {panel: len(h["tasks"]) for panel, h in hypervolumes.items() if len(h["tasks"]) > 2}
    if drawn_of:
        note += "; " + "; ".join(f"{panel}: 2 of its {n} tasks drawn" for panel, n in drawn_of.items())
    if any(len(h["tasks"]) > 2 for h in hypervolumes.values()):
        note += "; " + "; ".join(_describe_hypervolume(panel, h) for panel, h in hypervolumes.items())
    _note(fig, data, note)
    data.attrs.update(tasks=tasks, metric=metric, stl=stl, hypervolume=hypervolumes)
    return _save(fig, data, out, name)


def _all_task_fronts(data: pd.DataFrame, rows: pd.DataFrame, hib: bool) -> dict:
    """Over every task of the metric (N tasks, not only the two drawn): each method's non-domination
    rank (column ``rank``, 0 = on the N-task front; Deb et al. 2002) and, per panel, the hypervolume
    of the static-weight sweep, of the other methods and of all, against the reference point of each
    task's worst mean among the panel's methods (:mod:`mtl_bench.report.pareto`)."""
    from .pareto import hypervolume, nondominated_ranks

    wide = rows.pivot_table(index=["panel", "method", "strategy", "seed"], columns="task", values="value")
    means = wide.groupby(level=["panel", "method"], sort=False).mean()
    data["rank"] = -1
    out = {}
    for panel, points in means.groupby(level="panel", sort=False):
        points = points.dropna(axis=1, how="any")  # this panel's tasks (another panel may have more)
        tasks = list(points.columns)
        values = points.to_numpy(dtype=float)
        methods = points.index.get_level_values("method")
        ranks = dict(zip(methods, nondominated_ranks(values, [hib] * len(tasks))))
        index = data.index[data["panel"] == panel]
        data.loc[index, "rank"] = data.loc[index, "method"].map(ranks).fillna(-1).astype(int)
        reference = values.min(axis=0) if hib else values.max(axis=0)
        static = set(data.loc[index][data.loc[index, "is_static"]]["method"])
        is_static = [m in static for m in methods]
        def volume(mask):
            chosen = values[[bool(x) for x in mask]]
            return hypervolume(chosen, reference, [hib] * len(tasks)) if len(chosen) else float("nan")
        out[panel] = {"tasks": tasks, "reference": reference.tolist(), "all": volume([True] * len(methods)),
                      "static": volume(is_static), "methods": volume([not s for s in is_static])}
    return out


def _describe_hypervolume(panel, h: dict) -> str:
    text = f"{panel}: {len(h['tasks'])}-task hypervolume (reference: each task's worst method) all {h['all']:.3g}"
    if h["static"] == h["static"]:   # not NaN: the panel has static-weight runs
        text += f", static sweep {h['static']:.3g}, methods {h['methods']:.3g}"
    return text


def _draw_pareto_panel(ax, group: pd.DataFrame, stl: tuple[float, float] | None, styles: dict) -> None:
    static = group[group["is_static"]]
    if len(static):
        ax.scatter(static["x"], static["y"], c="0.6", s=18, label="static weights")
        line = static[static["on_front"]].sort_values("x")
        if len(line) > 1:
            ax.plot(line["x"], line["y"], c="0.4", lw=1, label="static front")
    for _, point in group[~group["is_static"]].iterrows():
        style = styles[point["method"]]
        ax.errorbar([point["x"]], [point["y"]], xerr=[_or_zero(point["x_ci"])], yerr=[_or_zero(point["y_ci"])],
                    fmt=style["marker"], color=style["color"], markersize=6, capsize=2, elinewidth=0.8,
                    label=point["method"])
    line = group[group["on_pareto"]].sort_values("x")
    if len(line) > 1:
        ax.plot(line["x"], line["y"], c="k", lw=0.8, ls="--", label="Pareto front")
    if stl is not None:
        ax.scatter([stl[0]], [stl[1]], marker="*", s=120, c="k", label="stl (single-task)")


def _or_zero(value) -> float:
    return 0.0 if pd.isna(value) else float(value)


def _stl_point(selected: pd.DataFrame, split: str, metric: str | None, tasks) -> dict:
    """``{panel: (x, y)}``: each task's single-task baseline value (mean over seeds), for every
    panel whose baselines they are (a task set's panel has its dataset's, ``baseline_panel``)."""
    if "is_baseline" not in selected or metric is None or not tasks:
        return {}
    rows = selected[selected["is_baseline"] & (selected["split"] == split) & (selected["metric"] == metric)]
    means = rows.groupby(["panel", "task"])["value"].mean()
    bases = (selected.drop_duplicates("panel").set_index("panel")["baseline_panel"].to_dict()
             if "baseline_panel" in selected else {panel: panel for panel in rows["panel"].unique()})
    return {panel: (means[(base, tasks[0])], means[(base, tasks[1])]) for panel, base in bases.items()
            if (base, tasks[0]) in means and (base, tasks[1]) in means}


def delta(table, out=None, name: str = "delta") -> pd.DataFrame:
    """Delta_m% bars (mean over seeds) with 95% CI error bars, from a :class:`ScoreTable`: Student t
    half-widths, or percentile bootstrap intervals for a table made with ``ci="bootstrap"``; the
    p-value against the reference (Holm-corrected when the table is) above each bar."""
    bootstrap = getattr(table, "ci", "t") == "bootstrap"
    columns = ["panel", "method", "delta_m", "delta_m:ci", "n"] + (["delta_m:low", "delta_m:high"] if bootstrap else [])
    columns += ["p"] if "p" in table.frame else []
    data = table.frame[~table.frame["is_baseline"]][columns]
    data = data.rename(columns={"delta_m:ci": "ci", "delta_m:low": "low", "delta_m:high": "high"})
    data = data.dropna(subset=["delta_m"]).reset_index(drop=True)
    if data.empty:
        raise ValueError("no Delta_m to plot: the runs need single-task baselines (or --baseline published:NAME)")
    holm = getattr(table, "correction", "none") == "holm"
    groups = list(data.groupby("panel", sort=False))
    fig, axes = _figure(len(groups), 4.8, 3.2)
    reference = getattr(table, "reference", None)
    any_clipped = False
    for ax, (panel, group) in zip(axes, groups):
        group = group.sort_values("delta_m", kind="stable")  # best (lowest) first: the ranking at a glance
        if bootstrap:
            below = (group["delta_m"] - group["low"]).fillna(0).clip(lower=0)
            above = (group["high"] - group["delta_m"]).fillna(0).clip(lower=0)
            yerr = [below.to_numpy(), above.to_numpy()]
        else:
            yerr = group["ci"].fillna(0)
        colors = ["C1" if method == reference else "C0" for method in group["method"]]
        ax.bar(range(len(group)), group["delta_m"], yerr=yerr, capsize=3, color=colors)
        below, above = yerr if bootstrap else (yerr.to_numpy(), yerr.to_numpy())
        clipped = _clip_outliers(ax, group["delta_m"].reset_index(drop=True), below, above)
        any_clipped = any_clipped or clipped
        if holm:
            for x, (_, row) in enumerate(group.iterrows()):
                if not pd.isna(row["p"]):
                    ax.annotate(f"p={row['p']:.2g}", (x, row["delta_m"]), ha="center", va="bottom", fontsize=6,
                                xytext=(0, 2), textcoords="offset points")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(group)), group["method"], rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("Δm% (lower is better)")
        ax.set_title(str(panel), fontsize=8)
    kind = "percentile bootstrap" if bootstrap else "Student t"
    note = (f"bars: mean Δm against the single-task baselines over {_seeds(data['n'])}, lowest first"
            f"{f' ({reference} in orange)' if reference in set(data['method']) else ''}; "
            f"error bars: 95% CI over seeds ({kind})")
    if holm:
        note += f"; p: paired t-test against {table.reference}, Holm-corrected per panel"
    if any_clipped:
        note += "; bars far outside the others run off the axis, their value written at its edge"
    _note(fig, data, note)
    return _save(fig, data, out, name)


def _clip_outliers(ax, means: pd.Series, below, above) -> bool:
    """Fit the y-axis to the bars within 3 interquartile ranges of the others (and of zero), when some are far
    outside, so far that they would squeeze the others into a third of the panel (one diverging
    method at 1500% would flatten every other bar), and write the value of
    each bar that runs off it at the axis edge; whether any did."""
    if len(means) < 4:
        return False
    q1, q3 = means.quantile(0.25), means.quantile(0.75)
    spread = q3 - q1
    inside = means.between(min(q1, 0.0) - 3 * spread, max(q3, 0.0) + 3 * spread)  # zero's side always in
    if spread <= 0 or inside.all():
        return False
    below, above = pd.Series(below, index=means.index), pd.Series(above, index=means.index)
    low = min(0.0, float((means - below)[inside].min()))
    high = max(0.0, float((means + above)[inside].max()))
    if max(high, float(means.max())) - min(low, float(means.min())) < 3 * (high - low):
        return False  # the far bars would not squeeze the others to a third of the panel: draw them all
    pad = 0.1 * (high - low or 1.0)
    ax.set_ylim(low - pad, high + pad)
    for x, value in means[~inside].items():
        edge = high + pad if value > high else low - pad
        ax.annotate(f"{value:.4g}", (x, edge), ha="center", va="top" if value > high else "bottom",
                    fontsize=6, xytext=(0, -2 if value > high else 2), textcoords="offset points",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "lw": 0})
    return True


def cost(table, out=None, name: str = "cost") -> pd.DataFrame:
    """Delta_m% against the mean seconds per training epoch, one point per method: the process CPU
    time where every run of the panel recorded it (CPU runs), else the wall time."""
    frame = table.frame[~table.frame["is_baseline"]]
    cpu = frame["cpu_seconds_per_epoch"] if "cpu_seconds_per_epoch" in frame else pd.Series(float("nan"), frame.index)
    data = frame[["panel", "method", "delta_m", "delta_m:ci", "seconds_per_epoch", "time", "n"]].assign(cpu=cpu)
    data = data.rename(columns={"delta_m:ci": "ci"}).dropna(subset=["delta_m", "seconds_per_epoch"])
    data = data.reset_index(drop=True)
    if data.empty:
        raise ValueError("no Delta_m with a recorded cost to plot")
    groups = list(data.groupby("panel", sort=False))
    styles = _styles(data["method"])
    fig, axes = _figure(len(groups), 4.8, 3.6)
    wall = False
    for ax, (panel, group) in zip(axes, groups):
        use_cpu = group["cpu"].notna().all()
        wall = wall or not use_cpu
        for _, point in group.iterrows():
            style = styles[point["method"]]
            ax.errorbar([point["cpu" if use_cpu else "seconds_per_epoch"]], [point["delta_m"]],
                        yerr=[_or_zero(point["ci"])], fmt=style["marker"], color=style["color"], capsize=3,
                        label=point["method"])
        ax.set_xlim(left=0)  # from zero: a cut axis would stretch a 2% difference across the panel
        ax.set_xlabel("CPU seconds per training epoch" if use_cpu
                      else "seconds per epoch (wall time of the machine that ran it)")
        ax.set_ylabel("Δm% (lower is better)")
        ax.set_title(_title(panel), fontsize=8)
    _legend(fig, axes)
    note = f"points: mean over {_seeds(data['n'])}; error bars: 95% CI of Δm over seeds (Student t)"
    if wall:
        note += "; wall times compare only runs made together on one machine"
    _note(fig, data, note)
    return _save(fig, data, out, name)


# the figures of --kind conflict: metric (task "all" of split "diagnostics") -> (panel title, y label)
CONFLICT = {
    "conflict_fraction": ("conflicting task pairs", "share of pairs with cosine < 0"),
    "cosine_mean": ("agreement of the task gradients", "mean pairwise cosine"),
    "gramian_condition": ("conditioning of the Gramian", "condition number λmax/λmin (log)"),
}


def conflict(results: pd.DataFrame, out=None, name: str = "conflict") -> pd.DataFrame:
    """The gradient diagnostics against the optimiser step, one line per method (mean over
    seeds, 95% CI band), one panel per figure of :data:`CONFLICT` and benchmark panel.

    Condition numbers of singular Gramians (infinite, logged as null) are left out of the means."""
    rows = _mtl(results)
    rows = rows[(rows["split"] == "diagnostics") & (rows["task"] == "all") & rows["metric"].isin(list(CONFLICT))]
    rows = rows.dropna(subset=["value"])
    if rows.empty:
        raise ValueError("no gradient diagnostics in these runs: run them with diagnostics.every=K "
                         "(e.g. diagnostics.every=50) to log them every K steps")
    data = _seed_band(rows, ["panel", "metric", "method", "step"]).rename(columns={"mean": "value"})
    panels = [(panel, metric) for panel in dict.fromkeys(data["panel"]) for metric in CONFLICT
              if ((data["panel"] == panel) & (data["metric"] == metric)).any()]
    fig, axes = _figure(len(panels), 4.4, 3.2)
    for ax, (panel, metric) in zip(axes, panels):
        group = data[(data["panel"] == panel) & (data["metric"] == metric)]
        for method, line in group.groupby("method", sort=False):
            drawn = ax.plot(line["step"], line["value"], label=method, marker="." if len(line) < 30 else None)
            ax.fill_between(line["step"], line["low"], line["high"], alpha=0.2, color=drawn[0].get_color())
        title, ylabel = CONFLICT[metric]
        if metric == "gramian_condition":
            ax.set_yscale("log")
        else:
            ax.axhline(0, color="k", lw=0.6)
        if metric == "conflict_fraction":
            ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"{title}\n{panel}", fontsize=8)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(ylabel)
        _integer_ticks(ax)
        ax.legend(fontsize=7)
    _note(fig, data, f"task gradients of each step logged every diagnostics.every steps, in the method's gradient "
                     f"space (loss weightings: shared parameters); lines: mean over {_seeds(data['n'])}; "
                     f"bands: 95% CI over seeds (Student t)")
    return _save(fig, data, out, name)


def aggregate(table, out=None, name: str = "aggregate") -> pd.DataFrame:
    """Across the table's panels (benchmarks): IQM of Delta_m% and the probability of improvement
    over the reference, each with its stratified bootstrap 95% interval (Agarwal et al. 2021, Fig. 9
    and 8); the data is the frame of :func:`mtl_bench.report.aggregate.aggregate_table`."""
    from .aggregate import aggregate_table

    summary = aggregate_table(table)
    data = summary.frame.copy()
    fig, axes = _figure(2, 4.4, max(2.4, 0.35 * len(data) + 1.2))
    for ax, (column, label, ref_line) in zip(axes, (("iqm", "IQM of Δm% (lower is better)", 0.0),
                                                     ("poi", f"P(Δm < {table.reference}) (higher is better)", 0.5))):
        rows = data.dropna(subset=[column]).reset_index(drop=True)
        y = range(len(rows))
        low = (rows[column] - rows[f"{column}:low"]).fillna(0).clip(lower=0)
        high = (rows[f"{column}:high"] - rows[column]).fillna(0).clip(lower=0)
        ax.errorbar(rows[column], list(y), xerr=[low.to_numpy(), high.to_numpy()], fmt="o", capsize=3)
        ax.axvline(ref_line, color="k", lw=0.8, ls=":")
        ax.set_yticks(list(y), rows["method"], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(label)
    benchmarks = int(data["benchmarks"].max()) if len(data) else 0
    _note(fig, data, f"points: over {benchmarks} benchmark(s), runs pooled; bars: 95% stratified percentile "
                     f"bootstrap CI (runs resampled within each benchmark)")
    return _save(fig, data, out, name)


def profile(table, out=None, name: str = "profile") -> pd.DataFrame:
    """Performance profiles: per method the fraction of runs (benchmarks weighted equally) whose
    Delta_m% is at most tau (Agarwal et al. 2021, Fig. 5; higher is better)."""
    from .aggregate import profile as profile_data

    data = profile_data(table)
    fig, axes = _figure(1, 5.0, 3.6)
    ax = axes[0]
    for method, line in data.groupby("method", sort=False):
        ax.step(line["tau"], line["fraction"], where="post", label=method)
    ax.axvline(0, color="k", lw=0.8, ls=":")
    ax.set_xlabel("τ (Δm%)")
    ax.set_ylabel("fraction of runs with Δm ≤ τ")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    _note(fig, data, "lines: per benchmark the fraction of a method's runs with Δm ≤ τ, averaged over benchmarks")
    return _save(fig, data, out, name)


def _line_label(grid: pd.DataFrame) -> pd.Series:
    """``method``, or ``method (tasks)`` for a method run on several task sets (the single-task
    baselines, tuned per task)."""
    sets = grid.groupby(["panel", "method"])["tasks"].transform("nunique")
    return grid["method"].where(sets == 1, grid["method"] + " (" + grid["tasks"].astype(str) + ")")


NO_VALUE = "–"  # a method without the tuned key (tune_scores): one value, drawn as a level line


def _positions(values: pd.Series) -> tuple[pd.Series, str]:
    """x positions of config values and the axis scale: the numbers themselves (``log`` when
    positive and spanning a factor of 10 or more, else ``linear``), or the values' ranks in
    :func:`~mtl_bench.report.selection.value_order` (``categorical``: ticks labelled with the values)."""
    from .selection import value_order

    try:
        numbers = values.astype(float)
    except (TypeError, ValueError):
        order = pd.Index(values.unique()).sort_values(key=value_order)
        return values.map({v: i for i, v in enumerate(order)}).astype(float), "categorical"
    return numbers, "log" if (numbers > 0).all() and numbers.max() >= 10 * numbers.min() else "linear"


def sensitivity(grid: pd.DataFrame, tuning: pd.DataFrame, out=None, name: str = "sensitivity") -> pd.DataFrame:
    """A tuned key's values against the val score that chose among them (left) and the test score
    of the same runs (right, never used to choose; left out when the runs have no test split), one
    line per method (single-task baselines per task), mean over seeds with 95% CI bands (clipped to
    the means' range); a star marks each method's chosen value, and a method without the key is a
    dotted level line. A second row zooms on the lines' bests. ``grid`` and ``tuning`` are a
    :class:`~mtl_bench.report.pipeline.Selection`'s."""
    if grid.empty:
        raise ValueError("--kind sensitivity draws the runs of a tuned grid: pass --tune KEY (e.g. --tune trainer.lr)")
    keys = [c for c in grid.columns if c.startswith("cfg.")]
    if len(keys) != 1:
        raise ValueError(f"--kind sensitivity draws one tuned key; these runs were tuned on "
                         f"{', '.join(k[4:] for k in keys)}: pass one --tune KEY")
    key = keys[0]
    grid = grid.assign(line=_line_label(grid))
    group_keys = ["panel", "line", "method", "tasks", key]
    per_seed = grid.groupby([*group_keys, "seed"], sort=False)[["score", "test"]].mean().reset_index()
    val = _seed_band(per_seed, group_keys, "score")
    test = _seed_band(per_seed, group_keys, "test").drop(columns="n")
    data = val.merge(test, on=group_keys, suffixes=("", "_test"))
    chosen = {(r["panel"], r["method"], str(r["tasks"]), str(r[key[4:]])) for _, r in tuning.iterrows()}
    data["chosen"] = [(p, m, str(t), str(v)) in chosen for p, m, t, v in
                      zip(data["panel"], data["method"], data["tasks"], data[key])]
    valued = data[key] != NO_VALUE
    if not valued.any():
        raise ValueError(f"no run has a value of {key[4:]} to draw")
    data["x"], scale = float("nan"), "linear"
    data.loc[valued, "x"], scale = _positions(data.loc[valued, key])
    data = data.sort_values(["panel", "line", "x"], kind="stable").reset_index(drop=True)
    has_test = data["mean_test"].notna().any()
    views = [("", "validation: chooses " + key[4:])] + ([("_test", "test: never used to choose")] if has_test else [])
    panels = list(data.groupby("panel", sort=False))
    fig, axes = _figure(2 * len(views) * len(panels), 4.4, 3.0, max_cols=len(views))
    metrics = {}
    for i, (panel, group) in enumerate(panels):
        scored = grid[grid["panel"] == panel]
        metric = ", ".join(scored["metric"].unique())
        higher = bool(scored["higher_is_better"].iloc[0])
        metrics[panel] = f"{metric} ({'higher' if higher else 'lower'} is better)"
        for row, zoom in enumerate((False, True)):
            for column, (suffix, title) in enumerate(views):
                ax = axes[(2 * i + row) * len(views) + column]
                window = _near_the_best(group, f"mean{suffix}", higher) if zoom else _means_range(group, suffix)
                _draw_sensitivity(ax, group, suffix, scale, key, window)
                ax.set_ylim(*window)
                ax.set_ylabel(f"{_metric_words(metric)} ({'test' if suffix else 'val'})")
                ax.set_title(f"{panel}: {title}{', near the best' if zoom else ''}", fontsize=8)
        axes[2 * i * len(views)].legend(fontsize=7)
    bands = "bands: 95% CI over seeds (Student t), clipped to the means' range, drawn where the means are in view; " if (data["n"] > 1).any() else ""
    scores = "; ".join(f"{p}: {m}" for p, m in metrics.items()) if len(metrics) > 1 else next(iter(metrics.values()))
    _note(fig, data, f"lines: mean over {_seeds(data['n'])} of {scores} at each run's selected epoch; {bands}"
                     f"stars: the value the table chose per line (best mean on val); "
                     + (f"dotted: a method without {key[4:]}; " if (~valued).any() else "")
                     + "lower row: the y-range of the lines' bests")
    return _save(fig, data, out, name)


def _metric_words(metric: str) -> str:
    """``mean/accuracy`` (the score of a panel of several tasks) as words for an axis."""
    return f"{metric[5:]}, mean over tasks" if metric.startswith("mean/") else metric


def _draw_sensitivity(ax, group: pd.DataFrame, suffix: str, scale: str, key: str, window: tuple[float, float]) -> None:
    """The lines of one panel; a band is drawn between points whose means are inside ``window``
    (the panel's y-range), so that the wide band of a value that did not train does not cross a
    zoomed panel."""
    valued = group[group[key] != NO_VALUE]
    span = [valued["x"].min(), valued["x"].max()]
    for line, points in group.groupby("line", sort=False):
        if points[key].eq(NO_VALUE).all():  # no value to vary: its level across the axis
            ax.plot(span, [points[f"mean{suffix}"].iloc[0]] * 2, linestyle=":", label=line)
            continue
        drawn = ax.plot(points["x"], points[f"mean{suffix}"], marker=".", label=line)
        means = points[f"mean{suffix}"]
        ax.fill_between(points["x"], points[f"low{suffix}"], points[f"high{suffix}"], alpha=0.15,
                        color=drawn[0].get_color(), where=means.between(*window).to_numpy())
        star = points[points["chosen"]]
        ax.plot(star["x"], star[f"mean{suffix}"], marker="*", markersize=11, linestyle="none",
                color=drawn[0].get_color())
    if scale == "log":
        ax.set_xscale("log")
    elif scale == "categorical":
        labels = valued.drop_duplicates("x").sort_values("x")
        ax.set_xticks(labels["x"], labels[key], fontsize=7)
    ax.set_xlabel(key[4:])


def _means_range(group: pd.DataFrame, suffix: str) -> tuple[float, float]:
    """The y-range of the means, padded by 5%: a 2-seed band (t = 12.7) does not flatten the lines."""
    means = group[f"mean{suffix}"].dropna()
    if means.empty:
        return (0.0, 1.0)
    pad = 0.05 * (means.max() - means.min()) or 0.05 * abs(means.max()) or 0.05
    return (means.min() - pad, means.max() + pad)


def _near_the_best(group: pd.DataFrame, column: str, higher: bool) -> tuple[float, float]:
    """A y-range around each line's best mean in ``column``: from the worst of them, less twice their
    spread (at least 1% of their size), to the best, plus that spread; the values far from any
    line's best (a learning rate that does not train) fall outside it."""
    bests = group.groupby("line")[column].max() if higher else group.groupby("line")[column].min()
    bests = bests.dropna()
    if bests.empty:
        return (0.0, 1.0)
    spread = max(bests.max() - bests.min(), 0.01 * abs(bests).max() or 0.01)
    return (bests.min() - 2 * spread, bests.max() + spread) if higher else (bests.min() - spread, bests.max() + 2 * spread)
