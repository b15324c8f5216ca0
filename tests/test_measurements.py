"""What the measurements claim: identification verdicts, the empirical critical batch, the
standard errors of the noise scale and of the per-position loss."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lmscale.laws import fit
from lmscale.laws.critical_batch import critical_batch_levels, fit_min_steps, steps_to_loss
from lmscale.laws.identification import RULE, distinct, verdict
from lmscale.training.noise import NoiseScaleEstimator, simple_noise_scale


def _chinchilla_points(n_sizes, n_data, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.geomspace(1e6, 1e9, n_sizes), np.geomspace(1e8, 1e11, n_data))
    loss = 1.7 + 400 / N**0.34 + 410 / D**0.28
    return pd.DataFrame({"N": N.ravel(), "D": D.ravel(), "loss": loss.ravel() * np.exp(noise * rng.standard_normal(N.size))})


def test_a_grid_of_runs_identifies_the_chinchilla_form():
    result = fit(_chinchilla_points(6, 6, noise=0.002), law="chinchilla", bootstrap=60)
    assert result.identified, result.identification["failures"]
    assert result.identification["rule"] == RULE
    assert result.to_dict()["identification"]["identified"] is True


def test_too_few_runs_are_not_identified_and_say_why():
    result = fit(_chinchilla_points(2, 4), law="chinchilla", bootstrap=40)
    ident = result.identification
    assert result.identified is False
    assert any("N takes 2 distinct value(s)" in f for f in ident["failures"])
    assert "not identified" in result.summary()
    # a law fitted without a bootstrap is judged on +-1.96 Gauss-Newton standard errors
    plain = fit(_chinchilla_points(6, 6, noise=0.002), law="chinchilla")
    assert "Gauss-Newton" in plain.identification["checks"]["intervals"]


def test_verdict_rules_on_known_intervals():
    inputs = {"N": np.geomspace(1e3, 1e6, 8)}
    y = np.linspace(5, 3, 8)
    good = verdict({"N_c": 1e13, "alpha_N": 0.08}, inputs, y, ci={"N_c": (1e12, 5e13), "alpha_N": (0.07, 0.09)})
    assert good["identified"] and good["checks"]["widths"]["alpha_N"] == "0.25 x value"
    wide = verdict({"N_c": 1e13, "alpha_N": 0.08}, inputs, y, ci={"N_c": (1e10, 1e16), "alpha_N": (0.05, 0.11)})
    assert not wide["identified"]
    assert any("spans 6.0 decades" in f for f in wide["failures"])
    assert any("0.75 x its value" in f for f in wide["failures"])
    # a failed interval is described by its width, never printed: no 1e+16, no 0.11
    assert not any("1e+16" in f or "0.11" in f for f in wide["failures"])
    absurd = verdict({"t_0": 1.0}, inputs, y, ci={"t_0": (5.12e-115, 3.29e296)})
    assert absurd["failures"] == ["t_0's 95% interval spans more than 300 decades (needs <= 2 decades)"]
    # replicates with an exponent at its bound (<= 0) beyond 5%
    samples = np.column_stack([np.full(20, 1e13), np.r_[np.full(18, 0.08), -0.01, 0.0]])
    bound = verdict({"N_c": 1e13, "alpha_N": 0.08}, inputs, y, ci={"N_c": (1e12, 5e13), "alpha_N": (0.07, 0.09)},
                    samples=samples, n_requested=20)
    assert bound["checks"]["at_bound"] == pytest.approx(0.10) and not bound["identified"]
    assert distinct([1.0, 1.02, 1.04, 1.06, 1.08]) == 2 and distinct([1.0, 1.02, 1.04], rtol=0.01) == 3


def test_a_verdict_near_a_limit_is_flagged_at_the_edge_whichever_way_it_falls():
    from lmscale.laws.identification import at_edge, edge_note, short

    inputs = {"N": np.geomspace(1e3, 1e6, 8)}
    y = np.linspace(5, 3, 8)
    # N_c's interval spans 1.9 decades (0.95 of the 2-decade limit), alpha_N's 0.25 x its value
    inside = verdict({"N_c": 1e13, "alpha_N": 0.08}, inputs, y, ci={"N_c": (1e12, 10**13.9), "alpha_N": (0.07, 0.09)},
                     samples=np.full((200, 2), [1e13, 0.08]), n_requested=200)
    assert inside["identified"] and at_edge(inside) == ["N_c"]
    assert inside["checks"]["limit_ratios"]["N_c"] == pytest.approx(0.95)
    assert inside["checks"]["limit_ratios"]["alpha_N"] == pytest.approx(0.5)
    assert edge_note(inside) == "at the rule's edge after 200 replicates: N_c at 0.95 of its limit"
    assert short(inside) == f"identified ({edge_note(inside)})"
    # 2.1 decades: not identified, and at the edge as well
    outside = verdict({"N_c": 1e13, "alpha_N": 0.08}, inputs, y, ci={"N_c": (1e12, 10**14.1), "alpha_N": (0.07, 0.09)})
    assert not outside["identified"] and at_edge(outside) == ["N_c"]
    assert short(outside).startswith("not identified: N_c's 95% interval spans 2.1 decades")
    just = verdict({"N_c": 1e13, "alpha_N": 0.08}, inputs, y, ci={"N_c": (1e12, 10**14.03), "alpha_N": (0.07, 0.09)})
    assert just["failures"] == ["N_c's 95% interval spans 2.03 decades (needs <= 2 decades)"]  # not "2.0"
    # far from every limit: no flag
    clear = verdict({"N_c": 1e13, "alpha_N": 0.08}, inputs, y, ci={"N_c": (1e12, 5e13), "alpha_N": (0.07, 0.09)})
    assert at_edge(clear) == [] and edge_note(clear) is None and short(clear) == "identified"
    # the report's table says it beside the intervals, or among the reasons
    from lmscale.laws.result import FitResult
    from lmscale.report.html import params_cell

    params = {"N_c": 1e13, "alpha_N": 0.08}
    shown = params_cell(FitResult(law="kaplan_n", params=params, identification=inside))
    assert "identified, at the rule&#x27;s edge after 200 replicates: N_c at 0.95 of its limit" in shown
    hidden = params_cell(FitResult(law="kaplan_n", params=params, identification=outside))
    assert "not identified" in hidden and "at the rule&#x27;s edge" in hidden and "10^" not in hidden
    assert "rule&#x27;s edge" not in params_cell(FitResult(law="kaplan_n", params=params, identification=clear))


def test_a_fit_at_the_edge_draws_more_replicates_and_keeps_the_first(monkeypatch):
    """At the edge the bootstrap is extended to EDGE_REPLICATES x the replicates asked for, the
    first ones the same draws as before (one seed), and the verdict judged on all of them."""
    from lmscale.laws import identification

    points = _chinchilla_points(5, 5, noise=0.01)
    plain = fit(points, law="chinchilla", bootstrap=30, seed=3)
    assert "bootstrap_extended" not in plain.stats and plain.stats["n_bootstrap"] == 30
    monkeypatch.setattr(identification, "EDGE_MARGIN", 1e9)  # every check counts as at the edge
    wide = fit(points, law="chinchilla", bootstrap=30, seed=3)
    assert wide.stats["n_bootstrap"] == 30 * identification.EDGE_REPLICATES
    assert "judged on 120" in wide.stats["bootstrap_extended"]
    assert wide.identification["checks"]["replicates"] == 120
    first = wide.bootstrap_params[:len(plain.bootstrap_params)]
    assert np.allclose(first, plain.bootstrap_params, rtol=1e-6)  # the same first draws
    assert wide.params == plain.params  # the point estimate does not move


def test_a_standard_error_beyond_every_float_is_an_unbounded_interval_not_a_crash():
    # a scale whose Gauss-Newton standard error is 1e4 times its value: exp(1.96e4) overflows
    inputs = {"N": np.geomspace(1e3, 1e6, 8)}
    out = verdict({"N_c": 1e13, "alpha_N": 0.08}, inputs, np.linspace(5, 3, 8),
                  stderr={"N_c": 1e17, "alpha_N": 0.01})
    assert list(out["intervals"]["N_c"]) == [0.0, math.inf]
    assert not out["identified"] and any("N_c" in f for f in out["failures"])


def test_empirical_critical_batch_recovers_a_known_trade_off():
    # S(L) = S_min(L) (1 + B_crit(L) / B) exactly ([K] eq. 5.4), B_crit(L) = 2e4 L^-2
    s_min = lambda L: 100.0 * (5.0 / L) ** 3  # noqa: E731
    b_crit = lambda L: 2e4 * L**-2.0  # noqa: E731
    rows = []
    for b in (256, 1024, 4096, 16384):  # budgets growing with B, the first points after warm-up
        steps = np.unique(np.geomspace(20, 2e5 * np.sqrt(b), 400).astype(int))
        # invert S(L) numerically: the loss reached after s steps
        grid = np.linspace(3.0, 6.0, 20001)
        need = s_min(grid) * (1 + b_crit(grid) / b)
        loss = np.interp(steps, need[::-1], grid[::-1])
        rows.append(pd.DataFrame({"run_id": f"b{b}", "step": steps, "loss": loss, "batch_tokens": b}))
    levels_fit = critical_batch_levels(pd.concat(rows), n_levels=6)
    ok = levels_fit[levels_fit["status"] == "ok"]
    assert len(ok) == 6
    assert np.allclose(ok["B"], b_crit(ok["L"]), rtol=0.02)
    assert np.allclose(ok["S_min"], s_min(ok["L"]), rtol=0.02)
    assert np.all(ok["se_log"] < 0.02)  # an exact trade-off: tiny residuals
    # the straight line S = S_min + E_min / B written out
    fitted = fit_min_steps([300.0, 150.0, 112.5], [1000.0, 4000.0, 16000.0])
    assert fitted["S_min"] == pytest.approx(100.0) and fitted["E_min"] == pytest.approx(2e5)
    assert fitted["B_crit"] == pytest.approx(2000.0)
    assert steps_to_loss([1, 10, 100], [5.0, 4.0, 3.0], 3.5) == pytest.approx(10 ** (1 + np.log(4 / 3.5) / np.log(4 / 3)))
    assert math.isnan(steps_to_loss([1, 10], [5.0, 4.0], 3.0))


def test_levels_outside_the_trade_off_are_not_fitted_and_say_why():
    """The same exact trade-off, but the smallest batch slows to a floor late in its run (a constant
    learning rate's noise floor): where it then needs more tokens than the next batch size, the level
    is outside S = S_min + E_min / B and is not fitted (its B_crit would be inflated); the levels
    above the floor still give the true B_crit. A sweep that follows the relation keeps every level
    (the test before this one)."""
    from lmscale.laws.critical_batch import trade_off_violation

    s_min = lambda L: 100.0 * (5.0 / L) ** 3  # noqa: E731
    b_crit = lambda L: 2e4 * L**-2.0  # noqa: E731
    grid = np.linspace(3.0, 6.0, 20001)
    rows = []
    for b in (1024, 4096, 16384):
        steps = np.unique(np.geomspace(20, 4e5, 400).astype(int))
        need = s_min(grid) * (1 + b_crit(grid) / b)
        if b == 1024:  # below L = 4.2, every step counts a fifth: 5x the steps the relation needs
            need = np.where(grid < 4.2, np.interp(4.2, grid, need) + 5 * (need - np.interp(4.2, grid, need)), need)
        loss = np.interp(steps, need[::-1], grid[::-1])
        rows.append(pd.DataFrame({"run_id": f"b{b}", "step": steps, "loss": loss, "batch_tokens": b}))
    levels = critical_batch_levels(pd.concat(rows), n_levels=8)
    outside = levels[levels["status"].str.startswith("outside the relation")]
    ok = levels[levels["status"] == "ok"]
    assert len(outside) >= 2 and (outside["L"] < 4.2).all() and len(levels) == len(ok) + len(outside)
    assert "B = 1024 needs more tokens than B = 4096" in outside["status"].iloc[-1]
    above = ok[ok["L"] > 4.2]  # before the floor; just past it the excess tokens are still below 4096's
    assert len(above) >= 4 and np.allclose(above["B"], b_crit(above["L"]), rtol=0.02)
    assert outside["B"].iloc[-1] > 2 * b_crit(outside["L"].iloc[-1])  # what fitting it would have reported
    # the check itself: the relation's own S passes, an inflated smallest batch or a slower larger one fails
    B = np.array([512.0, 2048.0, 8192.0])
    S = 100.0 * (1 + 2000.0 / B)
    assert trade_off_violation(S, B) is None
    assert "B = 512 needs more tokens" in trade_off_violation(S * [6.0, 1.0, 1.0], B)
    assert "B = 8192 needs more steps" in trade_off_violation(S * [1.0, 1.0, 2.0], B)


def test_noise_scale_standard_error_matches_its_spread():
    # |g_B|^2 = |G|^2 + tr(S)/B + noise: per-step norms scattered around their expectations
    rng = np.random.default_rng(0)
    g2, tr, bs, bb = 1.0, 400.0, 16.0, 128.0
    estimates, ses = [], []
    for _ in range(300):
        est = NoiseScaleEstimator(bs, bb)
        for _ in range(50):
            small = (g2 + tr / bs) * rng.gamma(8.0, 1 / 8.0)
            big = (g2 + tr / bb) * rng.gamma(30.0, 1 / 30.0)
            est.update(small, big)
        w = est.window()
        assert w["steps"] == 50
        estimates.append(w["noise_scale"])
        ses.append(w["se"])
        est.reset_window()
        assert est.window()["steps"] == 0
    assert np.median(estimates) == pytest.approx(tr / g2, rel=0.1)
    # the delta-method error is the spread of the window estimates, to about 15%
    spread = np.diff(np.percentile(estimates, [16, 84]))[0] / 2  # the ratio is skewed: a robust sd
    assert np.median(ses) == pytest.approx(spread, rel=0.15)
    assert simple_noise_scale(g2 + tr / bs, g2 + tr / bb, bs, bb) == pytest.approx(tr / g2)


def test_per_position_standard_error_is_the_batch_means_error():
    torch = pytest.importorskip("torch")
    from lmscale.training.evaluate import position_means

    rng = np.random.default_rng(0)
    # 16 blocks of 10 rows; each block shares a difficulty offset (a document), rows add noise
    offsets = rng.normal(0, 0.3, 16)
    rows = np.concatenate([o + rng.normal(0, 1.0, (10, 4)) + np.array([5, 4, 3.5, 3.2]) for o in offsets])
    table = torch.zeros(16, 5, dtype=torch.float64)
    for b in range(16):
        table[b, :4] = torch.from_numpy(rows[b * 10:(b + 1) * 10].sum(0))
        table[b, 4] = 10
    mean, se, se_shape = position_means(table)
    assert mean == pytest.approx(rows.mean(0).tolist(), rel=1e-12)
    block_means = rows.reshape(16, 10, 4).mean(1)
    assert se == pytest.approx((block_means.std(0, ddof=1) / 4).tolist(), rel=1e-9)
    # larger than the error that treats rows as independent: the shared offsets count
    assert np.all(np.array(se) > rows.std(0, ddof=1) / np.sqrt(160))
    # the profile's error leaves the shared offsets out: that of the deviations from each block's mean
    shape = block_means - block_means.mean(1, keepdims=True)
    assert se_shape == pytest.approx((shape.std(0, ddof=1) / 4).tolist(), rel=1e-9)
    assert np.all(np.array(se_shape) < np.array(se))


def _table(values: np.ndarray, blocks: np.ndarray):
    """Per-block sums and counts of row values [n, P]: the layout evaluate_position_blocks returns."""
    torch = pytest.importorskip("torch")
    k = int(blocks.max()) + 1
    table = np.zeros((k, values.shape[1] + 1))
    np.add.at(table[:, :-1], blocks, values)
    np.add.at(table[:, -1], blocks, 1.0)
    return torch.from_numpy(table)


@pytest.mark.parametrize("n_docs, mean_length", [(60, 25), (12, 120)])
def test_per_position_standard_error_is_calibrated_over_documents_of_unequal_length(n_docs, mean_length):
    """Documents of very unequal length, each with its own difficulty, stored in order of it (a
    split sorted by path keeps similar files together): the error clustered by document matches
    the spread of the mean over repeated test splits. Contiguous blocks of sequences ignore the
    documents: where documents are longer than a block (12 long ones), neighbouring blocks share
    one and the blocks' error is far too small."""
    from lmscale.training.evaluate import position_blocks, position_means

    rng = np.random.default_rng(1)
    means, se_doc, se_contig = [], [], []
    for _ in range(400):
        lengths = rng.geometric(1 / mean_length, n_docs)
        offsets = np.sort(rng.normal(0, 0.3, n_docs))  # easy documents first
        documents = np.repeat(np.arange(n_docs), lengths)
        rows = offsets[documents, None] + rng.normal(0, 1.0, (len(documents), 3)) + np.array([5.0, 4.0, 3.5])
        blocks = position_blocks(len(rows), documents)
        assert int(blocks.max()) + 1 == n_docs and np.all(np.diff(blocks) >= 0)
        mean, se, _ = position_means(_table(rows, blocks))
        means.append(mean)
        se_doc.append(se)
        se_contig.append(position_means(_table(rows, position_blocks(len(rows))))[1])
    spread = np.std(means, axis=0, ddof=1)
    rms = lambda x: np.sqrt(np.mean(np.square(x), axis=0))  # noqa: E731
    assert rms(se_doc) == pytest.approx(spread, rel=0.15)
    if n_docs < 32:
        assert np.all(rms(se_contig) < 0.7 * spread)


def test_position_blocks_group_whole_documents():
    from lmscale.training.evaluate import (
        FALLBACK_POSITION_BLOCKS,
        MAX_POSITION_BLOCKS,
        position_blocks,
    )

    documents = np.repeat(np.arange(5 * MAX_POSITION_BLOCKS), 3)
    blocks = position_blocks(len(documents), documents)
    # more documents than blocks: runs of whole documents, about equal in size
    assert int(blocks.max()) + 1 == MAX_POSITION_BLOCKS
    for d in range(0, len(documents), 3):
        assert len(set(blocks[d:d + 3])) == 1
    assert np.bincount(blocks).min() >= 12 and np.bincount(blocks).max() <= 18
    # no documents, or one: contiguous blocks of sequences
    assert int(position_blocks(1000).max()) + 1 == FALLBACK_POSITION_BLOCKS
    assert int(position_blocks(1000, np.zeros(1000, dtype=int)).max()) + 1 == FALLBACK_POSITION_BLOCKS


def test_row_documents_count_the_document_ends_before_each_sequence():
    from lmscale.training.batches import row_documents

    eot = 9
    tokens = np.array([1, 2, 9, 3, 4, 5, 9, 6, 9, 7])  # documents: [1 2 9] [3 4 5 9] [6 9] [7]
    assert row_documents(tokens, np.arange(10), eot).tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 3]


