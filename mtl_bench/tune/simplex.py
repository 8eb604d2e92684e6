"""Static weights over the simplex: Xin et al. 2022's baseline (docs/tuning.md).

Xin et al. 2022 ("Do current multi-task optimization methods in deep learning even help?",
NeurIPS) sweep the weights of a static scalarisation ``sum_i w_i L_i`` with ``w`` on the simplex and
compare the resulting front with the methods'. :func:`simplex_grid` gives every weight vector with
entries ``k / divisions`` summing to 1 (for 2 tasks a line of ``divisions + 1`` points; C(d+T-1, T-1)
points for T tasks), :func:`dirichlet_weights` random draws for many tasks, and :func:`override`
the Hydra sweep override ``strategy.weights=[..],[..]``:

    python -m mtl_bench.tune.simplex --tasks 3 --divisions 4        # 15 points
    python -m mtl_bench.tune.simplex --tasks 10 --dirichlet 30 --seed 0
    mtl-bench run -m strategy=static "$(python -m mtl_bench.tune.simplex --tasks 3 --divisions 4)" seed=0,1,2
"""
from __future__ import annotations

import argparse
from itertools import combinations

import numpy as np


def simplex_grid(n_tasks: int, divisions: int) -> list[list[float]]:
    """Every ``w`` with ``w_i = k_i / divisions``, ``sum k_i = divisions`` (stars and bars), in
    lexicographic order of ``k`` from ``[0, ..., divisions]``."""
    if n_tasks < 1 or divisions < 1:
        raise ValueError(f"simplex grid of {n_tasks} tasks and {divisions} divisions: both must be at least 1")
    out = []
    for bars in combinations(range(divisions + n_tasks - 1), n_tasks - 1):
        edges = (-1, *bars, divisions + n_tasks - 1)
        counts = [edges[i + 1] - edges[i] - 1 for i in range(n_tasks)]
        out.append([c / divisions for c in counts])
    return sorted(out)


def dirichlet_weights(n_tasks: int, n: int, seed: int = 0, concentration: float = 1.0) -> list[list[float]]:
    """``n`` draws from Dirichlet(concentration, ..., concentration): uniform on the simplex at 1."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet([concentration] * n_tasks, size=n).round(6).tolist()


def override(weights: list[list[float]]) -> str:
    """``strategy.weights=[a,b],[c,d]``: one run per weight vector in a Hydra multirun."""
    return "strategy.weights=" + ",".join("[" + ",".join(f"{w:g}" for w in ws) + "]" for ws in weights)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mtl_bench.tune.simplex", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--divisions", type=int, default=10, help="grid step 1/DIVISIONS (default 10)")
    parser.add_argument("--dirichlet", type=int, metavar="N", help="N Dirichlet(1) draws instead of the grid")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    weights = dirichlet_weights(a.tasks, a.dirichlet, a.seed) if a.dirichlet else simplex_grid(a.tasks, a.divisions)
    print(override(weights))


if __name__ == "__main__":
    main()
