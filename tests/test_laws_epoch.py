"""The [H] parametric fit on the Epoch AI digitisation of Chinchilla's figure 4."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmscale.laws as laws

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EPOCH = DATA / "epoch_chinchilla_svg_extracted_data.csv"
COLUMNS = {"N": "Model Size", "C": "Training FLOP"}

pytestmark = pytest.mark.skipif(not EPOCH.exists(), reason="../shared/data is not beside the checkout")


@pytest.fixture(scope="module")
def frame():
    return pd.read_csv(EPOCH)


@pytest.fixture(scope="module")
def published():
    return json.loads((DATA / "published_constants.json").read_text())["besiroglu2024_epoch"]


@pytest.fixture(scope="module")
def fit240(frame):
    return laws.fit(frame, law="chinchilla", columns=COLUMNS, drop_highest_loss=5)


def test_reproduces_published_refit(fit240, published):
    assert fit240.n_points == 240
    assert any("D = C / (6 N)" in d for d in fit240.notes["derived"])
    for ref in (published["fit_mle_excluding_5_highest_loss"], published["replicate_exact_sum_huber"]):
        for p in ("E", "alpha", "beta"):
            assert fit240.params[p] == pytest.approx(ref[p], abs=0.01)
        for p in ("A", "B"):
            assert fit240.params[p] == pytest.approx(ref[p], rel=0.15)


def test_sum_reduction_reproduces_exact_replication_closely(fit240, published):
    ref = published["replicate_exact_sum_huber"]
    assert fit240.params["E"] == pytest.approx(ref["E"], abs=1e-3)
    assert fit240.params["alpha"] == pytest.approx(ref["alpha"], abs=1e-3)
    assert fit240.params["beta"] == pytest.approx(ref["beta"], abs=1e-3)
    assert fit240.params["A"] == pytest.approx(ref["A"], rel=0.01)
    assert fit240.params["B"] == pytest.approx(ref["B"], rel=0.01)


def test_mean_reduction_reaches_the_same_optimum(frame, fit240):
    mean = laws.fit(frame, law="chinchilla", columns=COLUMNS, drop_highest_loss=5, reduction="mean")
    assert mean.stats["objective"] * 240 == pytest.approx(fit240.stats["objective"], rel=1e-4)
    for p in ("E", "alpha", "beta"):
        assert mean.params[p] == pytest.approx(fit240.params[p], abs=2e-3)


def test_objective_is_a_minimum(frame, fit240):
    """No point near the fit has a lower summed Huber loss (an independent evaluation)."""
    df = frame.sort_values("loss").iloc[:-5]
    N = df["Model Size"].to_numpy()
    D = df["Training FLOP"].to_numpy() / (6 * N)
    logy = np.log(df["loss"].to_numpy())

    def huber_sum(p):
        pred = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]
        r = np.log(pred) - logy
        return np.sum(np.where(np.abs(r) <= 1e-3, 0.5 * r**2, 1e-3 * (np.abs(r) - 5e-4)))

    best = huber_sum(fit240.params)
    assert best == pytest.approx(fit240.stats["objective"], rel=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = {k: v * (1 + 1e-3 * rng.standard_normal()) for k, v in fit240.params.items()}
        assert huber_sum(p) >= best * (1 - 1e-9)


def test_goodness_of_fit_and_json_round_trip(fit240):
    assert fit240.stats["rmse_log"] < 0.02
    assert 0.98 < fit240.stats["r2_log"] <= 1
    back = laws.FitResult.from_json(fit240.to_json())
    assert back.params == pytest.approx(fit240.params)
    assert back.predict(N=1e9, D=2e10) == pytest.approx(fit240.predict(N=1e9, D=2e10))


@pytest.mark.slow
def test_1000_bootstraps_overlap_published_intervals(frame, published):
    fit = laws.fit(frame, law="chinchilla", columns=COLUMNS, drop_highest_loss=5, bootstrap=1000, seed=1)
    assert fit.stats["bootstrap_failed"] == 0
    assert len(fit.bootstrap_params) == 1000
    for p in fit.form.params:
        lo, hi = published["bootstrap_95CI"][p]
        mine_lo, mine_hi = fit.ci[p]
        assert mine_lo < fit.params[p] < mine_hi
        assert mine_lo <= hi and lo <= mine_hi, (p, fit.ci[p], (lo, hi))
        # and they are close to the published ones, not merely overlapping
        assert mine_lo == pytest.approx(lo, rel=0.15) and mine_hi == pytest.approx(hi, rel=0.15)
    lo, hi = fit.predict_interval(N=70e9, D=1.4e12)
    assert lo < fit.predict(N=70e9, D=1.4e12) < hi