def test_the_position_table_matches_a_plain_loop_on_real_text():
    """A real model on real documents: the trainer's table and errors against per-row losses
    from the model's logits and the clustered error written out in numpy; two data-parallel
    halves add up to the whole."""
    torch = pytest.importorskip("torch")
    import argparse
    import inspect
    import textwrap
    from pathlib import Path

    from lmscale.models import ModelSpec, build_model
    from lmscale.training.batches import fixed_rows, row_documents, row_starts
    from lmscale.training.evaluate import evaluate_position_blocks, position_blocks, position_means

    eot = 0  # Python source holds no NUL byte: it ends each document
    text = b"\0".join(Path(m.__file__).read_bytes() for m in (argparse, inspect, textwrap)) + b"\0"
    tokens = np.frombuffer(text, dtype=np.uint8).astype(np.int64)
    n_ctx = 16
    torch.manual_seed(0)
    model = build_model(ModelSpec(n_layer=1, d_model=16, n_head=2, n_ctx=n_ctx, n_vocab=256)).eval()
    rows = torch.from_numpy(fixed_rows(tokens, n_ctx, 20_000))
    documents = row_documents(tokens, row_starts(len(tokens), n_ctx, 20_000), eot)
    assert sorted(set(documents.tolist())) == [0, 1, 2]
    blocks = torch.from_numpy(position_blocks(len(rows), documents))
    halves = sum(evaluate_position_blocks(model, model.hidden_states, rows, blocks, slice(r, None, 2), 7)
                 for r in (0, 1))
    whole = evaluate_position_blocks(model, model.hidden_states, rows, blocks, slice(None), 64)
    assert torch.allclose(halves, whole, rtol=1e-10, atol=1e-9)
    mean, se, se_shape = position_means(whole)

    with torch.no_grad():
        logits = model(rows[:, :-1])
        losses = torch.nn.functional.cross_entropy(logits.reshape(-1, 256).double(), rows[:, 1:].reshape(-1),
                                                   reduction="none").reshape(len(rows), n_ctx).numpy()
    assert mean == pytest.approx(losses.mean(0).tolist(), rel=1e-5)
    g = documents
    counts = np.bincount(g)
    doc_means = np.stack([losses[g == d].mean(0) for d in range(3)])
    w = counts / counts.sum()
    expect = np.sqrt(3 / 2 * (w[:, None] ** 2 * (doc_means - losses.mean(0)) ** 2).sum(0))
    assert se == pytest.approx(expect.tolist(), rel=1e-5)
    shape = doc_means - doc_means.mean(1, keepdims=True)
    expect_shape = np.sqrt(3 / 2 * (w[:, None] ** 2 * (shape - (w[:, None] * shape).sum(0)) ** 2).sum(0))
    assert se_shape == pytest.approx(expect_shape.tolist(), rel=1e-5)


