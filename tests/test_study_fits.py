"""fit_study on real runs: the OLMo model ladder (Apache-2.0, ../shared/data), 5 sizes x 6 budgets.

Checked against independent computations written out here: the convergence
rule D >= 5e3 N^0.74 ([K] eq. 4.4), an ordinary least-squares power law for
the held-out check, and the closed form a = beta / (alpha + beta) of [H]
approach 3.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import olmo_ladder_frames
from lmscale.laws.planner import plan
from lmscale.laws.result import LawSet
from lmscale.laws.study import StudyFrames, fit_study


@pytest.fixture(scope="module")
def ladder() -> StudyFrames:
    return olmo_ladder_frames("plain")


@pytest.fixture(scope="module")
def fits(ladder):
    return fit_study(ladder, bootstrap=0)


def test_laws_the_ladder_supports(fits):
    assert {"kaplan_n", "chinchilla", "kaplan_c", "kaplan_cmin"} <= set(fits.laws.laws)
    # no noise scale, no 'data' groups, no other distributions: said, not crashed
    assert "noise" in fits.missing["bcrit"]
    assert "'data' group" in fits.missing["kaplan_d"]
    assert "transfer" in fits.missing
    for key, fit in fits.laws.laws.items():
        assert fits.rules[key] and fit.notes["selection_rule"] == fits.rules[key]
        assert len(fits.points[key]) == fit.n_points
        assert fit.stats["r2"] > 0.8, (key, fit.stats["r2"])  # L(N) mixes budgets: 0.87


def test_size_sweep_uses_the_convergence_rule(ladder, fits):
    """[K] eq. 4.4 written out: a run is converged when D >= 5e3 N^0.74."""
    final = ladder.final_points
    expected = set(final.loc[final["D"] >= 5e3 * final["N"] ** 0.74, "run_id"])
    assert set(fits.points["kaplan_n"]["run_id"]) == expected
    assert 0 < len(expected) < len(final)
    assert "5e+03 N^0.74" in fits.rules["kaplan_n"] or "5000 N^0.74" in fits.rules["kaplan_n"]


def test_holdout_predicts_the_largest_model(fits):
    h = fits.holdout
    pts = fits.points["kaplan_n"]
    assert h.N == pts["N"].max()
    assert h.loss == pts.loc[pts["N"] == h.N, "loss"].min()
    train = pts[pts["N"] < h.N]
    assert h.n_fit == len(train)
    # an ordinary least-squares line in log-log on the same points predicts nearly the same
    slope, intercept = np.polyfit(np.log(train["N"]), np.log(train["loss"]), 1)
    ols = float(np.exp(intercept + slope * np.log(h.N)))
    assert h.predicted == pytest.approx(ols, rel=0.01)
    assert h.rel_error == pytest.approx((h.predicted - h.loss) / h.loss)
    assert abs(h.rel_error) < 0.05


def test_three_frontiers_and_the_allocation(fits):
    p = fits.laws.get("chinchilla").params
    parametric = fits.frontiers["parametric"]
    assert parametric.a == pytest.approx(p["beta"] / (p["alpha"] + p["beta"]), rel=1e-12)
    envelope = fits.frontiers["envelope"]
    assert 0.2 < envelope.a < 1.0
    rows = fits.exponents
    assert {r["published"] for r in rows.values()} >= {0.50, 0.46}
    # [K]'s frontier in C_min is the law set's allocation (table 6's convention), so the planner
    # and the [K] 6.3 crossing use it
    cmin = fits.frontiers["envelope_cmin"]
    alloc = fits.laws.extras["allocation"]
    assert alloc["method"] == "envelope_cmin" and alloc["C"].startswith("C_min")
    assert alloc["relations"]["N_opt"] == {"coef": pytest.approx(cmin.k_N), "exponent": pytest.approx(cmin.a)}
    # with the extent the planner's distance warning needs (and no draws: no bootstrap here)
    assert alloc["compute"] == "C_min" and "draws" not in alloc
    assert alloc["data_range"] == {"N_max": cmin.points["N_opt"].max(), "C_max": cmin.points["C"].max()}
    assert "isoflop" in fits.missing


def test_the_allocation_carries_the_frontiers_bootstrap_draws_to_the_plan(ladder):
    fits = fit_study(ladder, bootstrap=20, holdout=False)
    cmin, alloc = fits.frontiers["envelope_cmin"], fits.laws.extras["allocation"]
    samples = np.asarray(cmin.samples, dtype=float)
    finite = samples[np.isfinite(samples).all(axis=1)]
    assert len(finite) > 10 and np.array_equal(np.array(alloc["draws"]), finite)
    ident = alloc["identification"]
    lo_a, hi_a = cmin.ci["a"]
    assert ident["identified"] is ((hi_a - lo_a) < 0.5 * cmin.a)
    # the [H] form these runs do not identify gives way to the frontier, when its exponent is identified
    assert fits.laws.laws["chinchilla"].identified is False and ident["identified"] is True
    p = plan(fits.laws, compute=1e21)
    assert p.N_opt == pytest.approx(float(cmin.n_opt(1e21)), rel=1e-9) and "not chinchilla" in p.method["N_opt"]
    lo, hi = p.intervals["levels"]["95"]["N_opt"]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(finite[:, 1] * 1e21 ** finite[:, 0], [2.5, 97.5])))
    assert lo < p.N_opt < hi


def test_fits_json_round_trip_and_plan(fits, tmp_path):
    path = tmp_path / "fits.json"
    fits.laws.to_json(path)
    data = json.loads(path.read_text())
    assert data["kind"] == "lawset" and set(data["laws"]) == set(fits.laws.laws)
    again = LawSet.from_json(path)
    for key, fit in fits.laws.laws.items():
        assert again.laws[key].params == pytest.approx(fit.params)
    result = plan(str(path), compute=1e21)
    # fitted without bootstrap, the frontier is not known to be identified: the [H] form is planned from
    assert fits.laws.extras["allocation"]["identification"]["identified"] is False
    assert result.N_opt == pytest.approx(float(fits.frontiers["parametric"].n_opt(1e21)), rel=1e-6)


def test_a_final_points_table_alone(ladder):
    """Another lab's N, D, loss table: L(N) and [H] are fitted, the curve laws are listed as missing."""
    fits = fit_study(ladder.final_points[["run_id", "N", "D", "C", "loss"]], bootstrap=0, holdout=False)
    assert {"kaplan_n", "chinchilla"} <= set(fits.laws.laws)
    assert "learning curves" in fits.missing["envelope"]
    assert fits.holdout is None


