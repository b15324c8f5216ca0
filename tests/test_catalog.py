"""The published-law catalog and the data-constrained form of Muennighoff et al. 2023."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmscale.accounting import PF_DAY
from lmscale.errors import LmscaleError
from lmscale.laws import catalog
from lmscale.laws.data_constrained import (
    DATA_CONSTRAINED,
    data_constrained_allocation,
    effective_repeats,
    optimal_params_for_data,
)
from lmscale.laws.forms import CHINCHILLA, get_form
from lmscale.laws.frontier import chinchilla_allocation
from lmscale.laws.result import FitResult, LawSet

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the checkout")


def test_every_entry_loads_and_round_trips_through_json():
    assert catalog.names() == ["kaplan2020", "hoffmann2022", "hoffmann2022-rounded", "besiroglu2024",
                               "muennighoff2023"]
    for name in catalog.names():
        laws = catalog.load(name)
        again = LawSet.from_json(laws.to_json())
        assert again.name == name and set(again.laws) == set(laws.laws)
        for law, fit in laws.laws.items():
            assert again.laws[law].params == pytest.approx(fit.params, rel=1e-15)
            assert fit.notes["where"] and fit.source == laws.source
            assert np.isfinite(fit.predict(**{x: 1e10 for x in fit.form.inputs}))


def test_kaplan2020_holds_sections_2_to_5_with_c_in_flops():
    k = catalog.load("kaplan2020")
    assert set(k.laws) == {"kaplan_n", "kaplan_d", "kaplan_c", "kaplan_cmin", "kaplan_nd", "kaplan_ns", "bcrit"}
    assert k.laws["kaplan_cmin"].params["C_c_min"] == pytest.approx(3.1e8 * 8.64e19)
    assert k.laws["kaplan_c"].params["C_c"] == pytest.approx(1.6e7 * 8.64e19)
    # the law at C_min = 1 PF-day, in FLOPs, is (3.1e8)^0.05 ([K] eq. 1.3)
    assert k.laws["kaplan_cmin"].predict(C_min=PF_DAY) == pytest.approx(3.1e8**0.05, rel=1e-12)
    assert k.laws["kaplan_nd"].params == {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103}
    assert k.laws["kaplan_ns"].params == {"N_c": 6.5e13, "S_c": 2.1e3, "alpha_N": 0.077, "alpha_S": 0.76}
    assert k.laws["bcrit"].params["B_star"] == 2e8 and "2.1e8" in k.laws["bcrit"].notes["where"]
    alloc = k.extras["allocation"]
    assert alloc["C_unit_flops"] == PF_DAY
    rel = alloc["relations"]
    assert (rel["N_opt"]["coef"], rel["N_opt"]["exponent"]) == (1.3e9, 0.73)
    assert (rel["D_opt"]["coef"], rel["D_opt"]["exponent"]) == (2e10, 0.27)
    assert (rel["B"]["coef"], rel["S_min"]["coef"]) == (2.0e6, 5.4e3)
    assert "table 6" in alloc["D_convention"] and "6.7" in alloc["D_convention"]


def test_hoffmann_and_besiroglu_constants():
    h = catalog.load("hoffmann2022").laws["chinchilla"].params
    assert math.log(h["A"]) == pytest.approx(6.0073404, abs=1e-12)
    assert math.log(h["E"]) == pytest.approx(0.5267228, abs=1e-12)
    assert (h["alpha"], h["beta"]) == (0.33917084, 0.2849083)
    r = catalog.load("hoffmann2022-rounded").laws["chinchilla"].params
    assert r == {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    b = catalog.load("besiroglu2024").laws["chinchilla"]
    assert b.params["E"] == 1.81686 and b.params["beta"] == 0.36585
    assert b.stderr["alpha"] == 0.0154 and b.ci["E"] == (1.769, 1.871) and b.n_points == 240
    assert "95% CI" in b.summary()


@needs_shared
def test_catalog_agrees_with_the_shared_transcription():
    """A second transcription (../shared/data/published_constants.json) of the same papers."""
    pub = json.loads((SHARED / "published_constants.json").read_text())
    k, kp = catalog.load("kaplan2020"), pub["kaplan2020"]
    assert k.laws["kaplan_n"].params["N_c"] == kp["L_N"]["N_c"]
    assert k.laws["kaplan_d"].params["alpha_D"] == kp["L_D"]["alpha_D"]
    assert k.laws["kaplan_cmin"].params["C_c_min"] == pytest.approx(kp["L_Cmin"]["C_c_min"] * PF_DAY)
    assert k.laws["kaplan_ns"].params["S_c"] == kp["L_NS"]["S_c"]
    for key in ("N_opt", "B", "S_min", "D_opt"):
        ours = k.extras["allocation"]["relations"][key]
        theirs = list(kp["compute_efficient"][key].values())
        assert [ours["coef"], ours["exponent"]] == theirs[:2]
    hp = pub["hoffmann2022_chinchilla"]["unrounded_used_by_epoch"]
    h = catalog.load("hoffmann2022").laws["chinchilla"].params
    assert math.log(h["B"]) == pytest.approx(hp["log_B"], abs=1e-12)
    bp = pub["besiroglu2024_epoch"]
    b = catalog.load("besiroglu2024").laws["chinchilla"]
    assert b.params["A"] == bp["fit_mle_excluding_5_highest_loss"]["A"]
    assert b.ci["beta"] == tuple(bp["bootstrap_95CI"]["beta"])
    mp = pub["muennighoff2023_datablations"]
    m = catalog.load("muennighoff2023").laws["data_constrained"].params
    assert m["R_D_star"] == mp["data_constrained"]["R_D_star"]
    assert math.log(m["A"]) == pytest.approx(mp["c4_chinchilla_refit_tied"]["log_A"], abs=1e-12)


def test_resolve_catalog_names_fit_files_and_errors(tmp_path):
    fit = FitResult(law="chinchilla", params={"E": 1.7, "A": 400.0, "B": 400.0, "alpha": 0.3, "beta": 0.3})
    path = tmp_path / "my_fit.json"
    fit.to_json(path)
    laws = catalog.resolve(str(path))
    assert laws.name == "my_fit" and laws.laws["chinchilla"].params == fit.params
    set_path = tmp_path / "k.json"
    catalog.load("kaplan2020").to_json(set_path)
    assert catalog.resolve(set_path).extras["allocation"]["relations"]["N_opt"]["coef"] == 1.3e9
    with pytest.raises(LmscaleError, match="known: kaplan2020, hoffmann2022"):
        catalog.resolve("chinchila2022")
    with pytest.raises(LmscaleError, match="no such file"):
        catalog.resolve(str(tmp_path / "missing.json"))


# -- the data-constrained form ---------------------------------------------------

M = catalog.load("muennighoff2023").laws["data_constrained"].params


def test_data_constrained_form_is_registered_and_reduces_to_chinchilla_without_repeats():
    assert get_form("data_constrained") is DATA_CONSTRAINED
    N, D = np.array([1e8, 1e9, 1e10]), np.array([2e9, 2e10, 2e11])
    # U >= D and N below the optimum for U_D: no repeated data, no excess parameters.
    ours = DATA_CONSTRAINED.predict(M, N=N, D=D, U=D * 10)
    assert ours == pytest.approx(CHINCHILLA.predict(M, N=N, D=D), rel=1e-12)


def test_repeated_data_decays_with_r_d_star():
    U, N = 1e10, 1e8  # N small: no excess parameters
    base = {k: M[k] for k in ("E", "A", "B", "alpha", "beta")}
    for epochs in (1, 4, 40, 1e4):
        d_eff = effective_repeats(U, epochs - 1, M["R_D_star"])
        expected = base["E"] + base["A"] / N ** base["alpha"] + base["B"] / d_eff ** base["beta"]
        assert DATA_CONSTRAINED.predict(M, N=N, D=epochs * U, U=U) == pytest.approx(expected, rel=1e-12)
    # [M]: four epochs are worth almost as much as unique data; the worth saturates at (1 + R_D*) U.
    assert effective_repeats(U, 3, M["R_D_star"]) / (4 * U) > 0.9
    assert effective_repeats(U, 1e6, M["R_D_star"]) == pytest.approx((1 + M["R_D_star"]) * U)


def test_unique_parameters_are_the_chinchilla_optimum_for_the_unique_data():
    for D in (1e9, 2e10, 3e12):
        N = optimal_params_for_data(M, D)
        n_back, d_back = chinchilla_allocation(M, 6 * N * D)
        assert (n_back, d_back) == pytest.approx((N, D), rel=1e-9)
    # with alpha = beta this is N = D / G^-2: 20-ish tokens per parameter
    assert 15 < 2e10 / optimal_params_for_data(M, 2e10) < 25


def test_data_constrained_allocation():
    C = 1e21
    free = chinchilla_allocation(M, C)
    assert data_constrained_allocation(M, C, U=1e15) == pytest.approx(free, rel=1e-4)
    n, d = data_constrained_allocation(M, C, U=1e9)  # scarce data: smaller D, larger N than unique
    assert 6 * n * d == pytest.approx(C)
    grid = np.geomspace(n / 3, n * 3, 401)
    losses = DATA_CONSTRAINED.predict(M, N=grid, D=C / (6 * grid), U=1e9)
    assert grid[np.argmin(losses)] == pytest.approx(n, rel=0.01)


def test_data_constrained_jacobian_matches_the_function():
    theta = DATA_CONSTRAINED.to_theta(M)
    X = {"N": np.array([1e8, 3e9]), "D": np.array([4e10, 1e11]), "U": np.array([1e9, 1e11])}
    f, J = DATA_CONSTRAINED.log_predict(theta[None, :], X, jac=True)
    step = 1e-4
    for k in range(len(theta)):
        moved = theta.copy()
        moved[k] += step
        diff = (DATA_CONSTRAINED.log_predict(moved[None, :], X) - f) / step
        assert J[0, :, k] == pytest.approx(diff[0], rel=1e-2, abs=1e-6)


@needs_shared
def test_data_constrained_form_tracks_the_repeated_runs_better_than_chinchilla():
    """Muennighoff et al.'s own runs: multi-epoch losses follow the form, not plain L(N, D)."""
    df = pd.read_csv(SHARED / "muennighoff2023_datablations_runs.csv")
    N, D, U = (df[c].to_numpy(float) for c in ("N_params", "D_tokens", "U_unique_tokens"))
    rep = D / U > 1
    L = np.log(df["val_loss"].to_numpy()[rep])

    def corr(pred):
        return np.corrcoef(np.log(pred[rep]), L)[0, 1]

    ours = corr(DATA_CONSTRAINED.predict(M, N=N, D=D, U=U))
    assert ours > 0.8
    assert ours > corr(CHINCHILLA.predict(M, N=N, D=D)) + 0.1
    assert ours > corr(CHINCHILLA.predict(M, N=N, D=U))


def test_data_constrained_form_is_fittable():
    """ls.fit recovers the published constants from noiseless points of the form."""
    import lmscale as ls

    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), 60))
    U = np.exp(rng.uniform(np.log(1e8), np.log(1e11), 60))
    D = U * np.exp(rng.uniform(0.0, np.log(200.0), 60))
    L = DATA_CONSTRAINED.predict(M, N=N, D=D, U=U)
    fit = ls.fit(pd.DataFrame({"N": N, "D": D, "U": U, "loss": L}), law="data_constrained", n_refine=2)
    assert fit.params == pytest.approx(M, rel=1e-4)