def test_the_summary_says_how_many_more_test_documents_a_precise_profile_needs():
    from lmscale.laws.result import LawSet
    from lmscale.laws.study.results import POSITION_SE_GOAL, StudyFits

    fits = StudyFits(laws=LawSet("s"), checks={"positions": {"max_rel_se": 0.0129, "runs": 3,
                                                             "max_rel_se_shape": 0.0053}})
    line = next(x for x in fits.summary().splitlines() if x.startswith("per-position"))
    # the error of a mean over documents falls as 1 / sqrt(documents scored): (1.29% / 0.5%)^2 = 6.7x as many
    assert f"about {(0.0129 / POSITION_SE_GOAL) ** 2:.1f}x as many documents scored" in line and "6.7x" in line
    fits.checks["positions"]["max_rel_se"] = 0.004
    line = next(x for x in fits.summary().splitlines() if x.startswith("per-position"))
    assert "as many documents" not in line and "0.40%" in line


def test_the_summary_gives_the_r2_of_each_l_of_t_fit_largest_transformer_first():
    """Per-position losses of a Transformer and an LSTM drawn from L(t) = L_inf + (t_0 / t)^alpha_t
    with noise: the check and the summary line give each run's L(t) R^2 of log loss, equal to one
    computed here from the fitted law's predictions."""
    from lmscale.laws.study.pipeline import fit_study

    rng = np.random.default_rng(0)
    t = np.arange(1, 64)
    rows, finals = [], []
    for run_id, arch, n, (l_inf, t0, a) in [("lstm1", "lstm", 6.5e4, (3.0, 1.0, 1.4)),
                                             ("tf1", "transformer", 1.5e5, (2.7, 1.3, 0.9))]:
        loss = (l_inf + (t0 / t) ** a) * np.exp(0.004 * rng.standard_normal(len(t)))
        rows += [{"run_id": run_id, "position": int(p), "loss": float(v), "se": 0.01 * float(v), "N": n,
                  "architecture": arch} for p, v in zip(t, loss)]
        finals.append({"run_id": run_id, "N": n, "D": 1e6, "loss": float(loss.mean()), "architecture": arch})
    frames = {"final_points": pd.DataFrame(finals), "per_position": pd.DataFrame(rows)}
    fits = fit_study(frames, bootstrap=0, holdout=False, compare=False)
    r2 = fits.checks["positions"]["r2"]
    assert [r["architecture"] for r in r2] == ["transformer", "lstm"]
    pos = pd.DataFrame(rows)
    for r in r2:
        y = pos[pos["run_id"] == r["run_id"]]
        pred = np.asarray(fits.laws.laws[f"position:{r['run_id']}"].predict(t=y["position"].to_numpy(float)))
        ly = np.log(y["loss"].to_numpy())
        expect = 1 - np.sum((ly - np.log(pred)) ** 2) / np.sum((ly - ly.mean()) ** 2)
        assert r["r2"] == pytest.approx(expect, abs=1e-6) and r["r2"] > 0.9
    line = next(x for x in fits.summary().splitlines() if x.startswith("per-position"))
    assert f"L(t) R^2 (of log loss): transformer N = 150,000 {r2[0]['r2']:.3f}, lstm N = 65,000" in line


