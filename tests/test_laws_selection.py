"""Selection rules ([K]'s choice of points) and model selection by extrapolation."""

import numpy as np
import pandas as pd
import pytest

import lmscale.laws as laws
from lmscale.errors import LmscaleError
from lmscale.laws.extrapolation import select_law, supported_laws
from lmscale.laws.forms import get_form
from lmscale.laws.selection import (
    KAPLAN_BCRIT,
    cmin_envelope,
    converged_runs,
    largest_model_per_data,
)

H = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def runs_frame():
    N = np.array([1e6, 1e6, 1e7, 1e7, 1e8, 1e8, 1e9])
    D = np.array([1e8, 1e10, 1e8, 1e11, 1e8, 3e10, 1e10])
    status = ["finished", "finished", "early_stopped", "finished", "finished", "finished", "finished"]
    return pd.DataFrame({
        "run_id": [f"r{i}" for i in range(7)], "N": N, "D": D, "C": 6 * N * D,
        "loss": get_form("chinchilla").predict(H, N=N, D=D), "status": status,
    })


def test_converged_runs_rule():
    runs = runs_frame()
    out = converged_runs(runs)
    expected = (runs["D"] >= 5e3 * runs["N"] ** 0.74) | (runs["status"] == "early_stopped")
    assert list(out["run_id"]) == list(runs.loc[expected, "run_id"])
    assert "r2" in set(out["run_id"])  # early stopped, small D
    assert "r4" not in set(out["run_id"])  # 1e8 params on 1e8 tokens: far below 5e3 N^0.74
    note = out.attrs["selection"][-1]
    assert note["rule"] == "converged_runs" and note["kept"] == expected.sum()
    # stricter margin drops more; the note says so
    strict = converged_runs(runs, margin=10.0, statuses=())
    assert len(strict) < len(out) and "10" in strict.attrs["selection"][-1]["criterion"]


def test_converged_runs_reduces_curves_to_final_points():
    curves = pd.DataFrame({
        "run_id": ["a"] * 3 + ["b"] * 3, "N": [1e6] * 3 + [1e9] * 3, "step": [1, 2, 3] * 2,
        "tokens": [1e9, 2e9, 1e10, 1e9, 2e9, 1e10], "loss": [4, 3.5, 3.2, 3.9, 3.1, 2.6],
    })
    out = converged_runs(curves)
    assert list(out["run_id"]) == ["a"]  # 1e10 >= 5e3 * 1e6^0.74 = 1.4e8; b needs 2.3e10
    assert out["tokens"].iloc[0] == 1e10


def test_largest_model_per_data():
    runs = runs_frame()
    runs.loc[6, "D"] = 1.02e10  # same data size as r1 within 5%
    out = largest_model_per_data(runs)
    assert sorted(out["run_id"]) == ["r3", "r4", "r5", "r6"]  # D = 1e8 -> 1e8 params (r4), ...


