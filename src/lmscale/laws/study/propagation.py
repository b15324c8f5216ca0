"""B_crit(L)'s uncertainty carried into the laws whose inputs it converts.

L(C_min) ([K] eq. 1.3) and [K]'s compute-optimal frontier N_opt(C_min)
(table 6) are found in C_min = C / (1 + B / B_crit(L)) ([K] eq. 5.5), and
L(N, S_min) ([K] eq. 1.6) in S_min = S / (1 + B_crit(L) / B) (eq. 5.4),
all with the B_crit(L) fitted to the same study. Found at the point
estimate of B_crit alone, their intervals leave out how uncertain B_crit(L)
is (on the kaplan-cpu demo's runs its alpha_B is known to about +-24%).

:func:`propagate_bcrit` replaces their bootstrap by a two-stage one: for
each of ``draws`` replicates of the B_crit(L) fit, the points (the curves)
are converted again with that replicate's B_* and alpha_B, and the law (the
frontier) is refitted on ``bootstrap / draws`` resamples of them (runs
resampled, as in its own bootstrap). The intervals are percentiles of all
those refits, and the identification rule judges them; where its verdict
lands at the rule's edge, ``EDGE_REPLICATES`` times as many B_crit
replicates are drawn and it judges again. The two
stages resample independently, although the noise-scale estimates and the
learning curves come from the same runs: an approximation that leaves out
their covariance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmscale.errors import LmscaleError
from lmscale.laws.bootstrap import bootstrap as run_bootstrap
from lmscale.laws.bootstrap import bootstrap_stderr, percentile_intervals
from lmscale.laws.fitting import FitOptions
from lmscale.laws.frontier import envelope_frontier, sample_intervals
from lmscale.laws.identification import EDGE_MARGIN, EDGE_REPLICATES, at_edge, verdict
from lmscale.laws.io import prepare_points
from lmscale.laws.result import FitResult, LawSet
from lmscale.laws.study.batch import select_steps
from lmscale.laws.study.compute import (
    APPROACHES,
    exponent_verdict,
    frontier_curves,
    select_cmin_envelope,
    with_cmin,
)
from lmscale.laws.study.frames import StudyFrames
from lmscale.laws.study.results import StudyFits

#: The laws fitted on inputs converted with the fitted B_crit(L), and the rules that convert them.
BCRIT_DEPENDENT = {"kaplan_cmin": select_cmin_envelope, "kaplan_ns": select_steps}

#: Replicates of the B_crit(L) fit the points are converted with (each refitted bootstrap / draws times).
PROPAGATION_DRAWS = 20


def propagate_bcrit(frames: StudyFrames, fits: StudyFits, bootstrap: int, seed: int = 0,
                    draws: int = PROPAGATION_DRAWS) -> None:
    """Refit the intervals of :data:`BCRIT_DEPENDENT` laws with B_crit(L)'s replicates (in place).

    Does nothing without a bootstrapped B_crit(L) fit; the point estimates
    (fitted at B_crit's own point estimate) do not change.
    """
    source = fits.laws.laws.get("bcrit")
    if not bootstrap or source is None or source.bootstrap_params is None or len(source.bootstrap_params) < 2:
        return
    replicates = np.asarray(source.bootstrap_params, dtype=float)
    # the first `draws` of one order of B_crit's replicates; an extension takes the next ones
    order = np.random.default_rng(seed).permutation(len(replicates))
    picks = order[:min(draws, len(replicates))]
    per_draw = max(1, bootstrap // len(picks))

    def trials(n: int) -> list[StudyFits]:
        out = []
        for row in replicates[order[:n]]:
            trial = StudyFits(laws=LawSet("bcrit-replicate"))
            trial.laws.laws["bcrit"] = FitResult(law=source.law, params=dict(zip(source.form.params, row)))
            out.append(trial)
        return out

    first = trials(len(picks))
    for key, select in BCRIT_DEPENDENT.items():
        law = fits.laws.laws.get(key)
        if law is None:
            continue
        _refit_intervals(frames, fits, key, law, select, first, per_draw, seed)
        edge = at_edge(law.identification)
        more = min(len(replicates), len(picks) * EDGE_REPLICATES)
        if edge and more > len(picks):  # the same draws and more: the verdict judged again
            _refit_intervals(frames, fits, key, law, select, trials(more), per_draw, seed)
            law.stats["bootstrap_extended"] = (
                f"the refits over {len(picks)} of B_crit(L)'s replicates put {', '.join(edge)} within "
                f"{EDGE_MARGIN:.0%} of the rule's limit: judged again over {more}")
        fits.rules[key] = f"{fits.rules.get(key, '')}; {law.notes['bcrit_propagated']}"
    if "envelope_cmin" in fits.frontiers:
        _refit_cmin_frontier(frames, fits, first, per_draw, seed)


def _note(draws: int, per_draw: int, ok: int, failed_draws: int) -> str:
    return (f"intervals over {draws} replicates of the B_crit(L) fit x {per_draw} resamples each "
            f"({ok} of {draws * per_draw} refits succeeded; {failed_draws} conversions failed): the points "
            "converted again with each replicate's B_* and alpha_B")


def _refit_cmin_frontier(frames: StudyFrames, fits: StudyFits, trials: list[StudyFits], per_draw: int,
                         seed: int) -> None:
    """The envelope in C_min ([K] table 6) with B_crit(L)'s replicates: its a, k_N, b, k_D intervals."""
    front = fits.frontiers["envelope_cmin"]
    curves = frontier_curves(frames)
    samples, failed_draws = [], 0
    for i, trial in enumerate(trials):
        try:
            converted, _ = with_cmin(curves, trial)
            again = envelope_frontier(converted, bootstrap=per_draw, seed=seed + 1 + i, compute="C_min")
        except (LmscaleError, ArithmeticError, ValueError):
            failed_draws += 1
            continue
        samples.append(again.samples)
    pooled = np.vstack(samples) if samples else np.full((0, 4), np.nan)
    ok = int(np.all(np.isfinite(pooled), axis=1).sum())
    front.samples = pooled
    front.ci = sample_intervals(pooled, front.ci_level) if ok >= 2 else None
    front.notes["bootstrap_failed"] = len(trials) * per_draw - ok
    front.notes["bcrit_propagated"] = _note(len(trials), per_draw, ok, failed_draws)
    entry = fits.exponents.get(APPROACHES["envelope_cmin"])
    if entry is not None:
        entry.update(ci=front.ci.get("a") if front.ci else None, **exponent_verdict(front))
        entry["how"] = f"{entry.get('how', '')}; {front.notes['bcrit_propagated']}"


def _refit_intervals(frames: StudyFrames, fits: StudyFits, key: str, law: FitResult, select: Any,
                     trials: list[StudyFits], per_draw: int, seed: int) -> None:
    """One law's intervals and verdict over B_crit(L)'s replicates (``trials``), in place."""
    form = law.form
    options = FitOptions(huber_delta=law.stats.get("huber_delta", FitOptions.huber_delta),
                         reduction=law.stats.get("reduction", FitOptions.reduction))
    center = form.to_theta(law.params)
    samples, failed_draws = [], 0
    for i, trial in enumerate(trials):
        try:
            pts, _ = select(frames, trial)
            points = prepare_points(pts, form)
            boot = run_bootstrap(form, points.X, points.y, options, center, per_draw, seed=seed + 1 + i,
                                 groups=points.groups, n_jobs=1)
        except (LmscaleError, ArithmeticError, ValueError, np.linalg.LinAlgError):
            failed_draws += 1
            continue
        samples.append(boot.params)
    requested = per_draw * len(trials)
    pooled = np.vstack(samples) if samples else np.empty((0, len(form.params)))
    ci = percentile_intervals(form, pooled, law.ci_level) if len(pooled) >= 2 else None
    stderr = bootstrap_stderr(form, pooled) if len(pooled) >= 2 else law.stderr
    points = prepare_points(fits.points[key], form)
    law.ci, law.stderr, law.bootstrap_params = ci, stderr, pooled
    law.identification = verdict(law.params, {x: points.X[x] for x in form.inputs}, points.y, ci=ci,
                                 stderr=stderr, samples=pooled, n_requested=requested)
    law.stats.update(n_bootstrap=requested, bootstrap_failed=requested - len(pooled),
                     ci_method="percentile, B_crit(L) propagated")
    law.notes["bcrit_propagated"] = _note(len(trials), per_draw, len(pooled), failed_draws)