def test_the_per_position_line_says_which_runs_were_fitted_and_which_fits_are_not_identified():
    from lmscale.laws.result import LawSet
    from lmscale.laws.study.results import StudyFits

    r2 = [{"run_id": "a", "architecture": "transformer", "N": 24576.0, "r2": -0.021, "identified": False}]
    fits = StudyFits(laws=LawSet("s"), checks={"positions": {"max_rel_se": 0.0556, "runs": 2, "r2": r2}})
    line = next(x for x in fits.summary().splitlines() if x.startswith("per-position"))
    assert line.startswith("per-position loss (2 runs, 1 fitted with L(t)):")
    assert line.endswith("transformer N = 24,576 -0.021 (not identified)")


def test_the_b_crit_line_names_the_levels_outside_the_relation():
    from lmscale.laws.result import LawSet
    from lmscale.laws.study.results import StudyFits

    agree = {"ratio_median": 0.96, "ratio_min": 0.87, "ratio_max": 1.41, "within_2x": True, "levels": 8,
             "left_out": [], "outside": [{"L": 3.864, "N": 13824.0, "why": "outside the relation: ..."}]}
    fits = StudyFits(laws=LawSet("s"), checks={"bcrit_agreement": agree})
    line = next(x for x in fits.summary().splitlines() if x.startswith("B_crit two ways"))
    assert "within a factor 2" in line and "NOT" not in line
    assert "1 level(s) outside the relation S = S_min + E_min / B, not compared: L = 3.864 (N = 13,824)" in line