def test_cmin_envelope_formula_and_envelope():
    rng = np.random.default_rng(0)
    rows = []
    for i, n in enumerate([1e6, 1e7, 1e8]):
        tokens = np.geomspace(1e7, 1e10, 20)
        loss = np.asarray(get_form("chinchilla").predict(H, N=n, D=tokens)) + 0.01 * rng.random(20)
        for t, lo in zip(tokens, loss):
            rows.append({"run_id": f"r{i}", "N": n, "tokens": t, "C": 6 * n * t, "loss": lo,
                         "batch_tokens": 2.0**19})
    curves = pd.DataFrame(rows)
    out = cmin_envelope(curves, bcrit="kaplan")
    # C_min of one point by hand ([K] eq. 5.5 with B_crit = 2e8 L^(-1/0.21))
    row = out.iloc[0]
    b_crit = KAPLAN_BCRIT["B_star"] / row["loss"] ** (1 / KAPLAN_BCRIT["alpha_B"])
    assert row["C_min"] == pytest.approx(row["C"] / (1 + 2.0**19 / b_crit))
    # envelope: each kept point beats every point of smaller C_min; each dropped one is dominated
    all_pts = curves.assign(C_min=[
        c / (1 + 2.0**19 / (2e8 / lo ** (1 / 0.21))) for c, lo in zip(curves["C"], curves["loss"])
    ])
    for _, r in out.iterrows():
        others = all_pts.drop(index=r.name)
        assert not ((others["C_min"] < r["C_min"]) & (others["loss"] <= r["loss"])).any()
    dropped = all_pts.loc[~all_pts.index.isin(out.index)]
    for _, r in dropped.iterrows():
        assert ((all_pts["C_min"] <= r["C_min"]) & (all_pts["loss"] <= r["loss"])
                & (all_pts.index != r.name)).any()
    assert out["loss"].is_monotonic_decreasing
    # measured noise scale is used where present
    measured = cmin_envelope(curves.assign(noise_scale=1e6), bcrit="noise_scale")
    r = measured.iloc[-1]
    assert r["C_min"] == pytest.approx(r["C"] / (1 + 2.0**19 / 1e6))


def test_selection_record_reaches_the_fit():
    N = np.geomspace(1e6, 1e10, 12)
    runs = pd.DataFrame({"N": N, "D": 1e12, "loss": (8.8e13 / N) ** 0.076, "status": "finished"})
    fit = laws.fit(converged_runs(runs), law="kaplan_n")
    assert fit.notes["selection"][0]["rule"] == "converged_runs"
    assert fit.params["alpha_N"] == pytest.approx(0.076, abs=1e-4)


def test_cmin_envelope_needs_batch():
    with pytest.raises(LmscaleError, match="batch_tokens"):
        cmin_envelope(pd.DataFrame({"C": [1.0], "loss": [2.0]}))


def test_select_law_prefers_the_true_form():
    rng = np.random.default_rng(1)
    N = 10 ** rng.uniform(6, 9.5, 120)
    D = 10 ** rng.uniform(8, 11.5, 120)
    frame = pd.DataFrame({"N": N, "D": D, "loss": np.asarray(get_form("chinchilla").predict(H, N=N, D=D))
                          * np.exp(0.003 * rng.standard_normal(120))})
    assert {"chinchilla", "kaplan_nd", "kaplan_n", "kaplan_d", "kaplan_c"} <= set(supported_laws(frame))
    fit = select_law(frame, holdout=0.2, candidates=["chinchilla", "kaplan_nd", "kaplan_n", "kaplan_c"])
    sel = fit.stats["selection"]
    assert fit.law == "chinchilla" and sel["chosen"]["law"] == "chinchilla"
    assert sel["error"] == sel["candidates"][0]["error"] < 0.01
    worst = {row["law"]: row["error"] for row in sel["candidates"]}
    assert worst["kaplan_n"] > 5 * sel["error"]
    # the same through ls.fit
    again = laws.fit(frame, select="extrapolation", candidates=["chinchilla", "kaplan_n"])
    assert again.law == "chinchilla"


def test_extrapolation_check_reports_held_out_error():
    rng = np.random.default_rng(2)
    N = 10 ** rng.uniform(6, 9.5, 80)
    D = 10 ** rng.uniform(8, 11.5, 80)
    y = np.asarray(get_form("chinchilla").predict(H, N=N, D=D))
    fit = laws.fit(pd.DataFrame({"N": N, "D": D, "loss": y}), law="chinchilla", holdout=10)
    ex = fit.stats["extrapolation"]
    assert ex["held_out_rows"] == 10 and ex["train_rows"] == 70 and ex["by"] == "compute 6 N D"
    assert ex["threshold"] == pytest.approx(np.sort(6 * N * D)[-10])
    assert ex["mean_abs_rel_error"] < 1e-4  # noise-free: the law extrapolates exactly
