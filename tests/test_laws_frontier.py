import math

import numpy as np
import pytest

from lmscale.laws.frontier import chinchilla_allocation, chinchilla_exponents

# [H] approach 3, unrounded (science.md section 3).
H_PARAMS = {
    "A": math.exp(6.0073404), "B": math.exp(6.0179186), "E": math.exp(0.5267228),
    "alpha": 0.33917084, "beta": 0.2849083,
}


def test_chinchilla_allocation_gopher_budget():
    n_opt, d_opt = chinchilla_allocation(H_PARAMS, 5.76e23)
    assert n_opt == pytest.approx(40.4e9, rel=0.03)
    assert d_opt == pytest.approx(2.38e12, rel=0.03)
    assert 6 * n_opt * d_opt == pytest.approx(5.76e23, rel=1e-12)


def test_chinchilla_allocation_is_the_argmin_on_the_isoflop_line():
    C = 1e21
    n_opt, _ = chinchilla_allocation(H_PARAMS, C)
    N = np.geomspace(n_opt / 10, n_opt * 10, 20001)
    D = C / (6 * N)
    L = H_PARAMS["E"] + H_PARAMS["A"] / N ** H_PARAMS["alpha"] + H_PARAMS["B"] / D ** H_PARAMS["beta"]
    assert N[np.argmin(L)] == pytest.approx(n_opt, rel=1e-3)


def test_chinchilla_exponents_sum_to_one():
    a, b = chinchilla_exponents(H_PARAMS)
    assert a == pytest.approx(0.2849083 / (0.33917084 + 0.2849083))
    assert a + b == pytest.approx(1.0)
    n, d = chinchilla_allocation(H_PARAMS, np.array([1e20, 1e22]))
    assert np.log(n[1] / n[0]) / np.log(100) == pytest.approx(a)