def test_collapsed_offset_is_not_reported_as_a_fit():
    """L(t) = L_inf + (t_0/t)^alpha on points with no irreducible term: L_inf -> 0 is flagged."""
    import pandas as pd

    from lmscale.laws.api import fit
    from lmscale.laws.study import collapsed_offset

    t = np.arange(1, 65, dtype=float)
    pure = pd.DataFrame({"t": t, "loss": 6.0 * t**-0.1})  # no irreducible term at all
    offset = pd.DataFrame({"t": t, "loss": 3.0 + (4.0 / t) ** 0.6})
    degenerate = fit(pure, law="position")
    assert degenerate.params["L_inf"] < 1e-3 * pure["loss"].min()
    reason = collapsed_offset(degenerate, pure)
    assert reason and "L_inf" in reason and "t_0" in reason
    good = fit(offset, law="position")  # a genuine offset: recovered and kept
    assert good.params["L_inf"] == pytest.approx(3.0, rel=1e-3)
    assert good.params["alpha_t"] == pytest.approx(0.6, rel=1e-2)
    assert collapsed_offset(good, offset) is None
    assert collapsed_offset(fit(offset.rename(columns={"t": "N"}), law="kaplan_n"), offset) is None


def test_bcrit_agreement_judges_only_levels_the_sweep_determines():
    """Levels whose own 95% interval is wider than 2x are reported but do not decide the verdict."""
    import pandas as pd

    from lmscale.laws import fit
    from lmscale.laws.study.batch import bcrit_agreement
    from lmscale.laws.study.results import StudyFits

    L = np.linspace(3.5, 5.0, 12)
    noise = pd.DataFrame({"L": L, "B": 2e5 * L**-4.0, "run_id": np.repeat(["a", "b"], 6)})
    levels = np.array([3.8, 4.1, 4.4, 4.7])
    truth = 2e5 * levels**-4.0
    fits = StudyFits(laws=LawSet("b"))
    fits.add("bcrit", fit(noise, law="bcrit"), noise, "noise")

    def agreement(se_log_of_outlier: float) -> dict:
        emp = pd.DataFrame({"L": levels, "B": truth * np.array([1.2, 0.8, 1.1, 3.0]),
                            "se_log": [0.1, 0.1, 0.1, se_log_of_outlier]})
        fits.points["bcrit_empirical"] = emp
        return bcrit_agreement(fits)

    loose = agreement(0.5)  # x/2.7 at 95%: says nothing about a factor 2
    assert loose["within_2x"] and loose["levels"] == 3
    assert loose["ratio_max"] == pytest.approx(1.2, rel=1e-3) and loose["ratio_median"] == pytest.approx(1.1, rel=1e-3)
    (out,) = loose["left_out"]
    assert out["ratio"] == pytest.approx(3.0, rel=1e-3) and out["factor"] == pytest.approx(np.exp(1.96 * 0.5))
    tight = agreement(0.1)  # the same 3x, now measured to x/1.2: a real disagreement
    assert not tight["within_2x"] and tight["levels"] == 4 and not tight["left_out"]


