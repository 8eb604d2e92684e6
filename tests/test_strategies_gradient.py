"""Gradient strategies on hand-made gradients and Gramians, against values computed by hand or
by an independent formulation (explicit vectors, scipy)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mtl_bench.strategies import SolverError, build_strategy
from mtl_bench.strategies.graddrop import graddrop_update
from mtl_bench.strategies.nash import solve_nash
from mtl_bench.strategies.projection import gradvac_coefficients, pcgrad_coefficients
from mtl_bench.strategies.solvers import min_norm_two, min_norm_weights


def gram(J):
    J = torch.as_tensor(np.asarray(J, dtype=np.float64))
    return J @ J.T


def random_jacobian(T, N, seed):
    return np.random.default_rng(seed).standard_normal((T, N))


def weights(name, J, losses=None, **hp):
    strategy = build_strategy(name, len(J), **hp)
    losses = torch.ones(len(J), dtype=torch.float64) if losses is None else torch.as_tensor(losses, dtype=torch.float64)
    return strategy.weights(losses=losses, gramian=gram(J)).numpy(), strategy


def simplex_qp(G):
    """Independent min-norm solution: scipy SLSQP on the simplex."""
    T = len(G)
    res = minimize(lambda w: w @ G @ w, np.full(T, 1 / T), jac=lambda w: 2 * G @ w, method="SLSQP",
                   bounds=[(0, 1)] * T, constraints=({"type": "eq", "fun": lambda w: w.sum() - 1},),
                   options={"ftol": 1e-14, "maxiter": 1000})
    return res.x


# ---------------------------------------------------------------------------------------- MGDA
def test_mgda_two_task_closed_form_against_brute_force_and_iterative_solver():
    J = np.array([[1.0, 0.2], [-0.5, 1.0]])
    G = (J @ J.T)
    gamma, cost = min_norm_two(G[0, 0], G[0, 1], G[1, 1])
    assert gamma == pytest.approx((G[1, 1] - G[0, 1]) / (G[0, 0] + G[1, 1] - 2 * G[0, 1]))
    grid = np.linspace(0, 1, 100001)
    norms = [np.sum((g * J[0] + (1 - g) * J[1]) ** 2) for g in grid]
    assert gamma == pytest.approx(grid[int(np.argmin(norms))], abs=1e-4)
    assert cost == pytest.approx(min(norms), rel=1e-6)
    # a third task equal to the second: the iterative solver must reach the two-task optimum
    J3 = np.vstack([J, J[1]])
    w3 = min_norm_weights(J3 @ J3.T)
    assert w3[0] == pytest.approx(gamma, abs=1e-4) and w3[1] + w3[2] == pytest.approx(1 - gamma, abs=1e-4)
    w, _ = weights("mgda", J, normalization="none")
    assert w == pytest.approx([gamma, 1 - gamma])


@pytest.mark.parametrize("seed", range(5))
def test_mgda_three_and_four_tasks_against_scipy(seed):
    J = random_jacobian(3 + seed % 2, 6, seed)
    G = J @ J.T
    w = min_norm_weights(G)
    ref = simplex_qp(G)
    assert w.sum() == pytest.approx(1.0) and (w >= -1e-12).all()
    assert w @ G @ w == pytest.approx(ref @ G @ ref, rel=1e-4, abs=1e-8)


def test_mgda_normalisations_change_only_the_solver_input():
    J = np.array([[2.0, 0.0], [0.0, 1.0]])
    losses = [4.0, 0.5]
    w_none, _ = weights("mgda", J, losses, normalization="none")
    assert w_none == pytest.approx([0.2, 0.8])  # min-norm of (2,0),(0,1): w ~ (1/4, 1)
    w_l2, _ = weights("mgda", J, losses, normalization="l2")
    assert w_l2 == pytest.approx([0.5, 0.5])
    w_loss, _ = weights("mgda", J, losses, normalization="loss")  # g/L = (0.5,0), (0,2)
    assert w_loss == pytest.approx([16 / 17, 1 / 17])
    w_lossplus, strategy = weights("mgda", J, losses)  # default loss+: g/(L|g|) = (1/4,0),(0,2)
    assert strategy.normalization == "loss+"
    assert w_lossplus == pytest.approx([64 / 65, 1 / 65])
    w_T, _ = weights("mgda", J, losses, normalization="none", weights_sum="n_tasks")
    assert w_T == pytest.approx([0.4, 1.6])


# ---------------------------------------------------------------------------------------- PCGrad
def pcgrad_vectors(J, orders):
    """Independent formulation on the vectors themselves."""
    out = []
    for i in range(len(J)):
        g = J[i].copy()
        for j in orders[i]:
            dot = g @ J[j]
            if dot < 0:
                g = g - dot / (J[j] @ J[j]) * J[j]
                assert g @ J[j] == pytest.approx(0.0, abs=1e-10)  # projected onto the normal plane
        out.append(g)
    return np.array(out)


def test_pcgrad_two_task_hand_case():
    J = np.array([[1.0, 0.0], [-1.0, 1.0]])
    # g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1); sum (0.5, 1.5)
    w, strategy = weights("pcgrad", J)
    assert w == pytest.approx([2.0, 1.5])
    assert w @ J == pytest.approx([0.5, 1.5])
    C = pcgrad_coefficients(J @ J.T, [[1], [0]])
    edited = C @ J
    assert edited[0] @ J[1] >= -1e-12 and edited[1] @ J[0] >= -1e-12
    assert strategy.head_weights(torch.tensor(w)).tolist() == [1.0, 1.0]
    w_mean, _ = weights("pcgrad", J, reduction="mean")
    assert w_mean == pytest.approx([1.0, 0.75])


def test_pcgrad_no_conflict_is_the_sum():
    J = np.array([[1.0, 0.1], [0.2, 1.0], [0.5, 0.5]])
    assert weights("pcgrad", J)[0] == pytest.approx([1.0, 1.0, 1.0])


@pytest.mark.parametrize("seed", range(4))
def test_pcgrad_coefficients_match_vector_projections(seed):
    J = random_jacobian(4, 5, seed)
    rng = np.random.default_rng(seed)
    orders = [[j for j in rng.permutation(4) if j != i] for i in range(4)]
    C = pcgrad_coefficients(J @ J.T, orders)
    edited = C @ J
    np.testing.assert_allclose(edited, pcgrad_vectors(J, orders), atol=1e-10)
    for i, order in enumerate(orders):  # after the last projection no conflict with that gradient
        assert edited[i] @ J[order[-1]] >= -1e-10


# ---------------------------------------------------------------------------------------- GradVac
def test_gradvac_correction_and_phihat_update():
    J = np.array([[1.0, 0.0], [-1.0, 1.0]])
    phihat = np.zeros((2, 2))
    C = gradvac_coefficients(J @ J.T, phihat, beta=0.5, orders=[[1], [0]])
    # phi = cos(g1, g2) = -1/sqrt2 < 0 = phihat: g1' = g1 + |g1| (0 - phi) / |g2| g2 = g1 + 0.5 g2
    assert C[0] == pytest.approx([1.0, 0.5])
    assert C[1] == pytest.approx([1.0, 1.0])  # symmetric: g2 + |g2| (1/sqrt2) / |g1| g1
    assert phihat[0, 1] == pytest.approx(0.5 * (-1 / math.sqrt(2)))  # phi before the correction
    assert phihat[1, 0] == pytest.approx(0.5 * (-1 / math.sqrt(2)))


@pytest.mark.parametrize("target", [0.3, -0.2, 0.7])
def test_gradvac_sets_the_cosine_to_the_target(target):
    J = np.array([[1.0, 0.2, -0.3], [-0.8, 0.5, 0.1]])
    phihat = np.full((2, 2), target)
    C = gradvac_coefficients(J @ J.T, phihat, beta=0.5, orders=[[1], [0]])
    g1 = C[0] @ J
    phi = J[0] @ J[1] / np.linalg.norm(J[0]) / np.linalg.norm(J[1])
    if phi < target:
        assert g1 @ J[1] / np.linalg.norm(g1) / np.linalg.norm(J[1]) == pytest.approx(target, abs=1e-9)
    else:
        assert C[0] == pytest.approx([1.0, 0.0])
    assert phihat[0, 1] == pytest.approx(0.5 * target + 0.5 * phi)


def test_gradvac_phihat_is_a_checkpointed_buffer():
    J = np.array([[1.0, 0.0], [-1.0, 1.0]])
    w, strategy = weights("gradvac", J)
    assert w == pytest.approx([2.0, 1.5])
    assert strategy.state_dict()["phihat"][0, 1].item() == pytest.approx(-0.5 / math.sqrt(2))


# ---------------------------------------------------------------------------------------- CAGrad
@pytest.mark.parametrize("seed", range(3))
def test_cagrad_c0_is_the_mean_gradient(seed):
    J = random_jacobian(3, 4, seed)
    w, strategy = weights("cagrad", J, c=0.0, multiply_by_tasks=False)
    assert w == pytest.approx([1 / 3] * 3, abs=1e-6)
    w_T, _ = weights("cagrad", J, c=0.0)
    assert w_T == pytest.approx([1.0] * 3, abs=1e-6)
    assert strategy.solver_calls == 1 and strategy.solver_failures == 0


@pytest.mark.parametrize("seed", range(3))
def test_cagrad_direction_against_the_primal_problem(seed):
    """d maximises min_i g_i.d over the ball ||d - g0|| <= c ||g0|| (CAGrad's eq. 2)."""
    c = 0.5
    J = random_jacobian(3, 5, seed + 10)
    J[1] = -0.5 * J[0] + 0.3 * J[1]  # some conflict
    w, _ = weights("cagrad", J, c=c, rescale=0, multiply_by_tasks=False)
    d = w @ J
    g0 = J.mean(0)
    radius = c * np.linalg.norm(g0)
    assert np.linalg.norm(d - g0) == pytest.approx(radius, rel=1e-3)
    worst = (J @ d).min()
    rng = np.random.default_rng(seed)
    for _ in range(2000):
        u = rng.standard_normal(5)
        other = g0 + radius * u / np.linalg.norm(u)
        assert (J @ other).min() <= worst + 1e-4 * np.linalg.norm(g0) ** 2


def test_cagrad_rescale_and_task_factor_options():
    J = random_jacobian(2, 3, 0)
    base, _ = weights("cagrad", J, c=0.4, rescale=0, multiply_by_tasks=False)
    assert weights("cagrad", J, c=0.4, rescale=1, multiply_by_tasks=False)[0] == pytest.approx(base / 1.16)
    assert weights("cagrad", J, c=0.4, rescale=2, multiply_by_tasks=False)[0] == pytest.approx(base / 1.4)
    default, strategy = weights("cagrad", J)
    assert (strategy.c, strategy.rescale, strategy.multiply_by_tasks) == (0.4, 1, True)
    assert default == pytest.approx(2 * base / 1.16)
    assert strategy.head_weights(torch.tensor(default)).tolist() == [1.0, 1.0]


def official_cagrad_update(J: torch.Tensor, alpha: float, rescale: int = 1) -> torch.Tensor:
    """A direct transcription of ``cagrad()`` in the official NYUv2 code (Liu et al. 2021,
    github.com/Cranial-XIX/CAGrad, nyuv2/utils.py): SLSQP with finite differences on the raw
    Gramian, times the number of tasks as its training loop does ("to match the sum loss")."""
    grads = J.t()  # [dim, tasks], the official layout
    n_tasks = grads.size(1)
    GG = grads.t().mm(grads).cpu()
    g0_norm = (GG.mean() + 1e-8).sqrt()
    x_start = np.ones(n_tasks) / n_tasks
    bnds = tuple((0, 1) for _ in x_start)
    cons = {"type": "eq", "fun": lambda x: 1 - sum(x)}
    A = GG.numpy()
    b = x_start.copy()
    c = (alpha * g0_norm + 1e-8).item()

    def objfn(x):
        return (x.reshape(1, n_tasks).dot(A).dot(b.reshape(n_tasks, 1))
                + c * np.sqrt(x.reshape(1, n_tasks).dot(A).dot(x.reshape(n_tasks, 1)) + 1e-8)).sum()

    res = minimize(objfn, x_start, bounds=bnds, constraints=cons)
    ww = torch.as_tensor(res.x, dtype=grads.dtype)
    gw = (grads * ww.view(1, -1)).sum(1)
    lmbda = c / (gw.norm() + 1e-8)
    g = grads.mean(1) + lmbda * gw
    g = g / (1 + alpha**2) if rescale == 1 else g if rescale == 0 else g / (1 + alpha)
    return g * n_tasks


def conflicting_jacobian(norm: float, seed: int = 0) -> torch.Tensor:
    J = random_jacobian(3, 50, seed)
    J[1] = -0.6 * J[0] + 0.5 * J[1]
    J = torch.as_tensor(J)
    return J * norm / J.norm(dim=1).mean()


@pytest.mark.parametrize("norm", [13.0, 0.13, 0.013])
@pytest.mark.parametrize("seed", range(2))
def test_cagrad_default_equals_the_official_code_at_every_gradient_scale(norm, seed):
    J = conflicting_jacobian(norm, seed)
    official = official_cagrad_update(J, alpha=0.4)
    w, strategy = weights("cagrad", J.numpy())
    ours = torch.as_tensor(w) @ J
    assert ((ours - official).norm() / official.norm()).item() < 1e-6
    assert (strategy.gramian_scaling, strategy.lambda_eps) == ("none", 1e-8)


def test_cagrad_trace_scaling_differs_from_the_official_solve_on_small_gradients():
    """The option solves the same dual on G / trace(G): scale-free, so it departs from the official
    update where SLSQP's absolute tolerance stops the official solve early (small gradients)."""
    J = conflicting_jacobian(0.013)
    official = official_cagrad_update(J, alpha=0.4)
    w, _ = weights("cagrad", J.numpy(), gramian_scaling="trace")
    ours = torch.as_tensor(w) @ J
    assert (ours - official).norm() / official.norm() > 0.02
    w_big, _ = weights("cagrad", (J * 1000).numpy(), gramian_scaling="trace")
    assert w == pytest.approx(w_big, rel=1e-4)  # scale-free
    with pytest.raises(ValueError, match="gramian_scaling"):
        build_strategy("cagrad", 2, gramian_scaling="frobenius")


# ---------------------------------------------------------------------------------------- IMTL-G
@pytest.mark.parametrize("seed", range(4))
def test_imtl_g_equal_projections_and_the_papers_closed_form(seed):
    T = 2 + seed
    J = random_jacobian(T, 7, seed)
    alpha, _ = weights("imtl_g", J)
    assert alpha.sum() == pytest.approx(1.0)
    g = alpha @ J
    units = J / np.linalg.norm(J, axis=1, keepdims=True)
    projections = units @ g
    np.testing.assert_allclose(projections, projections[0], rtol=1e-8)
    # the paper's eq.: alpha_{2..T} = g_1 U^T (D U^T)^-1, D_i = g_1 - g_i, U_i = u_1 - u_i
    D = J[0] - J[1:]
    U = units[0] - units[1:]
    rest = J[0] @ U.T @ np.linalg.inv(D @ U.T)
    np.testing.assert_allclose(alpha, np.concatenate([[1 - rest.sum()], rest]), rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------------------------------- Nash-MTL
@pytest.mark.parametrize("seed", range(4))
def test_nash_fixed_point(seed):
    J = random_jacobian(3, 6, seed)
    J *= np.array([[1.0], [10.0], [0.1]])  # very different scales
    alpha, strategy = weights("nash", J)
    G = J @ J.T
    np.testing.assert_allclose(G @ alpha, 1 / alpha, rtol=1e-4)
    assert (alpha > 0).all()
    assert strategy.max_grad_norm == 1.0 and strategy.solver_calls == 1 and strategy.solver_failures == 0


def test_nash_two_orthogonal_gradients_by_hand():
    # G = diag(a^2, b^2): alpha_i^2 G_ii = 1 -> alpha = (1/a, 1/b)
    alpha, _ = weights("nash", np.array([[2.0, 0.0], [0.0, 0.5]]))
    assert alpha == pytest.approx([0.5, 2.0], rel=1e-6)


def test_nash_warm_start_and_weight_reuse():
    J = random_jacobian(3, 6, 1)
    strategy = build_strategy("nash", 3, update_weights_every=2)
    G = gram(J)
    first = strategy.weights(losses=torch.ones(3), gramian=G)
    second = strategy.weights(losses=torch.ones(3), gramian=4 * G)  # reused, not solved
    assert torch.equal(first, second) and strategy.solver_calls == 1
    third = strategy.weights(losses=torch.ones(3), gramian=4 * G)
    assert third.numpy() == pytest.approx(first.numpy() / 2, rel=1e-5) and strategy.solver_calls == 2


@pytest.mark.parametrize("seed", range(4))
def test_nash_a_warm_start_at_the_solution_stays_there(seed):
    """Solved again from its own solution, the solver takes no step: a step of rounding-level
    size would leave the result to its line search's rounding (which differed between two
    bit-different Gramians of the same gradients by 5e-9 relative)."""
    J = random_jacobian(3, 6, seed) * np.array([[1.0], [10.0], [0.1]])
    G = J @ J.T
    alpha = solve_nash(G, None)
    assert np.array_equal(solve_nash(G, alpha), alpha)


def test_nash_failures_are_counted_and_surfaced(caplog):
    bad = np.array([[1.0, 0.0], [0.0, 0.0]])  # a zero gradient: no positive solution
    strategy = build_strategy("nash", 2)
    good = strategy.weights(losses=torch.ones(2), gramian=gram(np.eye(2)))
    with caplog.at_level("WARNING"):
        kept = strategy.weights(losses=torch.ones(2), gramian=gram(bad))
    assert torch.equal(kept, good)  # previous alpha, but counted and logged
    assert (strategy.solver_calls, strategy.solver_failures) == (2, 1)
    assert "keeping the previous alpha" in caplog.text
    strict = build_strategy("nash", 2, on_failure="raise")
    with pytest.raises(SolverError):
        strict.weights(losses=torch.ones(2), gramian=gram(bad))
    assert strict.solver_failures == 1


# ---------------------------------------------------------------------------------------- UPGrad
def test_upgrad_hand_cases():
    w, strategy = weights("upgrad", np.eye(2))  # orthogonal: each v^(i) = e_i / 2
    assert w == pytest.approx([0.5, 0.5], abs=1e-6)
    assert strategy.head_weights(torch.tensor(w)).tolist() == [1.0, 1.0]
    # g1 = (1,0), g2 = (-1,1): projecting g1/2 onto the dual cone {x: x1 >= 0, x2 >= x1} gives
    # (1/4, 1/4) = 1/2 g1 + 1/4 g2... i.e. v^(1) = (3/4, 1/4)? check g2.x >= 0 is active:
    J = np.array([[1.0, 0.0], [-1.0, 1.0]])
    w, _ = weights("upgrad", J)
    update = w @ J
    # projection of g1/2 = (0.5, 0) onto {x1 >= 0, x2 >= x1}: (0.25, 0.25); g2/2 = (-0.5, 0.5): onto
    # the cone {x1 >= 0, x2 >= x1}: (0, 0.5). Sum: (0.25, 0.75)
    assert update == pytest.approx([0.25, 0.75], abs=2e-4)
    assert w == pytest.approx([1.0, 0.75], abs=2e-4)


def dual_cone_projection(J, y):
    res = minimize(lambda x: np.sum((x - y) ** 2), y, jac=lambda x: 2 * (x - y), method="SLSQP",
                   constraints=({"type": "ineq", "fun": lambda x: J @ x, "jac": lambda x: J},),
                   options={"ftol": 1e-14, "maxiter": 500})
    return res.x


@pytest.mark.parametrize("seed", range(4))
def test_upgrad_in_the_dual_cone_and_equal_to_averaged_projections(seed):
    J = random_jacobian(3, 4, seed)
    J[2] = -J[0] + 0.2 * J[2]  # a conflict
    w, _ = weights("upgrad", J)
    update = w @ J
    assert (J @ update >= -1e-6 * np.linalg.norm(J) ** 2).all()
    # the default ridge (1e-4 on the trace-normalised Gramian) perturbs near-singular cases by
    # about 1%; without it the weights give exactly the sum of the projections
    reference = sum(dual_cone_projection(J, J[i] / 3) for i in range(3))
    np.testing.assert_allclose(update, reference, atol=2e-2 * np.linalg.norm(reference))
    exact, _ = weights("upgrad", J, reg_eps=1e-10)
    np.testing.assert_allclose(exact @ J, reference, atol=1e-5 * np.linalg.norm(reference))


def quadprog_projections(Q, lower):
    """Each QP on its own by quadprog (TorchJD's solver)."""
    import quadprog

    T = Q.shape[0]
    return np.stack([quadprog.solve_qp(Q, np.zeros(T), np.eye(T), bound, 0)[0] for bound in lower])


@pytest.mark.parametrize("T", [2, 3, 7, 40])
@pytest.mark.parametrize("shared", [0.0, 0.5])
@pytest.mark.parametrize("bounds", ["unit", "several"])
def test_upgrad_active_set_solves_every_qp_as_quadprog(T, shared, bounds):
    """The batched active-set solution is each QP's minimiser: quadprog's to rounding, and KKT;
    for UPGrad's bounds (e_i / T) and for rows with several positive bounds."""
    from mtl_bench.strategies.upgrad import active_set_projections

    rng = np.random.default_rng(T)
    J = rng.normal(size=(T, 3 * T)) * rng.uniform(0.1, 3.0, size=(T, 1)) + shared * rng.normal(size=3 * T)
    Q = J @ J.T / np.trace(J @ J.T) + 1e-4 * np.eye(T)  # not an M-matrix: off-diagonals of both signs
    Q = 0.5 * (Q + Q.T)
    lower = np.eye(T) / T
    if bounds == "several":
        lower = lower + rng.uniform(0, 1 / T, size=(T, T)) * (rng.random((T, T)) < 0.5)
    V, converged = active_set_projections(Q, lower)
    assert converged.all()
    np.testing.assert_allclose(V, quadprog_projections(Q, lower), rtol=0, atol=1e-12)
    multipliers = V @ Q
    assert (V >= lower - 1e-15).all() and (multipliers >= -1e-12).all()
    assert np.abs(multipliers * (V - lower)).max() < 1e-12


def test_upgrad_unsettled_qps_go_to_quadprog(monkeypatch):
    from mtl_bench.strategies import upgrad

    G = gram(random_jacobian(6, 12, 0) + 0.5)
    G[0, 1] = G[1, 0] = -G[0, 1]
    settled = upgrad.upgrad_weights(G)
    monkeypatch.setattr(upgrad, "ACTIVE_SET_ROUNDS", 0)  # nothing settles: every QP by quadprog
    np.testing.assert_allclose(upgrad.upgrad_weights(G), settled, rtol=0, atol=1e-12)


def test_upgrad_qp_failure_is_an_error():
    strategy = build_strategy("upgrad", 2)
    with pytest.raises(SolverError):
        strategy.weights(losses=torch.ones(2), gramian=torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]))
    assert strategy.solver_failures == 1


