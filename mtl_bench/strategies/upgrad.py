"""UPGrad: unconflicting projection of gradients.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (arXiv 2406.16232),
section 5 / Proposition 2. Each gradient g_i is projected onto the dual cone of the gradients
``{x : g_j . x >= 0 for all j}`` and the projections are averaged; in weight space, with the
normalised Gramian ``Gt = G / trace(G)`` (all zeros if trace < 1e-4) plus 1e-4 I, for each i

    v^(i) = argmin_v  v^T Gt v    subject to  v >= e_i / T   (element-wise)

and ``weights = sum_i v^(i)``, applied to the raw Jacobian. The update then has a non-negative
dot product with every task gradient (``G w >= 0``, up to the ``reg_eps`` regularisation).

The T QPs are solved together, exactly, by a primal-dual active-set method
(:func:`active_set_projections`: one batched linear solve per round, float64 on the host; 0.6 ms
for 40 tasks where 40 calls of ``quadprog``, the solver of TorchJD, take 6.8 ms); a QP it does not
settle goes to ``quadprog`` (the Goldfarb-Idnani dual method). A QP failure is an error
(:class:`SolverError`), counted in ``solver_failures``. Heads get their unscaled loss gradient, as
in TorchJD's ``mtl_backward`` (``scale_heads=False``).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import SolverWeighting
from .solvers import SolverError, one_blas_thread


def _quadprog():
    """quadprog, imported when UPGrad first solves (so the package imports without it)."""
    try:
        import quadprog
    except ImportError as err:  # pragma: no cover - a dependency of mtl-bench
        raise ImportError("UPGrad needs quadprog: pip install quadprog") from err
    return quadprog


ACTIVE_SET_ROUNDS = 50  # primal-dual active-set rounds before a QP goes to quadprog instead


def active_set_projections(Q: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``V[b] = argmin_v v^T Q v  subject to  v >= lower[b]`` for every row b of ``lower`` at once
    (``Q`` symmetric positive definite), by the primal-dual active-set method (Hintermueller,
    Ito & Kunisch, SIAM J. Optim. 13(3), 2002, Alg. 1 with c = 1) on the KKT conditions
    ``Q v = mu``, ``mu >= 0``, ``v >= lower``, ``mu (v - lower) = 0``: guess the bounds that hold
    with equality, solve the linear system of the rest (one batched solve for all rows), and
    guess again from the multipliers and the violations until the guess repeats. A repeated guess
    satisfies every KKT condition, so it is the exact minimiser (the one quadprog finds, to
    rounding). Returns ``(V, converged)``; rows that did not settle within ``ACTIVE_SET_ROUNDS``
    are flagged (the method may cycle on a Q that is not an M-matrix)."""
    rows, T = lower.shape
    V = np.array(lower, dtype=np.float64)
    at_bound = V @ Q > 0          # start at v = lower: a bound stays where its multiplier pushes
    converged = np.zeros(rows, dtype=bool)
    pending = np.arange(rows)
    diagonal = np.arange(T)
    for _ in range(ACTIVE_SET_ROUNDS):
        bound, low = at_bound[pending], lower[pending]
        # bound entries: v_j = lower_j (identity rows); free entries: (Q v)_j = 0, i.e.
        # Q_FF v_F = -Q_FB lower_B (Q symmetric: the rows of -(lower masked to B) @ Q)
        free = (~bound).astype(np.float64)
        system = free[:, :, None] * free[:, None, :]
        system *= Q
        system[:, diagonal, diagonal] += bound
        rhs = np.where(bound, low, -(low * bound) @ Q)
        solved = np.where(bound, low, np.linalg.solve(system, rhs[..., None])[..., 0])  # bounds exactly
        multipliers = solved @ Q
        guess = np.where(bound, multipliers, low - solved) > 0
        V[pending] = solved
        settled = (guess == bound).all(axis=1)
        converged[pending[settled]] = True
        at_bound[pending] = guess
        pending = pending[~settled]
        if not len(pending):
            break
    return V, converged


@one_blas_thread
def upgrad_weights(G: np.ndarray, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> np.ndarray:
    G = np.asarray(G, dtype=np.float64)
    if not np.all(np.isfinite(G)):
        raise SolverError("UPGrad: the Gramian is not finite")
    T = G.shape[0]
    trace = np.trace(G)
    Gt = G / trace if trace >= norm_eps else np.zeros_like(G)
    Gt = 0.5 * (Gt + Gt.T) + reg_eps * np.eye(T)
    lower = np.eye(T) / T  # row i: the bound e_i / T of task i's QP
    try:
        np.linalg.cholesky(Gt)  # positive definite: each QP has one minimiser, the active set finds it
        V, converged = active_set_projections(Gt, lower)
    except np.linalg.LinAlgError:  # quadprog then names the problem (reg_eps = 0 on dependent gradients)
        V, converged = np.zeros((T, T)), np.zeros(T, dtype=bool)
    for i in np.flatnonzero(~converged):  # quadprog for a QP the active-set rounds did not settle
        try:
            V[i] = _quadprog().solve_qp(Gt, np.zeros(T), np.eye(T), lower[i], 0)[0]
        except ValueError as err:
            raise SolverError(f"UPGrad: quadprog failed on the QP of task {i}: {err}") from None
    if not np.all(np.isfinite(V)):
        raise SolverError("UPGrad: a QP returned a non-finite solution")
    return V.sum(axis=0)


class UPGrad(SolverWeighting):
    paper = "Quinton & Rey 2024, arXiv 2406.16232, Prop. 2"
    scale_heads = False

    def __init__(self, n_tasks: int, norm_eps: float = 1e-4, reg_eps: float = 1e-4):
        super().__init__(n_tasks)
        self.norm_eps, self.reg_eps = float(norm_eps), float(reg_eps)

    def weights(self, losses, gramian):
        G = gramian.detach().double().cpu().numpy()
        w = self.solve(upgrad_weights, G, self.norm_eps, self.reg_eps)
        return torch.as_tensor(w, dtype=gramian.dtype, device=gramian.device)