def test_bcrit_scatter_splits_the_scatter_into_the_estimates_errors_and_the_rest():
    """Estimates scattered by their stated errors alone: R^2 could reach 1; a systematic offset of
    half the windows (by 2 s in ln B) lowers the ceiling to the closed form 1 - s^2 / var(ln B)."""
    import pandas as pd

    from lmscale.laws import fit
    from lmscale.laws.study.batch import bcrit_scatter
    from lmscale.laws.study.results import StudyFits

    rng = np.random.default_rng(0)
    n, rel = 4000, 0.3
    L = np.geomspace(3.0, 5.0, n)
    truth = 2e5 * L**-4.0

    def scatter(offset: np.ndarray) -> dict:
        B = truth * np.exp(offset + rel * rng.standard_normal(n))
        pts = pd.DataFrame({"L": L, "B": B, "noise_scale_se": rel * B, "run_id": np.arange(n) % 40})
        fits = StudyFits(laws=LawSet("b"))
        fits.add("bcrit", fit(pts, law="bcrit"), pts, "noise")
        return bcrit_scatter(fits), np.var(np.log(B))

    pure, _ = scatter(np.zeros(n))
    assert pure["explained_share"] == pytest.approx(1.0, abs=0.05)
    assert pure["r2_ceiling"] == pytest.approx(1.0, abs=0.01) and pure["r2"] < 0.9
    s = 0.2
    shifted, var_log = scatter(np.where(np.arange(n) % 2 == 0, s, -s))
    assert shifted["excess_var"] == pytest.approx(s**2, rel=0.1)
    assert shifted["r2_ceiling"] == pytest.approx(1.0 - s**2 / var_log, abs=0.01)
    assert shifted["explained_share"] == pytest.approx(rel**2 / (rel**2 + s**2), abs=0.05)


def _hoffmann_grid(rng):
    """Single-pass runs over 3 budgets x 5 sizes of a known [H] law, and 4 shape variants at one N and D."""
    import pandas as pd

    true = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.35, "beta": 0.3}
    rows = []
    for c in (1e15, 1e16, 1e17):
        for n in np.geomspace(1e6, 1e8, 5) * (c / 1e16) ** 0.5:
            d = c / (6 * n)
            loss = true["E"] + true["A"] / n ** true["alpha"] + true["B"] / d ** true["beta"]
            rows.append({"group": "isoflop", "rule": "isoflop", "N": n, "D": d, "loss": loss * (1 + 1e-3 * rng.standard_normal())})
    for i, shift in enumerate((0.0, 0.03, 0.06, 0.09)):  # depth and head variants at one size move the loss
        rows.append({"group": "shape", "rule": "plain", "N": 1e7 * (1 + 0.01 * i), "D": 2e8, "loss": 3.0 * (1 + shift)})
    runs = pd.DataFrame(rows).assign(run_id=lambda f: [f"r{i}" for i in range(len(f))], status="finished",
                                     architecture="transformer", batch_tokens=2048)
    runs["tokens"] = runs["D"]
    runs["C"] = 6 * runs["N"] * runs["D"]
    return true, StudyFrames(final_points=runs, runs=runs)


