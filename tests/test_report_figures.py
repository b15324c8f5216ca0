"""The figures draw exactly what was fitted: law lines checked against law.predict and closed forms.

Development data: the OLMo model ladder's final points (real runs, Apache-2.0,
../shared/data), fitted with lmscale's own engine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA as SHARED
from conftest import olmo_ladder_frames
from lmscale.laws.api import fit
from lmscale.laws.result import LawSet
from lmscale.laws.study import StudyFits, StudyFrames, fit_study
from lmscale.report import style
from lmscale.report.figures import FIGURES, Missing, draw_all

LADDER = SHARED / "olmo_ladder_final_points.csv"


def spec(key: str):
    return next(s for s in FIGURES if s.key == key)


@pytest.fixture(scope="module")
def ladder():
    if not LADDER.exists():
        pytest.skip(f"{LADDER} not found (the shared data folder sits beside the checkout)")
    raw = pd.read_csv(LADDER)
    frame = pd.DataFrame({
        "run_id": raw["size_label"] + "-" + raw["chinchilla_multiple"],
        "N": raw["N_params"].astype(float), "D": raw["total_tokens"].astype(float),
        "C": raw["total_training_flops"].astype(float), "loss": raw["c4_en_CE"].astype(float),
        "architecture": "transformer",
    })
    largest_d = frame[frame.groupby("N")["D"].transform("max") == frame["D"]]
    fits = StudyFits(laws=LawSet("olmo-ladder"))
    fits.add("kaplan_n", fit(largest_d, law="kaplan_n"), largest_d, "the longest run of each size")
    fits.add("kaplan_nd", fit(frame, law="kaplan_nd"), frame, "every run")
    return StudyFrames(final_points=frame, source=str(LADDER)), fits


def law_lines(fig):
    for ax in fig.axes:
        for line in ax.get_lines():
            gid = line.get_gid()
            if gid and gid.startswith("law:"):
                yield line, *style.parse_gid(gid)


def test_law_lines_are_the_fitted_laws(ladder):
    frames, fits = ladder
    checked = {}
    with style.style():
        for key in ("fig01_headline", "fig04_loss_vs_n_and_d"):
            fig = spec(key).draw(frames, fits)
            for line, law, along, fixed in law_lines(fig):
                x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
                assert len(x) >= 50
                if law == "overfitting":
                    continue
                expected = fits.laws.get(law).predict(**{along: x}, **fixed)
                np.testing.assert_allclose(y, expected, rtol=1e-12)
                checked.setdefault(law, []).append(fixed)
    assert set(checked) == {"kaplan_n", "kaplan_nd"}
    # one L(N, D) line per dataset size of the ladder's points, drawn at that D
    n_sizes = frames.final_points["D"].round(-6).nunique()
    assert 1 < len(checked["kaplan_nd"]) <= n_sizes


def test_law_line_matches_the_closed_form(ladder):
    """[K] eq. 1.1 written out here, independently of the law forms: L = (N_c / N)^alpha_N."""
    frames, fits = ladder
    p = fits.laws.get("kaplan_n").params
    with style.style():
        fig = spec("fig01_headline").draw(frames, fits)
    (line, _, along, _), = [t for t in law_lines(fig) if t[1] == "kaplan_n"]
    assert along == "N"
    x = np.asarray(line.get_xdata(), float)
    np.testing.assert_allclose(line.get_ydata(), (p["N_c"] / x) ** p["alpha_N"], rtol=1e-10)
    # the line spans the fitted points
    pts = fits.points["kaplan_n"]["N"]
    assert x.min() <= pts.min() and x.max() >= pts.max()


def test_overfitting_panel_is_eq_4_3(ladder):
    """delta_L = [1 + (N/N_c)^(alpha_N/alpha_D) D_c/D]^alpha_D - 1, against N^(alpha_N/alpha_D)/D."""
    frames, fits = ladder
    p = fits.laws.get("kaplan_nd").params
    with style.style():
        fig = spec("fig04_loss_vs_n_and_d").draw(frames, fits)
    (line, _, _, fixed), = [t for t in law_lines(fig) if t[1] == "overfitting"]
    x = np.asarray(line.get_xdata(), float)
    r = p["alpha_N"] / p["alpha_D"]
    expected = (1.0 + x * p["D_c"] / p["N_c"] ** r) ** p["alpha_D"] - 1.0
    np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-9)
    assert fixed["N"] > 0


def test_figures_without_runs_say_what_is_missing(ladder, tmp_path):
    frames, fits = ladder
    outcomes = {o.spec.key: o for o in draw_all(frames, fits, tmp_path, strict=True)}
    assert outcomes["fig01_headline"].drawn and outcomes["fig04_loss_vs_n_and_d"].drawn
    for key in ("fig01_headline", "fig04_loss_vs_n_and_d"):
        for fmt in ("png", "svg"):
            path = outcomes[key].paths[fmt]
            assert path.exists() and path.stat().st_size > 5000
    # the ladder has no LSTMs, no per-position losses, no batch sweep
    assert "LSTM" in " ".join(outcomes["fig07_architectures"].missing)
    assert not outcomes["fig10_critical_batch"].drawn
    assert all(o.drawn or o.missing for o in outcomes.values())
    with pytest.raises(Missing):
        spec("fig02_learning_curves").draw(StudyFrames(), None)
    # 30 runs imported without their model shape: not "the study has 0", but what they lack
    embeddings = next(o for o in outcomes.values() if o.spec.key == "fig06_embeddings")
    assert "the study has 0; 30 more without them" in " ".join(embeddings.missing)


@pytest.fixture(scope="module")
def ladder_study():
    """fit_study on the ladder's learning curves, its runs read as an early-stopped 'data' grid
    (N x D), with the [H] form fitted to the same runs read as single-pass ones."""
    frames = olmo_ladder_frames("data")
    frames.final_points["status"] = "early_stopped"
    fits = fit_study(frames, bootstrap=0, holdout=False, compare=False)
    runs = olmo_ladder_frames("plain").final_points
    fits.add("chinchilla", fit(runs, law="chinchilla"), runs, "every run, one pass")
    return frames, fits


def expected_line(fits, key: str, along: str, x: np.ndarray, fixed: dict) -> np.ndarray:
    """What a law line should show, from the law objects themselves."""
    from lmscale.laws import catalog
    from lmscale.laws.planner import allocation_relation

    law, _, source = key.partition("@")
    laws = catalog.load(source) if source else fits.laws
    if law.startswith("allocation."):
        return allocation_relation(laws, law.split(".", 1)[1], x)
    if law == "kaplan_d(D_opt)":  # L(D) along the frontier's data D_opt(C)
        return laws.get("kaplan_d").predict(D=allocation_relation(laws, "D_opt", x))
    return laws.get(law).predict(**{along: x}, **fixed)


def test_every_law_line_of_every_figure(ladder_study):
    frames, fits = ladder_study
    assert {"kaplan_d", "kaplan_nd", "kaplan_cmin", "chinchilla"} <= set(fits.laws.laws)
    seen = set()
    with style.style():
        for figure in FIGURES:
            try:
                fig = figure.draw(frames, fits)
            except Missing:
                continue
            for ax in fig.axes:  # every visible panel says what it plots, with units
                if ax.axison and ax.get_label() != "<colorbar>":
                    assert ax.get_xlabel() and ax.get_ylabel(), (figure.key, ax.get_title())
            for line, key, along, fixed in law_lines(fig):
                x = np.asarray(line.get_xdata(), float)
                if key == "overfitting":
                    continue  # x is N^(alpha_N/alpha_D)/D, checked in test_overfitting_panel_is_eq_4_3
                np.testing.assert_allclose(line.get_ydata(), expected_line(fits, key, along, x, fixed),
                                           rtol=1e-12, err_msg=f"{figure.key}: {key}")
                seen.add((figure.key, key.split(";")[0]))
    figures_with_laws = {f for f, _ in seen}
    assert {"fig01_headline", "fig02_learning_curves", "fig04_loss_vs_n_and_d", "fig14_optimal_size",
            "fig15_contradiction"} <= figures_with_laws
    assert ("fig15_contradiction", "kaplan_cmin@kaplan2020") in seen


def test_a_law_its_runs_do_not_identify_is_drawn_dashed_and_says_so():
    """A fitted line is not a result where the identification rule says so: its legend and the
    compute panel's title end in '(not identified)', its line is dashed; identified laws unchanged."""
    L = np.linspace(3.5, 5.0, 12)
    pts = pd.DataFrame({"L": L, "B": 2e5 * L**-4.0})
    judged = fit(pts, law="bcrit")
    fits = StudyFits(laws=LawSet("b"))
    fits.add("bcrit", judged, pts, "noise")
    noise = pts.rename(columns={"L": "loss", "B": "noise_scale"}).assign(architecture="transformer")
    drawn = {}
    for verdict in (True, False):
        judged.identification = {"identified": verdict, "failures": [] if verdict else ["alpha_B too wide"]}
        with style.style():
            fig = spec("fig10_critical_batch").draw(StudyFrames(noise_scale=noise), fits)
        (line, key, _, _), = law_lines(fig)
        np.testing.assert_allclose(line.get_ydata(), judged.predict(L=line.get_xdata()), rtol=1e-12)
        drawn[verdict] = (line.get_linestyle(), line.get_label())
    assert drawn[True][0] == "-" and not drawn[True][1].endswith("(not identified)")
    assert drawn[False][0] == "--" and drawn[False][1] == drawn[True][1] + " (not identified)"
    assert style.law_text(judged).endswith(" (not identified)")
    judged.identification = None  # not judged (a published law): drawn as before
    assert style.line_style(judged) == "-" and "not identified" not in style.law_text(judged)