def test_approach_1_stability_is_judged_only_where_approach_1_is_identified():
    from lmscale.laws.result import LawSet
    from lmscale.laws.study.results import StudyFits

    stab = {"a": 0.694, "ci": [0.616, 0.739], "without": {"data": 0.694, "sizes": 0.65}, "not_on_it": [],
            "stable": True}

    def line(identified: bool) -> str:
        row = {"a": 0.694, "ci": [0.616, 0.739], "published": 0.5, "method": "envelope", "identified": identified,
               "why": None if identified else "a's 95% interval is 0.75 x its value (needs < 0.5)"}
        fits = StudyFits(laws=LawSet("s"), exponents={"approach 1: envelope of learning curves": row},
                         checks={"envelope_stability": stab})
        return next(x for x in fits.summary().splitlines() if x.startswith("approach 1 stability"))

    assert line(True) == ("approach 1 stability: a = 0.694 [0.616, 0.739]; without 'data' 0.694, "
                          "without 'sizes' 0.65: inside its interval")
    assert line(False) == "approach 1 stability: not judged: approach 1's exponent is not identified (above)"


def test_the_b_crit_scatter_line_says_what_longer_windows_could_give():
    from lmscale.laws.result import LawSet
    from lmscale.laws.study.results import StudyFits

    def line(ceiling: float) -> str:
        scatter = {"points": 106, "r2": 0.683, "explained_share": 0.52, "r2_ceiling": ceiling}
        fits = StudyFits(laws=LawSet("s"), checks={"bcrit_scatter": scatter})
        return next(x for x in fits.summary().splitlines() if x.startswith("B_crit(L) from the noise scale"))

    low = line(0.85)
    assert "R^2 = 0.683 (of ln B, 106 windows)" in low and "explain 52%" in low and "R^2 = 0.85 at most" in low
    assert "no term for" in low
    assert "no term for" not in line(0.97)  # the estimates' noise is the whole story: longer windows would do


