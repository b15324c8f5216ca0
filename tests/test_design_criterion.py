"""The criterion of ``lmscale next`` against closed forms: a linear-Gaussian update of the draws."""

import numpy as np
import pandas as pd
import pytest

from lmscale.design.criterion import greedy_select
from lmscale.design.space import (
    DesignSpace,
    compute_optimal,
    isoflop_design,
    loguniform_design,
    run_cost,
    seed_grid,
)
from lmscale.errors import LmscaleError
from lmscale.laws.forms import get_form
from lmscale.laws.frontier import chinchilla_allocation


def linear_draws(n_draws=40000, seed=0):
    """Draws of a linear law y = X theta, theta ~ N(0, Sigma): prediction draws at 1 target, 6 candidates."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((3, 3))
    sigma = A @ A.T + 0.5 * np.eye(3)
    theta = rng.multivariate_normal(np.zeros(3), sigma, size=n_draws)
    x_target = np.array([1.0, 2.0, -1.0])
    X = rng.standard_normal((6, 3))
    return theta @ x_target[:, None], theta @ X.T, sigma, x_target, X


def test_one_pick_removes_the_gaussian_conditional_variance():
    target, cand, sigma, g, X = linear_draws()
    s = 0.7
    sel = greedy_select(target, cand, np.ones(6), noise_sd=s, budget=1.0)
    j = sel.picks[0]
    # closed form: the posterior of theta after one noisy observation of x_j theta
    post = np.linalg.inv(np.linalg.inv(sigma) + np.outer(X[j], X[j]) / s**2)
    exact_after = g @ post @ g
    assert sel.variance_before == pytest.approx(g @ sigma @ g, rel=0.03)
    assert sel.variance_after[0] == pytest.approx(exact_after, rel=0.03)
    # and it is the best single candidate by that closed form
    best = min(range(6), key=lambda i: g @ np.linalg.inv(np.linalg.inv(sigma) + np.outer(X[i], X[i]) / s**2) @ g)
    assert j == best


def test_several_picks_match_the_joint_posterior():
    target, cand, sigma, g, X = linear_draws(seed=1)
    s = 0.5
    sel = greedy_select(target, cand, np.ones(6), noise_sd=s, budget=3.0, rule="gain")
    assert len(sel.picks) == 3
    Xp = X[sel.picks]
    post = np.linalg.inv(np.linalg.inv(sigma) + Xp.T @ Xp / s**2)
    assert sel.variance_after[-1] == pytest.approx(g @ post @ g, rel=0.03)
    assert sel.narrowing[-1] == pytest.approx(1 - np.sqrt(sel.variance_after[-1] / sel.variance_before))
    assert np.all(np.diff(sel.variance_after) <= 1e-12)


def test_per_flop_prefers_the_cheaper_of_two_equal_runs_and_respects_budget_and_k():
    rng = np.random.default_rng(2)
    t = rng.standard_normal((500, 1))
    same = t + 0.1 * rng.standard_normal((500, 1))
    cand = np.concatenate([same, same + 1e-9 * rng.standard_normal((500, 1)), rng.standard_normal((500, 3))], axis=1)
    costs = np.array([10.0, 1.0, 1.0, 1.0, 1.0])
    sel = greedy_select(t, cand, costs, noise_sd=0.1, budget=5.0, k=2, rule="per_flop")
    assert sel.picks[0] == 1 and len(sel.picks) <= 2 and sel.cost <= 5.0
    # the expensive twin is unaffordable within a budget of 5
    assert 0 not in greedy_select(t, cand, costs, noise_sd=0.1, budget=5.0).picks
    with pytest.raises(LmscaleError, match="rule"):
        greedy_select(t, cand, costs, 0.1, 5.0, rule="bogus")


def test_reference_designs_spend_the_total_and_stay_in_the_space():
    space = DesignSpace(n_min=1e7, n_max=3e9, c_max=1e20)
    for total in (1e20, 3e20):
        for design in (loguniform_design(space, total), isoflop_design(space, total)):
            cost = run_cost(design["N"], design["D"])
            assert cost.sum() <= total * (1 + 1e-6) and cost.sum() >= 0.9 * total
            assert cost.max() <= space.c_max * (1 + 1e-6)
    iso = isoflop_design(space, 3e20)
    assert iso.groupby("C").size().tolist() == [5, 5, 5, 5]  # 4 budgets, 5 sizes each ([H] approach 2)
    assert pd.Series(seed_grid(space)["C"]).sum() < 1e-2 * 3e20
    cand = space.candidates()
    assert (cand["C"] <= space.c_max * (1 + 1e-9)).all() and len(cand) > 50


def test_compute_optimal_point_closed_forms():
    p = {"E": 1.82, "A": 482.0, "B": 2085.4, "alpha": 0.3478, "beta": 0.3658}
    assert compute_optimal(get_form("chinchilla"), p, 1e22) == pytest.approx(chinchilla_allocation(p, 1e22))
    # [K] eq. 1.5 at fixed C = 6ND: d/dN = 0 gives N^(1 + r) = r N_c^r C / (6 D_c), r = alpha_N / alpha_D
    k = {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103}
    r = k["alpha_N"] / k["alpha_D"]
    N_exact = (r * k["N_c"] ** r * 1e22 / (6 * k["D_c"])) ** (1 / (1 + r))
    N, D = compute_optimal(get_form("kaplan_nd"), k, 1e22)
    assert N == pytest.approx(N_exact, rel=1e-4) and 6 * N * D == pytest.approx(1e22)
