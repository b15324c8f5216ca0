"""How the laws are drawn from a study's runs: one test per corrected selection or computation.

Synthetic studies whose losses follow the [H] form exactly, so every
expected value is a closed form: the envelope's record, C_min = C / (1 + B /
B_crit), the reference batch, early stopping, the FLOP accounting, the
crossing's interval, and the overfitting law at large arguments.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from lmscale.accounting import PF_DAY
from lmscale.errors import LmscaleError
from lmscale.laws import catalog
from lmscale.laws.contradiction import crossing
from lmscale.laws.forms import OVERFITTING, get_form, overfitting
from lmscale.laws.frontier import envelope_frontier, fit_power_law, parametric_frontier
from lmscale.laws.planner import allocation_relation, power_allocation
from lmscale.laws.result import FitResult, LawSet
from lmscale.laws.study import StudyFrames, fit_study
from lmscale.laws.study.size_data import select_data_sweep, select_parametric, select_size_sweep

E, A, ALPHA, B, BETA = 1.7, 40.0, 0.34, 400.0, 0.4


def loss_of(N, D):
    return E + A / np.asarray(N, float) ** ALPHA + B / np.asarray(D, float) ** BETA


def curve(run_id, N, tokens, batch=2048, group="sizes", rule="converge", noise=None, points=14, **extra):
    D = np.geomspace(batch, tokens, points)
    frame = pd.DataFrame({
        "run_id": run_id, "group": group, "rule": rule, "architecture": "transformer", "N": float(N),
        "step": np.round(D / batch).astype(int), "D": D, "C": 6.0 * N * D, "C_exact": 9.0 * N * D,
        "loss": loss_of(N, D), "batch_tokens": batch, "lr": 1e-3, "noise_scale": noise,
    })
    return frame.assign(**extra)


def final_of(curves, status="finished", dataset=None, loss_shift=0.0):
    last = curves.iloc[-1]
    return {"run_id": last["run_id"], "group": last["group"], "rule": last["rule"], "status": status,
            "architecture": "transformer", "N": last["N"], "D": min(last["D"], dataset or np.inf),
            "tokens": last["D"], "C": last["C"], "C_exact": last["C_exact"], "loss": last["loss"] + loss_shift,
            "best_test_loss": last["loss"] + loss_shift, "batch_tokens": last["batch_tokens"],
            "dataset_tokens": dataset, "n_layer": 2, "d_model": 8, "n_head": 2, "d_ff": 32}


def study(batch_sweep=True, data_status="early_stopped", sizes_tokens_per_param=40.0):
    """Sizes (converge), data (early-stopped), isoflop and a batch sweep at B = 512 that is 0.4 worse."""
    curves, finals = [], []
    for n in (1e3, 3e3, 1e4, 3e4, 1e5, 3e5):
        c = curve(f"s{n:.0f}", n, max(2e5, sizes_tokens_per_param * n), noise=512.0)
        curves.append(c)
        finals.append(final_of(c, "early_stopped" if n < 3e4 else "finished"))
    for d in (1e4, 3e4, 1e5, 3e5, 1e6):
        for n in (3e4, 1e5, 3e5):
            c = curve(f"d{n:.0f}-{d:.0f}", n, d, group="data", rule="data", noise=512.0)
            curves.append(c)
            finals.append(final_of(c, data_status, dataset=d))
    for budget in (1e11, 4e11, 1.6e12):
        for n in np.geomspace(budget / 6 / 1e7, budget / 6 / 1e5, 5):
            c = curve(f"i{budget:.0g}-{n:.0f}", n, budget / (6 * n), group="isoflop", rule="isoflop")
            curves.append(c)
            finals.append(final_of(c))
    if batch_sweep:
        for n in (1e4, 1e5):
            for d in (1e5, 1e6, 1e7):
                c = curve(f"b{n:.0f}-{d:.0f}", n, d, batch=512, group="batch", rule="plain")
                c["loss"] += 0.4
                curves.append(c)
                finals.append(final_of(c))
    curves = pd.concat(curves, ignore_index=True)
    noise = curves.dropna(subset=["noise_scale"]).assign(noise_steps=0)
    return StudyFrames(final_points=pd.DataFrame(finals), curves=curves, noise_scale=noise)


@pytest.fixture(scope="module")
def fits():
    return fit_study(study(), bootstrap=20)


def test_envelope_winner_changes_only_where_a_larger_model_overtakes():
    # a small model whose run ends while it is still the best; a larger one overtakes the loss it
    # reached only later; a third, larger still, covers the same compute from further behind
    # (a tiny run before them all: the smallest size trained, whose wins are censored)
    tiny = curve("tiny", 1e2, 1e5, points=30)
    small = curve("small", 1e3, 1e6, points=30)
    mid = curve("mid", 1e4, 1e7, points=30)
    big = curve("big", 1e5, 1e6, points=30)
    front = envelope_frontier(pd.concat([tiny, small, mid, big]), bootstrap=0)
    pts = front.points
    assert np.all(np.diff(pts["loss"]) <= 1e-12)  # the record only falls
    end = small["loss"].iloc[-1]
    taken = pts[pts["N_opt"] == 1e4]
    assert len(taken) and np.all(taken["loss"] <= end + 1e-12)  # mid wins only once below small's end
    assert pts[pts["N_opt"] == 1e3]["C"].max() <= small["C"].max()  # a run counts where it has data


def test_frontier_and_crossing_are_in_c_min(fits):
    # B_crit = 512 (the noise scale of every point) at B = 2048: C_min = C / 5 ([K] eq. 5.5)
    front = fits.frontiers["envelope_cmin"]
    alloc = fits.laws.extras["allocation"]
    assert alloc["method"] == "envelope_cmin" and alloc["C"].startswith("C_min")
    pts = front.points[~front.points["censored"]]  # the optimum is known only between the sizes
    k_d, b = fit_power_law(pts["C"], pts["C"] / (6.0 * pts["N_opt"]))
    assert alloc["relations"]["D_opt"] == {"coef": pytest.approx(k_d), "exponent": pytest.approx(b)}
    cmin_pts = fits.points["kaplan_cmin"]
    ratio = cmin_pts["C"] / cmin_pts["C_min"]
    assert np.allclose(ratio[cmin_pts["batch_tokens"] == 2048], 5.0)
    # the relation the [K] 6.3 crossing evaluates at C_min is that D_opt(C_min)
    x = float(pts["C"].median())
    assert float(allocation_relation(fits.laws, "D_opt", x)) == pytest.approx(k_d * x**b, rel=1e-9)


def test_fixed_batch_laws_use_the_reference_batch(fits):
    # the batch sweep's B = 512 runs are 0.4 nats worse at equal N and D: kept out of L(C) and the [H] form
    pts, _ = select_parametric(study(batch_sweep=True), None)
    assert set(pts["batch_tokens"]) == {2048}
    assert set(fits.points["chinchilla"]["batch_tokens"]) == {2048}
    assert fits.frontiers["envelope"].notes["batch_tokens"] == 2048
    assert "at other batch sizes left out" in fits.rules["chinchilla"]
    assert len(pts) == 15  # the isoflop runs only
    # the [H] fit recovers the generating form on them
    assert fits.laws.laws["chinchilla"].params["alpha"] == pytest.approx(ALPHA, rel=0.05)


def test_failed_bootstrap_replicates_are_counted_not_fatal():
    params = {"E": E, "A": A, "B": B, "alpha": ALPHA, "beta": BETA}
    rng = np.random.default_rng(0)
    samples = np.array([[E, A, B, ALPHA, BETA]] * 20) * (1 + 0.01 * rng.standard_normal((20, 5)))
    samples[3, 3] = -0.014  # one replicate with alpha <= 0: no allocation
    fit = FitResult("chinchilla", params, bootstrap_params=samples)
    front = parametric_frontier(fit)
    assert front.notes["bootstrap_failed"] == 1 and front.notes["bootstrap_used"] == 19
    assert front.a == pytest.approx(BETA / (ALPHA + BETA))
    lo, hi = front.ci["a"]
    assert lo < front.a < hi


def test_l_of_d_uses_only_runs_that_early_stopped():
    pts, rule = select_data_sweep(study(), None)
    assert set(pts["N"]) == {3e5} and len(pts) == 5
    with pytest.raises(LmscaleError, match="finished their epochs still improving"):
        select_data_sweep(study(data_status="finished"), None)


def test_l_of_n_uses_only_converged_runs():
    pts, rule = select_size_sweep(study(batch_sweep=False, sizes_tokens_per_param=8.0), None)
    # early-stopped (N < 3e4) or >= 20 tokens per parameter; at 8 tokens/param the rest are left out
    assert sorted(pts["N"]) == [1e3, 3e3, 1e4] and "3 left out, not converged" in rule


def test_l_of_n_leaves_out_the_batch_sweep_away_from_the_reference_batch():
    # the B = 512 run at N = 1e4 on 1e7 tokens passes [K] eq. 4.4 (D >= 5e3 N^0.74) but is 0.4 nats
    # worse at its N for its batch (a constant-rate schedule in kaplan-cpu's sweep)
    frames = study(batch_sweep=True)
    sweep = frames.final_points[frames.final_points["group"] == "batch"]
    assert (sweep["D"] >= 5e3 * sweep["N"] ** 0.74).any()
    pts, rule = select_size_sweep(frames, None)
    assert set(pts["batch_tokens"]) == {2048} and set(pts["group"]) == {"sizes"}
    assert "at the reference batch of 2048 tokens (6 run(s) of a batch sweep at other batch sizes left out)" in rule


def test_l_of_n_takes_the_better_learning_rate_at_each_size():
    # every size at two peak rates (two seeds at the better one), the lower rate 3% worse (too low
    # for the short run): L(N) from the better runs is the law exactly
    base = study(batch_sweep=False)
    curves, finals = [base.curves], [base.final_points]
    for n in (1e3, 3e3, 1e4, 3e4, 1e5, 3e5):
        for run_id, lr, worse in ((f"s{n:.0f}-seed1", 1e-3, 0.0), (f"s{n:.0f}-low", 5e-4, 0.03)):
            stopped = run_id == "s1000-low"  # early-stopped short of the budget: still an alternative
            c = curve(run_id, n, (30.0 if stopped else 40.0) * n, lr=lr, noise=512.0)
            c["loss"] *= 1.0 + worse
            curves.append(c)
            finals.append(pd.DataFrame([final_of(c, "early_stopped" if n < 3e4 else "finished")]))
    final = pd.concat(finals, ignore_index=True)
    runs = pd.DataFrame({"run_id": final["run_id"], "budget_tokens": 40.0 * final["N"]})
    frames = StudyFrames(final_points=final, curves=pd.concat(curves, ignore_index=True), runs=runs)
    pts, rule = select_size_sweep(frames, None)
    assert len(pts) == 12 and not pts["run_id"].str.endswith("-low").any()  # both seeds at the better rate
    assert "at 6 size(s) trained at 2 learning rates" in rule and "(6 run(s) at the others left out)" in rule
    np.testing.assert_allclose(pts["loss"], loss_of(pts["N"], pts["tokens"]), rtol=1e-12)
    # the rate is chosen per size: at N >= 1e5 the lower rate 1% better than the other, and kept
    low_better = frames.final_points.assign(loss=lambda f: f["loss"] * np.where(
        f["run_id"].str.endswith("-low") & (f["N"] >= 1e5), 0.99 / 1.03, 1.0))
    pts, _ = select_size_sweep(replace(frames, final_points=low_better), None)
    assert sorted(pts.loc[pts["run_id"].str.endswith("-low"), "N"]) == [1e5, 3e5]
    # a single rate per size (the plain study) is left as it is
    pts, rule = select_size_sweep(base, None)
    assert len(pts) == 6 and "learning rates" not in rule


def test_accounting_switch():
    frames = study(batch_sweep=False)
    exact = fit_study(frames, bootstrap=0, flops="exact", compare=False, holdout=False)
    plain = fit_study(frames, bootstrap=0, compare=True, holdout=False)
    # C_exact = 1.5 x 6N here: the same exponent, C_c 1.5x larger
    assert exact.laws.laws["kaplan_c"].params["alpha_C"] == pytest.approx(
        plain.laws.laws["kaplan_c"].params["alpha_C"], rel=1e-4)
    assert exact.laws.laws["kaplan_c"].params["C_c"] == pytest.approx(
        1.5 * plain.laws.laws["kaplan_c"].params["C_c"], rel=1e-3)
    assert exact.flops == "exact" and "table 1" in exact.accounting["C"]
    other = plain.checks["other_accounting"]
    assert other["flops"] == "exact" and other["values"]["kaplan_c"]["other"] == pytest.approx(
        exact.laws.laws["kaplan_c"].params["alpha_C"])
    with pytest.raises(LmscaleError, match="flops"):
        fit_study(frames, flops="5N")


def _crossing_laws(rng, n=40):
    """[K]'s L(C_min), L(D) and table 6's D_opt = k C^b (C in FLOPs), with bootstrap-like samples."""
    paper = catalog.load("kaplan2020")
    cmin = tuple(paper.laws["kaplan_cmin"].params.values())
    data = tuple(paper.laws["kaplan_d"].params.values())
    d_opt = (2e10 * PF_DAY**-0.27, 0.27)

    def law(name, params, sd):
        samples = np.array(params) * np.exp(sd * rng.standard_normal((n, 2)))
        return FitResult(name, dict(zip(get_form(name).params, params)), bootstrap_params=samples)

    laws = LawSet("k", laws={"kaplan_cmin": law("kaplan_cmin", cmin, 0.02),
                             "kaplan_d": law("kaplan_d", data, 0.02)},
                  extras={"allocation": power_allocation(N_opt=(1.0, 0.73), D_opt=d_opt)})
    samples = np.array(d_opt) * np.exp(0.02 * rng.standard_normal((n, 2)))
    return laws, samples


def test_crossing_has_an_interval_and_says_how_far_beyond_the_data():
    laws, samples = _crossing_laws(np.random.default_rng(1))
    point = crossing(laws)
    cross = crossing(laws, d_opt_samples=samples, data_max=1e20)
    assert cross.C_star == pytest.approx(point.C_star)
    assert cross.C_star / PF_DAY == pytest.approx(1.1e4, rel=0.3)  # science.md: C* ~ 1.1e4 PF-days
    lo, hi = cross.ci["C_star"]
    assert lo < cross.C_star < hi and cross.n_replicates == 40
    # the interval recomputed replicate by replicate through the public API
    one_by_one = [crossing(LawSet(f"r{i}", laws={
        k: FitResult(k, dict(zip(get_form(k).params, laws.laws[k].bootstrap_params[i])))
        for k in ("kaplan_cmin", "kaplan_d")},
        extras={"allocation": power_allocation(N_opt=(1.0, 0.73), D_opt=tuple(samples[i]))})).C_star
        for i in range(40)]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(one_by_one, [2.5, 97.5])), rel=1e-9)
    assert cross.decades_beyond == pytest.approx(np.log10(cross.C_star / 1e20)) and cross.beyond_data
    assert cross.to_dict()["beyond_data"] is True


def test_holdout_prediction_has_an_interval(fits):
    h = fits.holdout
    lo, hi = h.predicted_ci
    assert lo <= h.predicted <= hi


def test_overfitting_law_does_not_overflow():
    p = {"N_c": 1e13, "D_c": 1e13, "alpha_N": 0.076, "alpha_D": 0.1}
    # r = (alpha_N/alpha_D) ln(N/N_c) + ln(D_c/D) ~ 740 at D = 1e-308
    with np.errstate(over="raise"):
        ratio = float(OVERFITTING.predict(p, N=1e13, D=1e-308))
    r = np.log(1e13) - np.log(1e-308)
    assert np.isfinite(ratio) and np.log(ratio) == pytest.approx(0.1 * r, rel=1e-12)
    assert float(overfitting(p, N=1e9, D=1e12)) == pytest.approx(
        (1 + (1e9 / 1e13) ** 0.76 * 1e13 / 1e12) ** 0.1 - 1, rel=1e-12)


def test_an_unidentified_crossing_prints_its_width_and_no_value():
    """C* whose interval spans more than the rule's 2 decades: the check line names the width
    and what would narrow it, and prints neither C* nor its interval."""
    from lmscale.laws.study.results import StudyFits

    laws, samples = _crossing_laws(np.random.default_rng(1))
    cross = crossing(laws, d_opt_samples=samples * np.exp(np.random.default_rng(2).normal(0, 3, samples.shape)),
                     data_max=1e20)
    assert cross.identification() is not None  # the widened replicates put C* over many decades
    fits = StudyFits(laws=laws)
    fits.crossing = cross
    line = next(x for x in fits.check_lines() if x.startswith("[K] 6.3 crossing"))
    decades = np.log10(cross.ci["C_star"][1] / cross.ci["C_star"][0])
    assert line.startswith("[K] 6.3 crossing: C* not identified") and f"spans {decades:.1f} decades" in line
    assert f"{cross.C_star:.2g}" not in line and "e+" not in line


def test_other_architectures_are_compared_with_l_of_n_only_where_trained_alike():
    """An LSTM cut off before the L(N) runs' tokens (not early-stopped) is flagged: its gap is partly
    its shorter training; one that early-stopped, or saw the same tokens, is compared as it is."""
    frames = study(batch_sweep=False)
    ref_tokens = 40.0 * 3e4  # the sizes group's run at N = 3e4 (40 tokens per parameter)
    lstm = [("alike", 3e4, ref_tokens, "finished", 1.03), ("short", 1e4, 1e5, "finished", 1.08),
            ("stopped", 1e4, 1e5, "early_stopped", 0.98), ("large", 3e6, 1.2e8, "finished", 1.0)]
    rows = [{**final_of(curve(run, n, t), status), "architecture": "lstm",
             "loss": float(loss_of(n, t)) * k} for run, n, t, status, k in lstm]
    frames = replace(frames, final_points=pd.concat([frames.final_points, pd.DataFrame(rows)],
                                                    ignore_index=True))
    out = fit_study(frames, bootstrap=0)
    arch = out.checks["architectures"]
    assert arch["reference_tokens"] == pytest.approx(np.median(out.points["kaplan_n"]["tokens"]))
    law = out.laws.laws["kaplan_n"]
    by_n = {(r["N"], r["early_stopped"]): r for r in arch["runs"]}
    for run, n, t, status, k in lstm:
        r = by_n[(n, status == "early_stopped")]
        assert r["ratio"] == pytest.approx(float(loss_of(n, t)) * k / float(law.predict(N=n)) - 1.0)
        assert r["equal_training"] == (run != "short"), run
        sizes = out.points["kaplan_n"]["N"]
        assert r["beyond_decades"] == pytest.approx(max(np.log10(n / sizes.max()), np.log10(sizes.min() / n), 0))
    assert by_n[(3e6, False)]["beyond_decades"] == pytest.approx(1.0)  # the sizes end at 3e5
    line = next(x for x in out.summary().splitlines() if x.startswith("vs the Transformers' L(N)"))
    assert line.count("lstm N = ") == 5 and "not trained alike" in line
    assert line.count("extrapolated") == 1
    assert re.search(r"lstm N = 3,000,000 [+-]\d+\.\d% \(L\(N\) extrapolated 1\.00 decades beyond its sizes\)", line)
    assert line.split("not trained alike")[1].count("lstm N = 10,000 on 100,000") == 1
    assert "indicative only" not in line
    law.identification = {**(law.identification or {}), "identified": False}
    line = next(x for x in out.summary().splitlines() if x.startswith("vs the Transformers' L(N)"))
    assert line.endswith("(L(N) is not identified: indicative only)")


def test_the_gap_along_the_context_pairs_runs_scored_on_the_same_sequences():
    """[K] figure 7 (right): the LSTM against the Transformer nearest in N among those trained alike and
    scored on the same test sequences; a nearer one trained less, one scored on other sequences and
    one too far in N are passed over."""
    import json

    t = np.arange(1, 65)
    base = 3.0 + 2.0 / t
    factor = np.where(t <= 4, 0.93, np.where(t <= 32, 0.95, 0.97))

    def run(run_id, arch, n, tokens, eval_tokens, loss, status="finished"):
        spec = {"final_eval_tokens": eval_tokens, "model": {"n_ctx": 64, "architecture": arch}}
        meta = {"run_id": run_id, "architecture": arch, "non_embedding_params": n, "tokens": tokens,
                "status": status, "data_dir": "/prepared/x", "spec_json": json.dumps(spec)}
        final = {"run_id": run_id, "group": "g", "rule": "plain", "status": status, "architecture": arch,
                 "N": n, "D": tokens, "tokens": tokens, "C": 6 * n * tokens, "loss": float(loss.mean())}
        pos = pd.DataFrame({"run_id": run_id, "architecture": arch, "N": n, "position": t, "loss": loss})
        return meta, final, pos

    runs = [run("t-same", "transformer", 5e4, 3e6, 4_000_000, base),
            run("t-other-seqs", "transformer", 6.5e4, 3e6, 65_536, base * 0.9),
            run("t-short", "transformer", 6e4, 1e6, 4_000_000, base * 0.9),
            run("t-far", "transformer", 1e5, 3e6, 4_000_000, base * 0.9),
            run("lstm", "lstm", 6.5e4, 3e6, 4_000_000, base * factor)]
    frames = StudyFrames(runs=pd.DataFrame([r[0] for r in runs]), final_points=pd.DataFrame([r[1] for r in runs]),
                         per_position=pd.concat([r[2] for r in runs], ignore_index=True))
    from lmscale.laws.study.context import position_gaps

    (pair,) = position_gaps(frames)["pairs"]
    assert pair["run_id"] == "lstm" and pair["transformer"] == "t-same" and pair["transformer_N"] == 5e4
    want = [(1, 4), (5, 16), (17, 32), (33, 64)]
    assert [(g["from"], g["to"]) for g in pair["gaps"]] == want
    for g, (lo, hi) in zip(pair["gaps"], want):
        sel = (t >= lo) & (t <= hi)
        assert g["gap"] == pytest.approx((base * factor)[sel].mean() / base[sel].mean() - 1.0)
    assert pair["gaps"][0]["gap"] == pytest.approx(-0.07) and pair["gaps"][-1]["gap"] == pytest.approx(-0.03)
    # runs given without the columns that say how they were trained and scored: no pairing, no error
    assert position_gaps(replace(frames, runs=frames.runs.drop(columns=["status"]))) is None