# ---------------------------------------------------------------------------------------- Aligned
@pytest.mark.parametrize("seed", range(3))
def test_aligned_condition_on_the_gramian(seed):
    from mtl_bench.strategies.aligned import alignment_matrix

    J = random_jacobian(3, 5, seed)
    G = gram(J)
    B = alignment_matrix(G)
    lmin = torch.linalg.eigvalsh(G).min()
    aligned = B @ G @ B  # Gramian of the aligned gradients B J: lmin I (condition number 1)
    assert torch.allclose(aligned, lmin * torch.eye(3, dtype=torch.float64), atol=1e-9)
    w, strategy = weights("aligned", J)
    assert w == pytest.approx(B.sum(1).numpy())
    assert strategy.head_weights(torch.tensor(w)).tolist() == [1.0] * 3


def test_aligned_drops_null_directions_and_reference_options():
    from mtl_bench.strategies.aligned import alignment_matrix

    J = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]])  # rank 2
    G = gram(J)
    B = alignment_matrix(G)
    assert torch.isfinite(B).all()
    eig, V = torch.linalg.eigh(G)
    kept = eig > eig.max() * 3 * torch.finfo(torch.float32).eps
    P = V[:, kept] @ V[:, kept].T
    assert torch.allclose(B @ G @ B, eig[kept].min() * P, atol=1e-9)
    # orthogonal gradients of norms 1 and 2: lmin = 1 -> weights (1, 1/2): equal-norm aligned gradients
    w, _ = weights("aligned", np.diag([1.0, 2.0]))
    assert w == pytest.approx([1.0, 0.5])
    w_mean, _ = weights("aligned", np.diag([1.0, 2.0]), reference="mean")  # l_ref = 2.5
    assert w_mean == pytest.approx([math.sqrt(2.5), math.sqrt(2.5) / 2])


