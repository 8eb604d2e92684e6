"""Non-dominated sorting and hypervolume of N-task fronts against hand-made fronts."""
from __future__ import annotations

import numpy as np
import pytest

from mtl_bench.report.pareto import hypervolume, nondominated_ranks


def test_hypervolume_of_hand_made_fronts():
    # a 2-D staircase: 3 x 1 + 2 x 1 + 1 x 1
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4], [False, False]) == pytest.approx(6.0)
    # a dominated point and one beyond the reference add nothing
    assert hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0]], [4, 4], [False, False]) == pytest.approx(6.0)
    # 3-D: one box 1 x 2 x 3
    assert hypervolume([[0, 0, 0]], [1, 2, 3], [False] * 3) == pytest.approx(6.0)
    # 3-D: two boxes 2x2x1 and 1x1x2 overlapping in a unit cube: 4 + 2 - 1
    assert hypervolume([[0, 0, 1], [1, 1, 0]], [2, 2, 2], [False] * 3) == pytest.approx(5.0)
    # maximised objectives (accuracies) mirror the minimised ones
    assert hypervolume([[0.9, 0.7], [0.8, 0.8]], [0.5, 0.5], [True, True]) == pytest.approx(0.4 * 0.2 + 0.3 * 0.1)
    # 4-D: inclusion-exclusion of two boxes against the reference 0
    a, b = np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])
    both = np.prod(np.minimum(a, b))
    assert hypervolume([a, b], [0, 0, 0, 0], [True] * 4) == pytest.approx(np.prod(a) + np.prod(b) - both)
    assert hypervolume(np.empty((0, 2)), [1, 1], [False, False]) == 0.0


def test_hypervolume_agrees_with_a_monte_carlo_estimate():
    rng = np.random.default_rng(0)
    points = rng.random((12, 3))
    exact = hypervolume(points, [1, 1, 1], [False] * 3)
    samples = rng.random((200_000, 3))
    covered = np.zeros(len(samples), bool)
    for p in points:
        covered |= np.all(samples >= p, axis=1)
    assert exact == pytest.approx(covered.mean(), abs=0.005)


def test_nondominated_sorting_of_a_hand_made_set():
    points = [[1, 3], [2, 2], [3, 1], [2, 3], [3, 3], [4, 4], [1, 3]]
    assert nondominated_ranks(points, [False, False]).tolist() == [0, 0, 0, 1, 2, 3, 0]   # duplicates share a rank
    assert nondominated_ranks(points, [True, True]).tolist() == [3, 3, 2, 2, 1, 0, 3]
    assert nondominated_ranks([[0.9, 0.1, 0.5], [0.8, 0.2, 0.5], [0.7, 0.1, 0.4]], [True] * 3).tolist() == [0, 0, 1]


def test_optuna_hypervolume_agrees_when_installed():
    pytest.importorskip("optuna")
    try:
        from optuna._hypervolume import compute_hypervolume   # private: checked only where it exists
    except ImportError:
        pytest.skip("optuna without _hypervolume")
    points = np.random.default_rng(1).random((15, 4))
    assert hypervolume(points, np.ones(4), [False] * 4) == pytest.approx(compute_hypervolume(points, np.ones(4)))


def test_the_pareto_plot_ranks_and_measures_every_task_of_a_three_task_panel(tmp_path):
    import pandas as pd

    from mtl_bench.report.plots import pareto

    means = {  # method -> accuracy of tasks a, b, c (two seeds around it)
        "static weights=[1,0,0]": (0.9, 0.5, 0.5), "static weights=[0,1,0]": (0.5, 0.9, 0.5),
        "static weights=[0,0,1]": (0.5, 0.5, 0.9), "static weights=[0.3,0.3,0.3]": (0.7, 0.7, 0.7),
        "ew": (0.72, 0.72, 0.6), "mgda": (0.6, 0.6, 0.6),
    }
    rows = []
    for method, values in means.items():
        strategy = method.split()[0]
        for seed, shift in ((0, -0.01), (1, 0.01)):
            for task, value in zip("abc", values):
                rows.append({"panel": "p", "method": method, "strategy": strategy, "seed": seed, "split": "test",
                             "task": task, "metric": "accuracy", "value": value + shift, "higher_is_better": True,
                             "is_baseline": False, "run": f"{method}-{seed}"})
    data = pareto(pd.DataFrame(rows), out=tmp_path)
    ranks = dict(zip(data["method"], data["rank"]))
    assert ranks["mgda"] == 1 and all(r == 0 for m, r in ranks.items() if m != "mgda")
    h = data.attrs["hypervolume"]["p"]
    assert h["tasks"] == ["a", "b", "c"] and h["reference"] == pytest.approx([0.5, 0.5, 0.5])
    static = np.array([v for m, v in means.items() if m.startswith("static")])
    others = np.array([means["ew"], means["mgda"]])
    assert h["static"] == pytest.approx(hypervolume(static, [0.5] * 3, [True] * 3))
    assert h["methods"] == pytest.approx(hypervolume(others, [0.5] * 3, [True] * 3))
    assert h["static"] == pytest.approx(0.2 ** 3)      # the corners add nothing; the centre's box 0.2^3
    assert h["methods"] == pytest.approx(0.22 * 0.22 * 0.1)   # mgda inside ew's box
    assert "3-task hypervolume" in data.attrs["note"] and (tmp_path / "pareto.png").exists()
