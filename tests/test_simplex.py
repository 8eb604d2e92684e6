"""Static weights over the simplex (Xin et al. 2022's baseline): the grid, the draws, the presets."""
from __future__ import annotations

from math import comb

import numpy as np
import pytest

from mtl_bench.report.papers import grid_commands, load_preset
from mtl_bench.tune.simplex import dirichlet_weights, main, override, simplex_grid


@pytest.mark.parametrize("tasks,divisions", [(1, 3), (2, 10), (3, 4), (4, 5), (10, 2)])
def test_the_grid_is_every_point_of_step_one_over_divisions_on_the_simplex(tasks, divisions):
    grid = np.array(simplex_grid(tasks, divisions))
    assert len(grid) == comb(divisions + tasks - 1, tasks - 1)          # stars and bars
    assert np.allclose(grid.sum(axis=1), 1.0) and (grid >= 0).all()
    assert np.allclose(grid * divisions, np.round(grid * divisions))
    assert len({tuple(row) for row in grid.tolist()}) == len(grid)


def test_two_tasks_give_a_line_of_weights_and_dirichlet_draws_lie_on_the_simplex(capsys):
    assert simplex_grid(2, 4) == [[0, 1], [0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1, 0]]
    draws = np.array(dirichlet_weights(5, 50, seed=1))
    assert draws.shape == (50, 5) and np.allclose(draws.sum(axis=1), 1.0, atol=1e-5) and (draws >= 0).all()
    assert dirichlet_weights(5, 3, seed=1) == dirichlet_weights(5, 3, seed=1)
    assert override([[0.5, 0.5], [1.0, 0.0]]) == "strategy.weights=[0.5,0.5],[1,0]"
    main(["--tasks", "2", "--divisions", "2"])
    assert capsys.readouterr().out.strip() == "strategy.weights=[0,1],[0.5,0.5],[1,0]"
    with pytest.raises(ValueError, match="at least 1"):
        simplex_grid(2, 0)


@pytest.mark.parametrize("name,tasks,divisions", [("static_simplex_t2", 2, 10), ("static_simplex_t3", 3, 4)])
def test_presets_sweep_the_simplex_beside_the_methods(name, tasks, divisions, tmp_path, compose):
    meta = load_preset(name)
    assert meta["grids"]["static"]["strategy.weights"] == override(simplex_grid(tasks, divisions)).split("=", 1)[1]
    commands = dict(grid_commands(name, tmp_path, []))
    assert "strategy=static" in commands["static"] and f"+experiment={name}" in commands["static"]
    cfg = compose([f"+experiment={name}", "strategy=static", "strategy.weights=" + "[" + ",".join(["0.5"] * tasks) + "]"])
    assert cfg.dataset.num_tasks == tasks and list(cfg.strategy.weights) == [0.5] * tasks