# ---------------------------------------------------------------------------------------- GradDrop
def test_graddrop_mask_rule_with_a_fixed_u():
    grads = torch.tensor([[1.0, -2.0, 0.5, 0.0], [-1.0, -1.0, 0.5, 0.0]])
    u = torch.tensor([0.3, 0.5, 0.9, 0.2])
    # P = 0.5 (1 + sum G / sum |G|) = (0.5, 0, 1, 0.5); element 0: P > U keeps positives -> 1;
    # element 1: P < U keeps negatives -> -3; element 2: P > U keeps positives -> 1; element 3: 0
    assert graddrop_update(grads, u).tolist() == [1.0, -3.0, 1.0, 0.0]
    assert graddrop_update(grads, torch.tensor([0.7, 0.5, 0.9, 0.2])).tolist() == [-1.0, -3.0, 1.0, 0.0]
    leak = graddrop_update(grads, u, leak=0.5)  # 0.5 + 0.5 M
    assert leak.tolist() == [1.0 - 0.5, -3.0, 1.0, 0.0]


def test_graddrop_representation_mode_sums_over_the_batch_with_sign_z():
    # batch of 2, one feature; z signs (+, -)
    grads = torch.tensor([[[1.0], [2.0]], [[-1.0], [1.0]]])  # [T, B, D]
    signs = torch.tensor([[1.0], [-1.0]])
    # G_1 = 1 - 2 = -1, G_2 = -1 - 1 = -2 -> P = 0 -> keep negative-G tasks (both), any U > 0
    out = graddrop_update(grads, torch.tensor([0.4]), signs)
    assert out.tolist() == [[0.0], [3.0]]
    grads[1] = torch.tensor([[2.0], [0.0]])  # G_2 = 2, G_1 = -1: P = 0.5 (1 + 1/3) = 2/3
    assert graddrop_update(grads, torch.tensor([0.5]), signs).tolist() == [[2.0], [0.0]]  # keep task 2
    assert graddrop_update(grads, torch.tensor([0.9]), signs).tolist() == [[1.0], [2.0]]  # keep task 1