def test_parametric_fit_leaves_out_a_group_at_one_size():
    """Shape variants at one N and D say nothing of N or D: the [H] fit leaves their group out
    and recovers the law the grid was drawn from."""
    from lmscale.laws.api import fit
    from lmscale.laws.study.size_data import select_parametric

    true, frames = _hoffmann_grid(np.random.default_rng(0))
    pts, rule = select_parametric(frames, None)
    assert set(pts["group"]) == {"isoflop"} and len(pts) == 15
    assert "'shape' left out" in rule
    fitted = fit(pts[["N", "D", "loss"]], law="chinchilla").params
    assert fitted["alpha"] == pytest.approx(true["alpha"], rel=0.1)
    assert fitted["beta"] == pytest.approx(true["beta"], rel=0.1)


def test_approach_3_is_judged_on_the_interval_of_its_own_exponent():
    """a = beta / (alpha + beta) is judged by its bootstrap interval, as every exponent is: an [H]
    form whose E wanders over decades can still fix a; one whose exponents wander cannot."""
    from lmscale.laws.frontier import parametric_frontier
    from lmscale.laws.result import FitResult
    from lmscale.laws.study.compute import exponent_verdict
    from lmscale.laws.study.results import StudyFits

    rng = np.random.default_rng(1)
    params = {"E": 1.0, "A": 8.0, "B": 600.0, "alpha": 0.15, "beta": 0.45}
    n = 200
    E = 10.0 ** rng.uniform(-30, 0.2, n)  # E not identified
    alpha = 0.15 * np.exp(0.1 * rng.standard_normal(n))
    tight = np.column_stack([E, np.full(n, 8.0), np.full(n, 600.0), alpha, 3.0 * alpha * np.exp(0.02 * rng.standard_normal(n))])
    loose = tight.copy()
    loose[:, 4] = 0.45 * np.exp(0.8 * rng.standard_normal(n))
    verdicts = []
    for draws in (tight, loose):
        fit = FitResult(law="chinchilla", params=params, bootstrap_params=draws,
                        identification={"identified": False, "failures": ["E's interval spans 30 decades"]})
        fits = StudyFits(laws=LawSet(name="t", laws={"chinchilla": fit}))
        front = parametric_frontier(fit)
        assert front.a == pytest.approx(0.75)
        lo, hi = np.quantile(draws[:, 4] / (draws[:, 3] + draws[:, 4]), [0.025, 0.975])
        assert front.ci["a"] == pytest.approx((lo, hi), rel=0.02)
        verdicts.append(exponent_verdict(front, fits))
    assert verdicts[0]["identified"] is True and "not identified" in verdicts[0]["note"]
    assert verdicts[1]["identified"] is False and "a's 95% interval" in verdicts[1]["why"]


def test_the_approaches_intervals_are_intersected_in_c_only():
    from lmscale.laws.study.results import _common_interval

    rows = {"approach 1: envelope": {"ci": (0.62, 0.73), "compute": "C"},
            "approach 2: isoflop": {"ci": (0.59, 0.96), "compute": "C"},
            "approach 3: parametric": {"ci": (0.63, 0.90), "compute": "C"},
            "[K] table 6: envelope in C_min": {"ci": (0.10, 0.20), "compute": "C_min"}}
    assert _common_interval(rows) == (["1", "2", "3"], 0.63, 0.73)
    rows["approach 2: isoflop"] = {"ci": (0.80, 0.96), "compute": "C"}
    names, lo, hi = _common_interval(rows)
    assert lo > hi  # no overlap: said, not hidden
    rows["approach 2: isoflop"]["identified"] = False
    rows["approach 3: parametric"]["identified"] = False
    assert _common_interval(rows) is None