def test_a_per_position_error_the_corpus_cannot_reach_says_it_takes_a_larger_corpus(tmp_path):
    """(1.31% / 0.5%)^2 = 6.9x as many documents, but the corpus holds only 1,761 / 384 = 4.6x:
    the line says so, with the error all of them held out would give, 1.31% x sqrt(384 / 1761)."""
    import json

    from lmscale.laws.result import LawSet
    from lmscale.laws.study.context import corpus_documents
    from lmscale.laws.study.frames import StudyFrames
    from lmscale.laws.study.results import StudyFits

    manifest = {"distributions": [{"name": "python-stdlib", "train": {"documents": 1377},
                                   "test": {"documents": 384}}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    runs = pd.DataFrame({"run_id": ["a"], "data_dir": [str(tmp_path)], "train_distribution": ["python-stdlib"]})
    docs = corpus_documents(StudyFrames(runs=runs), ["a"])
    assert docs == {"test": 384, "corpus": 1761}
    assert corpus_documents(StudyFrames(runs=runs.assign(data_dir=str(tmp_path / "gone"))), ["a"]) is None
    fits = StudyFits(laws=LawSet("s"), checks={"positions": {"max_rel_se": 0.0131, "runs": 1, "documents": docs}})
    line = next(x for x in fits.summary().splitlines() if x.startswith("per-position"))
    assert "the corpus holds 1,761 in all, 4.6x the 384 of its test split" in line
    assert f"about {0.0131 * (384 / 1761) ** 0.5:.2%}" in line and "0.61%" in line and "a larger corpus" in line
    fits.checks["positions"]["documents"] = {"test": 384, "corpus": 20_000}  # a corpus that can: the old advice
    line = next(x for x in fits.summary().splitlines() if x.startswith("per-position"))
    assert "a larger test split" in line and "larger corpus" not in line
