"""``fit_study(store) -> StudyFits``: every law a study's runs support, in order.

Applies the selection of each law (the family modules of this package:
``size_data``, ``batch``, ``compute``, ``context``) to choose its runs, fits
it with bootstrap intervals and its identification verdict
(:mod:`lmscale.laws.identification`), finds the compute-optimal frontier
three ways, runs the held-out check (the largest model predicted from the
others), the [K] 6.3 crossing with its interval, and the consistency checks
(approach 1 without each group, B_crit two ways, the other FLOP
accounting), and says for every law it could not fit which runs are missing.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.api import fit
from lmscale.laws.forms import OffsetPowerLaw, get_form
from lmscale.laws.result import FitResult, LawSet
from lmscale.laws.study.batch import (
    bcrit_agreement,
    bcrit_scatter,
    select_critical_batch,
    select_empirical_critical_batch,
    select_steps,
)
from lmscale.laws.study.compute import (
    compute_range,
    envelope_stability,
    fit_frontiers,
    fit_parametric_frontier,
    select_cmin_envelope,
    select_fixed_batch_envelope,
    set_allocation,
)
from lmscale.laws.study.context import (
    architecture_check,
    other_distributions,
    position_check,
    position_gaps,
    position_runs,
    select_positions,
    select_transfer,
)
from lmscale.laws.study.frames import ACCOUNTINGS, StudyFrames, count_distinct, with_accounting
from lmscale.laws.study.propagation import propagate_bcrit
from lmscale.laws.study.results import HoldoutCheck, StudyFits
from lmscale.laws.study.size_data import (
    select_data_sweep,
    select_nd_grid,
    select_parametric,
    select_size_sweep,
)

#: The laws fitted to a study, in order (later rules use earlier fits):
#: (key, law, selection).
STUDY_LAWS = (
    ("bcrit", "bcrit", select_critical_batch),
    ("bcrit_empirical", "bcrit", select_empirical_critical_batch),
    ("kaplan_n", "kaplan_n", select_size_sweep),
    ("kaplan_d", "kaplan_d", select_data_sweep),
    ("kaplan_nd", "kaplan_nd", select_nd_grid),
    ("chinchilla", "chinchilla", select_parametric),
    ("kaplan_c", "kaplan_c", select_fixed_batch_envelope),
    ("kaplan_cmin", "kaplan_cmin", select_cmin_envelope),
    ("kaplan_ns", "kaplan_ns", select_steps),
)

#: The laws and frontiers whose input is training compute (refitted with the other accounting).
COMPUTE_LAWS = ("kaplan_c", "kaplan_cmin")


# ---------------------------------------------------------------------------
# Fitting a study
# ---------------------------------------------------------------------------


def fit_study(
    store_or_frames: Any, bootstrap: int = 200, holdout: bool = True, seed: int = 0,
    name: str | None = None, progress: bool = False, flops: str = "6N", compare: bool = True,
) -> StudyFits:
    """Fit every law the study's runs support.

    Args:
        store_or_frames: a ``Store``, its path, a mapping of DataFrames, a
            final-points DataFrame, or :class:`StudyFrames`.
        bootstrap: bootstrap refits per law for the 95% intervals (0: none).
        holdout: predict the largest model's loss from L(N) fitted on the others.
        seed: seed of every bootstrap.
        name: name of the law set (default: the store's file name).
        progress: progress bars on stderr.
        flops: how training compute C is counted: ``"6N"`` (C = 6 N x tokens,
            [K] section 2.1) or ``"exact"`` (every term of [K] table 1: the
            attention and logits terms a small model is dominated by).
        compare: also refit the compute laws and approach 1 with the other
            accounting (``checks["other_accounting"]``: both, where they differ).

    Returns:
        :class:`StudyFits`; laws that could not be fitted are in ``missing``
        with the runs they would need.
    """
    if flops not in ACCOUNTINGS:
        raise LmscaleError(f"flops = {flops!r}: expected one of {', '.join(ACCOUNTINGS)}")
    raw = StudyFrames.load(store_or_frames)
    frames = with_accounting(raw, flops)
    label = name or (Path(frames.source).stem if frames.source not in ("frames", "") else "study")
    fits = StudyFits(laws=LawSet(name=label, source="fit", notes={"store": frames.source, "flops": flops}),
                     flops=flops)
    fits.accounting = accounting(frames, flops)
    for key, law, select in STUDY_LAWS:
        if key == "kaplan_c":
            fit_frontiers(frames, fits, bootstrap, seed)
        _fit_one(fits, key, law, lambda s=select: s(frames, fits), fit, bootstrap, seed, progress)
    propagate_bcrit(frames, fits, bootstrap, seed)
    fit_parametric_frontier(fits)
    for dist in other_distributions(frames):
        _fit_one(fits, f"transfer:{dist}", "transfer", lambda d=dist: select_transfer(frames, d), fit,
                 bootstrap, seed, progress)
    if not other_distributions(frames):
        fits.missing["transfer"] = "needs runs evaluated on another distribution besides the training one"
    for run_id in position_runs(frames):
        _fit_one(fits, f"position:{run_id}", "position", lambda r=run_id: select_positions(frames, r), fit,
                 bootstrap, seed, progress)
    set_allocation(fits)
    if holdout:
        fits.holdout = holdout_check(fits, bootstrap=bootstrap, seed=seed)
    fits.crossing = crossing_check(fits)
    for key, check in (("envelope_stability", lambda: envelope_stability(frames, fits)),
                       ("bcrit_agreement", lambda: bcrit_agreement(fits)),
                       ("bcrit_scatter", lambda: bcrit_scatter(fits)),
                       ("positions", lambda: position_check(frames, fits)),
                       ("architectures", lambda: architecture_check(frames, fits)),
                       ("position_gaps", lambda: position_gaps(frames)),
                       ("other_accounting", lambda: other_accounting(raw, fits, seed) if compare else None)):
        try:
            value = check()
        except (LmscaleError, ArithmeticError, ValueError) as exc:
            value = {"error": str(exc)}
        if value is not None:
            fits.checks[key] = value
    return fits


def _fit_one(fits: StudyFits, key: str, law: str, select: Any, fit: Any, bootstrap: int, seed: int,
             progress: bool) -> None:
    try:
        pts, rule = select()
        result = fit(pts, law=law, bootstrap=bootstrap, seed=seed, progress=progress)
    except LmscaleError as exc:
        fits.missing[key] = str(exc)
        return
    except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:  # one bad law never stops the others
        warnings.warn(f"fitting {key} failed: {exc!r}", stacklevel=2)
        fits.missing[key] = f"the fit failed: {type(exc).__name__}: {exc}"
        return
    bad = [p for p, v in result.params.items() if not np.isfinite(v)]
    if bad:
        fits.missing[key] = (f"the fit ran away: {', '.join(bad)} not finite on {len(pts)} points "
                             f"({rule})")
        return
    wrong = {p: v for p, v in result.params.items() if p.startswith(("alpha", "beta")) and v <= 0}
    if wrong:  # an exponent <= 0: loss not falling with scale; the runs do not pin the law down
        text = ", ".join(f"{p} = {v:.3g}" for p, v in wrong.items())
        fits.missing[key] = f"the fit gives {text} (not positive) on {len(pts)} points; needs runs spanning more scale"
        return
    degenerate = collapsed_offset(result, pts)
    if degenerate:
        fits.missing[key] = f"{degenerate} on {len(pts)} points ({rule})"
        return
    fits.add(key, result, pts, rule)


#: An offset below this fraction of the smallest fitted loss counts as collapsed to 0.
COLLAPSED_OFFSET = 1e-3


def collapsed_offset(result: FitResult, points: pd.DataFrame) -> str | None:
    """Why an ``E + (X_0 / X)^alpha`` fit is degenerate, or None.

    When the fit drives the irreducible term E to zero, the offset is not
    identified by the points: the rest of the law becomes a pure power law
    with a tiny exponent and a scale X_0 decades outside the data (t_0 ~
    1e90 positions on a small model's per-position loss): its parameters
    mean nothing, so the law is reported as not fitted, with the reason.
    """
    if not isinstance(result.form, OffsetPowerLaw):
        return None
    offset, scale, alpha = result.form.params
    floor = float(points[result.form.output].min())
    value = result.params[offset]
    if value >= COLLAPSED_OFFSET * floor:
        return None
    return (f"the fit drives {offset} to {value:.3g} (smallest loss {floor:.4g}) with {scale} = "
            f"{result.params[scale]:.3g}, {alpha} = {result.params[alpha]:.3g}: the points do not "
            f"identify an irreducible loss (a plateau or a pure power law, not {result.form.formula})")


def holdout_check(fits: StudyFits, law: str = "kaplan_n", bootstrap: int = 0, seed: int = 0) -> HoldoutCheck | None:
    """Fit ``law`` without the largest model and predict its loss, with a 95% interval.

    Every point of the largest N is left out of the fit; the check reports
    the lowest-loss run of that size (the most converged one). The interval
    is the prediction's percentile band over ``bootstrap`` refits.
    """
    pts = fits.points.get(law)
    if pts is None or law not in fits.laws:
        fits.missing["holdout"] = f"needs a fitted {law}: {fits.missing.get(law, 'not fitted')}"
        return None
    largest = pts["N"] >= pts["N"].max() * (1.0 - 1e-9)
    train = pts[~largest]
    if count_distinct(train["N"]) < 2 or len(train) < len(get_form(law).params) + 1:
        fits.missing["holdout"] = (f"needs {law} points at 4 or more sizes (3 to fit without the largest; "
                                   f"has {count_distinct(pts['N'])})")
        return None
    held = pts[largest].sort_values("loss").iloc[0]
    result = fit(train, law=law, bootstrap=bootstrap, seed=seed)
    ci = None
    if result.bootstrap_params is not None and len(result.bootstrap_params) > 1:
        lo, hi = result.predict_interval(N=float(held["N"]))
        ci = (float(lo), float(hi))
    return HoldoutCheck(law=law, run_id=str(held.get("run_id", "")), N=float(held["N"]),
                        D=float(held.get("D", float("nan"))), loss=float(held["loss"]),
                        predicted=float(result.predict(N=float(held["N"]))), n_fit=len(train), predicted_ci=ci,
                        fitted_max=float(train["N"].max()))


def crossing_check(fits: StudyFits) -> Any:
    """The [K] 6.3 crossing of the study's L(C_min), L(D) and D_opt(C_min), with its interval."""
    from lmscale.laws.contradiction import crossing

    alloc = fits.laws.extras.get("allocation") or {}
    if not {"kaplan_cmin", "kaplan_d"} <= set(fits.laws.laws) or alloc.get("method") != "envelope_cmin":
        fits.missing["crossing"] = ("needs L(C_min), L(D) and the frontier D_opt(C_min): "
                                    + "; ".join(f"{k}: {fits.missing[k]}" for k in
                                                ("kaplan_cmin", "kaplan_d", "envelope_cmin") if k in fits.missing))
        return None
    front = fits.frontiers["envelope_cmin"]
    samples = None
    if front.samples is not None:
        samples = front.samples[:, [3, 2]]  # (k_D, b)
        samples = samples[np.all(np.isfinite(samples), axis=1)]
    span = compute_range(fits)
    try:
        return crossing(fits.laws, d_opt_samples=samples, data_max=span[1] if span else None)
    except LmscaleError as exc:
        fits.missing["crossing"] = str(exc)
        return None


def other_accounting(raw: StudyFrames, fits: StudyFits, seed: int) -> dict[str, Any] | None:
    """The compute laws and approach 1 refitted with the other FLOP count (no bootstrap)."""
    other = "exact" if fits.flops == "6N" else "6N"
    alt = fit_study(raw, bootstrap=0, holdout=False, seed=seed, flops=other, compare=False)
    lines, values = [], {}
    for key in COMPUTE_LAWS:
        if key in alt.laws and key in fits.laws:
            mine, theirs = fits.laws.laws[key], alt.laws.laws[key]
            alpha = mine.form.params[1]
            values[key] = {"this": mine.params[alpha], "other": theirs.params[alpha]}
            lines.append(f"{key} {alpha} = {theirs.params[alpha]:.4g} (with {fits.flops}: {mine.params[alpha]:.4g})")
    for method, front in alt.frontiers.items():
        mine = fits.frontiers.get(method)
        if mine is not None and method != "parametric":
            values[method] = {"this": mine.a, "other": front.a}
            lines.append(f"{method} a = {front.a:.3g} (with {fits.flops}: {mine.a:.3g})")
    if not lines:
        return None
    return {"flops": other, "values": values, "lines": lines}


def accounting(frames: StudyFrames, flops: str = "6N") -> dict[str, str]:
    """How N, D, C and the loss of the fits were counted (from the store's columns)."""
    pts = frames.final_points
    exact = ""
    if not pts.empty and {"N", "N_exact"} <= set(pts):
        ratio = (pts["N_exact"] / pts["N"]).replace([np.inf, -np.inf], np.nan).dropna()
        if len(ratio):
            exact = f"; the exact count is {ratio.min():.3g}x to {ratio.max():.3g}x of it in this study"
    c_ratio = ""
    if not pts.empty and {"C", "C_exact"} <= set(pts) and flops == "6N":
        r = (pts["C_exact"] / pts["C"]).replace([np.inf, -np.inf], np.nan).dropna()
        if len(r):
            c_ratio = f"; exact FLOPs are {r.min():.3g}x to {r.max():.3g}x of 6N here"
    return {
        "N": "non-embedding parameters by [K]'s formula 2 d_model n_layer (2 d_attn + d_ff) (no biases, "
             "norms or embeddings); the exact count of the instantiated model is in the run table" + exact,
        "D": "unique training tokens: tokens trained, capped at the dataset size for multi-epoch runs",
        "C": ACCOUNTINGS[flops] + ", training tokens counted with repeats (multi-epoch runs: epochs x D)"
             + c_ratio + ("; fit_study(flops='exact') counts every term" if flops == "6N" else ""),
        "C_min": "C / (1 + B / B_crit(L)) ([K] eq. 5.5), the compute at a batch far below critical",
        "loss": "final test loss on the training distribution in nats/token (the best one for "
                "early-stopped runs); curves use the test loss at each evaluation",
        "architectures": "the laws are fitted on Transformer runs; LSTM and Universal Transformer runs "
                         "appear only in the architecture figures",
    }