def test_bcrit_uncertainty_is_carried_into_the_laws_it_converts(ladder):
    """L(C_min) is fitted in C_min = C / (1 + B / B_crit(L)): its interval must carry B_crit(L)'s.

    B_crit's replicates here are two laws two decades apart in B_*; the propagated
    interval of alpha_C_min covers the point fits under each (each computed
    independently with the public ``fit``), where the law's own bootstrap, at
    one B_crit, covers only its own."""
    from lmscale.laws.api import fit
    from lmscale.laws.frontier import envelope_frontier
    from lmscale.laws.result import FitResult
    from lmscale.laws.study.compute import (
        fit_frontiers,
        frontier_curves,
        select_cmin_envelope,
        with_cmin,
    )
    from lmscale.laws.study.propagation import propagate_bcrit
    from lmscale.laws.study.results import StudyFits

    laws = [{"B_star": 2e8, "alpha_B": 0.21}, {"B_star": 2e6, "alpha_B": 0.21}]  # [K] eq. 5.3, and 1/100 of it
    point_fits, frontier_a = [], []
    for params in laws:
        one = StudyFits(laws=LawSet("one"))
        one.laws.laws["bcrit"] = FitResult(law="bcrit", params=params)
        pts, _ = select_cmin_envelope(ladder, one)
        point_fits.append(fit(pts, law="kaplan_cmin").params["alpha_C_min"])
        curves, _ = with_cmin(frontier_curves(ladder), one)
        frontier_a.append(envelope_frontier(curves, bootstrap=0, compute="C_min").a)
    assert abs(point_fits[1] - point_fits[0]) > 0.03 * point_fits[0]  # the conversion matters here

    study = StudyFits(laws=LawSet("study"))
    study.laws.laws["bcrit"] = FitResult(law="bcrit", params=laws[0], bootstrap_params=np.array(
        [[p["B_star"], p["alpha_B"]] for p in laws] * 10))
    pts, rule = select_cmin_envelope(ladder, study)
    study.add("kaplan_cmin", fit(pts, law="kaplan_cmin", bootstrap=40), pts, rule)
    own = study.laws.laws["kaplan_cmin"].ci["alpha_C_min"]
    fit_frontiers(ladder, study, bootstrap=40, seed=0)  # as fit_study finds them, with the study's B_crit
    entry = study.exponents["[K] table 6: envelope in C_min"]
    assert entry["a"] == pytest.approx(frontier_a[0], rel=1e-12)
    assert not own[0] <= point_fits[1] <= own[1]  # one B_crit: the other's fit lies outside

    propagate_bcrit(ladder, study, bootstrap=40, seed=0)
    law = study.laws.laws["kaplan_cmin"]
    lo, hi = law.ci["alpha_C_min"]
    assert lo <= min(point_fits) and max(point_fits) <= hi
    assert law.params["alpha_C_min"] == pytest.approx(point_fits[0], rel=1e-9)  # the point estimate stays
    assert len(law.bootstrap_params) == 40 and "B_crit(L)" in law.notes["bcrit_propagated"]
    assert law.identification["intervals"]["alpha_C_min"] == [lo, hi]  # judged on the propagated interval
    a_lo, a_hi = entry["ci"]  # the frontier in C_min ([K] table 6) likewise
    assert a_lo <= min(frontier_a) and max(frontier_a) <= a_hi
    front = study.frontiers["envelope_cmin"]
    assert tuple(entry["ci"]) == front.ci["a"] and len(front.samples) == 40 and "B_crit(L)" in entry["how"]


def test_a_propagated_verdict_at_the_edge_draws_more_bcrit_replicates(ladder, monkeypatch):
    """Where the verdict on B_crit(L)'s propagated replicates lands at the rule's edge, the law is
    refitted over EDGE_REPLICATES x as many of B_crit's replicates, the first ones unchanged."""
    from lmscale.laws import identification
    from lmscale.laws.api import fit
    from lmscale.laws.result import FitResult
    from lmscale.laws.study.compute import select_cmin_envelope
    from lmscale.laws.study.propagation import propagate_bcrit
    from lmscale.laws.study.results import StudyFits

    rng = np.random.default_rng(0)
    replicates = np.column_stack([2e8 * np.exp(rng.normal(0, 1, 100)), 0.21 + rng.normal(0, 0.02, 100)])

    def propagated() -> FitResult:
        study = StudyFits(laws=LawSet("study"))
        study.laws.laws["bcrit"] = FitResult(law="bcrit", params={"B_star": 2e8, "alpha_B": 0.21},
                                             bootstrap_params=replicates)
        pts, rule = select_cmin_envelope(ladder, study)
        study.add("kaplan_cmin", fit(pts, law="kaplan_cmin"), pts, rule)
        propagate_bcrit(ladder, study, bootstrap=40, seed=0)
        return study.laws.laws["kaplan_cmin"], study.rules["kaplan_cmin"]

    plain, plain_rule = propagated()
    assert len(plain.bootstrap_params) == 40 and "bootstrap_extended" not in plain.stats
    monkeypatch.setattr(identification, "EDGE_MARGIN", 1e9)  # every check counts as at the edge
    wide, rule = propagated()
    assert len(wide.bootstrap_params) == 160  # 80 of B_crit's replicates x 2 resamples
    assert "judged again over 80" in wide.stats["bootstrap_extended"]
    assert np.array_equal(wide.bootstrap_params[:40], plain.bootstrap_params)
    assert wide.identification["checks"]["replicates"] == 160
    assert rule.count("intervals over") == 1 and "over 80 replicates" in rule  # one note, for the final draws