def test_universal_transformer_figure_by_unique_and_applied_parameters():
    """[K] figure 17: UT points at N (one block) and at n_layer x N (applied), beside L(N)."""
    rows = []
    for i, (arch, layers, d) in enumerate([("transformer", 2, 16), ("transformer", 2, 32), ("transformer", 2, 64),
                                           ("universal", 4, 24), ("universal", 4, 48)]):
        n = 12 * d * d * (1 if arch == "universal" else layers)
        rows.append({"run_id": f"r{i}", "architecture": arch, "N": float(n), "loss": 6.0 * n ** -0.08,
                     "n_layer": layers, "d_model": d, "n_head": 2, "d_ff": 4 * d, "n_ctx": 64, "n_vocab": 512})
    frame = pd.DataFrame(rows)
    t = frame[frame["architecture"] == "transformer"]
    fits = StudyFits(laws=LawSet("ut"))
    fits.add("kaplan_n", fit(t, law="kaplan_n"), t, "transformers")
    with style.style():
        fig = spec("fig17_universal").draw(StudyFrames(final_points=frame), fits)
    unique, applied = fig.axes[:2]
    ut = frame[frame["architecture"] == "universal"]
    (ut_unique,) = [ln for ln in unique.get_lines() if ln.get_label().startswith("Universal")]
    (ut_applied,) = [ln for ln in applied.get_lines() if ln.get_label().startswith("Universal")]
    np.testing.assert_allclose(ut_unique.get_xdata(), ut["N"])
    np.testing.assert_allclose(ut_applied.get_xdata(), 4 * ut["N"])  # one block applied 4 times
    for line, key, _, _ in law_lines(fig):
        np.testing.assert_allclose(line.get_ydata(), fits.laws.get(key).predict(N=line.get_xdata()), rtol=1e-12)