def test_graddrop_aggregate_in_both_spaces():
    strategy = build_strategy("graddrop", 2)
    torch.manual_seed(0)
    J = torch.randn(2, 6)
    update, heads = strategy.aggregate(J, torch.ones(2))
    assert update.shape == (6,) and heads.tolist() == [1.0, 1.0]
    z = torch.randn(3, 2)
    update, _ = strategy.aggregate(J, torch.ones(2), representation=z)
    assert update.shape == (6,)
    # every element is the sum of a subset of the tasks' entries
    Jr = J.view(2, 3, 2)
    u = update.view(3, 2)
    options = torch.stack([torch.zeros_like(u), Jr[0], Jr[1], Jr[0] + Jr[1]])
    assert ((options - u).abs() < 1e-6).any(0).all()


# ---------------------------------------------------------------------------------------- DB-MTL
def test_db_mtl_ema_and_scaling():
    strategy = build_strategy("db_mtl", 2)
    L = [torch.tensor(2.0), torch.tensor(0.5)]
    assert [t.item() for t in strategy.transform_losses(L)] == pytest.approx([math.log(2 + 1e-8), math.log(0.5 + 1e-8)])
    J1 = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)
    update, heads = strategy.aggregate(J1, torch.ones(2))
    ghat = 0.1 * J1.numpy()  # buffer starts at 0, beta 0.9, no bias correction
    norms = np.linalg.norm(ghat, axis=1)
    alpha = norms.max() / (norms + 1e-8)
    assert update.numpy() == pytest.approx(alpha @ ghat)
    assert heads.tolist() == [1.0, 1.0]
    assert strategy.logged_weights(heads).numpy() == pytest.approx(alpha)
    J2 = torch.tensor([[1.0, 0.0], [0.0, -2.0]], dtype=torch.float64)
    update, _ = strategy.aggregate(J2, torch.ones(2))
    ghat = 0.9 * ghat + 0.1 * J2.numpy()
    norms = np.linalg.norm(ghat, axis=1)
    assert update.numpy() == pytest.approx((norms.max() / (norms + 1e-8)) @ ghat)