def test_noise_scale_fit_keeps_only_fresh_data():
    """B_crit(L) ([K] eq. 5.3) from B_simple on fresh data: windows past the first pass of a
    repeated dataset (a 'data' run on 1e5 unique tokens) are left out, and the fit recovers
    the law the fresh-data windows follow exactly (B_* = 2e5, alpha_B = 1/4)."""
    import pandas as pd

    from lmscale.laws.api import fit
    from lmscale.laws.study.batch import select_critical_batch
    from lmscale.laws.study.results import StudyFits

    rows = []
    for run, (unique, steps) in {"a": (np.nan, 100), "b": (np.nan, 100), "c": (np.nan, 100),
                                 "rep": (1e5, 200)}.items():
        limit = np.inf if np.isnan(unique) else unique
        for step in range(20, steps + 1, 10):
            tokens = 1024.0 * step
            loss = 5.5 - 0.01 * step + (0.2 if run == "b" else 0.0)
            b = 2e5 * loss**-4.0 * (10.0 if tokens > limit else 1.0)  # repeated text: another noise scale
            rows.append({"run_id": run, "group": "data" if run == "rep" else "sizes",
                         "architecture": "transformer", "N": 1e4, "batch_tokens": 1024, "step": step,
                         "D": tokens, "loss": loss, "noise_scale": b, "noise_scale_se": 0.01 * b,
                         "noise_steps": 10})
    noise = pd.DataFrame(rows)
    final = pd.DataFrame({"run_id": ["a", "b", "c", "rep"], "status": "finished", "group": ["sizes"] * 3 + ["data"],
                          "architecture": "transformer", "N": 1e4, "dataset_tokens": [np.nan] * 3 + [1e5]})
    frames = StudyFrames(final_points=final, noise_scale=noise)
    pts, rule = select_critical_batch(frames, StudyFits(laws=LawSet("x")))
    rep = noise[(noise["run_id"] == "rep")]
    assert len(pts) == len(noise) - int((rep["D"] > 1e5).sum())  # every repeated-data window, no other
    assert pts[pts["run_id"] == "rep"]["D"].max() <= 1e5
    assert "fresh data" in rule and f"{int((rep['D'] > 1e5).sum())} estimates" in rule
    law = fit(pts, law="bcrit")
    assert law.params["alpha_B"] == pytest.approx(0.25, rel=1e-6)
    assert law.params["B_star"] == pytest.approx(2e5, rel=1e-5)


def test_a_window_reported_at_two_curve_points_counts_once():
    """A dense evaluation two steps before a window closes reports the same window (same estimate,
    same steps) as the closing point: B_crit(L) is fitted to it once, at the closing point. Windows
    that merely have as many steps as the one before (equal counts, other estimates) all count."""
    import pandas as pd

    from lmscale.laws.study.batch import closing_windows

    # run "a": windows of 3 and 6 steps close at 20 and 50; step 48 (a dense evaluation, no
    # measurement since) repeats the second window; run "b": one-measurement windows, all distinct
    noise = pd.DataFrame({
        "run_id": ["a"] * 6 + ["b"] * 3,
        "step": [10, 20, 30, 40, 48, 50, 8, 16, 24],
        "noise_steps": [2, 3, 2, 4, 6, 6, 1, 1, 1],
        "noise_scale": [900.0, 1000.0, 1500.0, 1700.0, 1800.0, 1800.0, 70.0, 80.0, 90.0],
    })
    kept = closing_windows(noise)
    assert kept["step"].tolist() == [20, 50, 8, 16, 24]
    assert kept["noise_scale"].tolist() == [1000.0, 1800.0, 70.0, 80.0, 90.0]