def test_architecture_figure_draws_the_paired_gap_along_the_context():
    """[K] figure 7, third panel: the LSTM's loss over the paired Transformer's at each position,
    in percent, and the check's means over its ranges of position as bars."""
    t = np.arange(1, 65)
    pos = pd.concat([pd.DataFrame({"run_id": run, "architecture": arch, "N": n, "position": t, "loss": loss})
                     for run, arch, n, loss in [("tr", "transformer", 5e4, 3.0 + 2.0 / t),
                                                ("ls", "lstm", 6e4, (3.0 + 2.0 / t) * (0.95 + t / 6400))]])
    final = pos.groupby("run_id", as_index=False).agg(architecture=("architecture", "first"), N=("N", "first"),
                                                      loss=("loss", "mean"))
    fits = StudyFits(laws=LawSet("pairs"))
    fits.checks["position_gaps"] = {"pairs": [{"run_id": "ls", "architecture": "lstm", "N": 6e4, "transformer": "tr",
                                               "transformer_N": 5e4,
                                               "gaps": [{"from": 1, "to": 4, "gap": -0.049}]}]}
    with style.style():
        fig = spec("fig07_architectures").draw(StudyFrames(final_points=final, per_position=pos), fits)
    gap_ax = fig.axes[2]
    (line,) = [ln for ln in gap_ax.get_lines() if ln.get_label().startswith("lstm")]
    np.testing.assert_allclose(line.get_xdata(), t)
    np.testing.assert_allclose(line.get_ydata(), 100 * (0.95 + t / 6400 - 1.0), rtol=1e-12)
    (bar,) = gap_ax.collections
    np.testing.assert_allclose(bar.get_segments()[0], [[1, -4.9], [4, -4.9]])