def test_db_mtl_beta_schedule():
    strategy = build_strategy("db_mtl", 1, sigma=1.0)
    J = torch.ones(1, 1, dtype=torch.float64)
    strategy.aggregate(J, torch.ones(1))           # beta_1 = 0.9: ghat = 0.1
    strategy.aggregate(J, torch.ones(1))           # beta_2 = 0.45: ghat = 0.045 + 0.55
    assert strategy.ghat.item() == pytest.approx(0.45 * 0.1 + 0.55)


# ---------------------------------------------------------------------------------------- GradNorm
def test_gradnorm_two_task_weight_update_by_hand():
    lr, alpha = 0.025, 1.5
    strategy = build_strategy("gradnorm", 2)
    assert (strategy.alpha, strategy.lr) == (alpha, lr)
    G = torch.diag(torch.tensor([4.0, 1.0]))  # gradient norms (2, 1)
    n = np.array([2.0, 1.0])
    w = np.ones(2)
    m, v = np.zeros(2), np.zeros(2)
    L0 = np.array([1.0, 2.0])
    for t, L in enumerate([L0, np.array([0.5, 1.8])], start=1):
        got = strategy.weights(losses=torch.tensor(L, dtype=torch.float32), gramian=G)
        assert got.numpy() == pytest.approx(w, rel=1e-5)  # this step uses w(t)
        ratios = (L / L0) / (L / L0).mean()
        target = (w * n).mean() * ratios**alpha
        grad = np.sign(w * n - target) * n
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        w = w - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        w = w * 2 / w.sum()
        assert strategy.task_weights.detach().numpy() == pytest.approx(w, rel=1e-5)
    assert w[1] > w[0]  # task 0 has the larger gradient: its weight goes down