def test_critical_batch_figure_shows_both_measurements():
    L = np.linspace(3.5, 5.0, 12)
    noise = pd.DataFrame({"run_id": np.repeat(["a", "b"], 6), "step": np.tile(np.arange(6) * 10 + 10, 2),
                          "loss": L, "noise_scale": 2e5 * L**-4.0, "noise_scale_se": 1e3, "noise_steps": 20})
    pts = noise.rename(columns={"loss": "L", "noise_scale": "B"})
    emp = pd.DataFrame({"L": [3.8, 4.2, 4.6], "B": 1.5 * 2e5 * np.array([3.8, 4.2, 4.6]) ** -4.0, "se": 50.0})
    fits = StudyFits(laws=LawSet("b"))
    fits.add("bcrit", fit(pts, law="bcrit"), pts, "noise")
    fits.add("bcrit_empirical", fit(emp, law="bcrit"), emp, "sweep")
    fits.checks["bcrit_agreement"] = {"ratio_median": 1.5,
                                      "outside": [{"L": 3.6, "N": 1e4, "B": 9e3, "why": "outside the relation"}]}
    with style.style():
        fig = spec("fig10_critical_batch").draw(StudyFrames(noise_scale=noise.assign(architecture="transformer")),
                                                fits)
    keys = {key for _, key, _, _ in law_lines(fig)}
    assert keys == {"bcrit", "bcrit_empirical"}
    for line, key, _, _ in law_lines(fig):
        np.testing.assert_allclose(line.get_ydata(), fits.laws.get(key).predict(L=line.get_xdata()), rtol=1e-12)
    assert "1.50" in fig.axes[0].get_title()
    crosses = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "x"]  # the level outside the relation
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [3.6] and list(crosses[0].get_ydata()) == [9e3]


def test_a_log_axis_over_a_sliver_of_a_decade_gets_few_labels():
    """Compute spent over two rounds of `next` spans 0.24 decades (1.4e11 to 2.4e11): matplotlib's log
    locator falls back there to a tick every 0.2e11, six labels of m x 10^11 that ran into each other."""
    _, (ax,) = style.new_figure()
    ax.plot([1.4e11, 2.4e11], [3.8, 3.4])
    ax.set_xscale("log")
    style.tidy_log_ticks(ax)
    lo, hi = ax.get_xlim()
    shown = [t for t in ax.xaxis.get_majorticklocs() if lo <= t <= hi]
    shown += [t for t in ax.xaxis.get_minorticklocs() if lo <= t <= hi]
    assert 2 <= len(shown) <= 4, shown


def test_the_l_of_n_panel_shows_the_size_sweep_runs_it_left_out():
    # two peak rates per size, the lower one 3% worse: the fitted points are the better rate's,
    # the others drawn hollow beside them
    N = np.array([1e3, 3e3, 1e4, 3e4, 1e5])
    loss = (8.8e13 / N) ** 0.076
    rows, curves = [], []
    for rate, worse in ((1e-3, 1.0), (5e-4, 1.03)):
        for n, value in zip(N, loss * worse):
            run_id = f"n{n:.0f}-lr{rate:g}"
            rows.append({"run_id": run_id, "rule": "converge", "group": "sizes", "architecture": "transformer",
                         "N": n, "D": 40 * n, "tokens": 40 * n, "C": 240 * n * n, "loss": value,
                         "batch_tokens": 2048, "status": "finished"})
            curves.append({"run_id": run_id, "lr": rate, "step": 10, "N": n, "D": 40 * n, "C": 240 * n * n,
                           "loss": value, "architecture": "transformer", "batch_tokens": 2048})
    frames = StudyFrames(final_points=pd.DataFrame(rows), curves=pd.DataFrame(curves))
    fits = fit_study(frames, bootstrap=0, holdout=False, compare=False)
    with style.style():
        fig = spec("fig01_headline").draw(frames, fits)
    ax = fig.axes[2]
    (fitted,) = [ln for ln in ax.get_lines() if ln.get_label() == "fitted points"]
    (left,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("left out")]
    np.testing.assert_allclose(sorted(fitted.get_ydata()), sorted(loss))
    np.testing.assert_allclose(sorted(left.get_ydata()), sorted(loss * 1.03))