def test_imtl_g_counts_a_failure_when_gradients_cancel():
    from mtl_bench.strategies import SolverError

    strategy = build_strategy("imtl_g", 2)
    G = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)  # g and -g
    with pytest.raises(SolverError, match="IMTL-G"):
        strategy.weights(losses=torch.ones(2), gramian=G)
    assert strategy.solver_calls == 1 and strategy.solver_failures == 1


def test_imtl_g_nash_scales_the_heads():
    assert build_strategy("imtl_g", 2).scale_heads is False
    assert build_strategy("imtl_g", 2, scale_heads=True).scale_heads is True


def test_gradvac_stays_finite_once_its_target_reaches_one():
    strategy = build_strategy("gradvac", 2)
    strategy.phihat.fill_(1.0)
    G = torch.tensor([[1.0, 0.9], [0.9, 1.0]], dtype=torch.float64)
    assert torch.isfinite(strategy.weights(losses=torch.ones(2), gramian=G)).all()


def test_upgrad_without_its_ridge_on_dependent_gradients_is_quadprogs_error():
    """reg_eps = 0 on linearly dependent gradients: the QPs are not strictly convex, the active-set
    solver is not tried, and quadprog's refusal is a SolverError (as before the active-set solver)."""
    from mtl_bench.strategies import upgrad

    J = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    with pytest.raises(SolverError, match="quadprog"):
        upgrad.upgrad_weights(gram(J), reg_eps=0.0)
