"""``fit_study(store) -> StudyFits``: every law a study's runs support, in order.

Applies the selection of each law (the family modules of this package:
``size_data``, ``batch``, ``compute``, ``context``) to choose its runs, fits
it with bootstrap intervals, finds the compute-optimal frontier three ways,
runs the held-out check (the largest model predicted from the others), and
says for every law it could not fit which runs are missing.
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
from lmscale.laws.study.batch import select_critical_batch, select_steps
from lmscale.laws.study.compute import (
    fit_frontiers,
    fit_parametric_frontier,
    select_cmin_envelope,
    select_fixed_batch_envelope,
    set_allocation,
)
from lmscale.laws.study.context import (
    other_distributions,
    position_runs,
    select_positions,
    select_transfer,
)
from lmscale.laws.study.frames import StudyFrames, count_distinct
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
    ("kaplan_n", "kaplan_n", select_size_sweep),
    ("kaplan_d", "kaplan_d", select_data_sweep),
    ("kaplan_nd", "kaplan_nd", select_nd_grid),
    ("chinchilla", "chinchilla", select_parametric),
    ("kaplan_c", "kaplan_c", select_fixed_batch_envelope),
    ("kaplan_cmin", "kaplan_cmin", select_cmin_envelope),
    ("kaplan_ns", "kaplan_ns", select_steps),
)


# ---------------------------------------------------------------------------
# Fitting a study
# ---------------------------------------------------------------------------


def fit_study(
    store_or_frames: Any, bootstrap: int = 200, holdout: bool = True, seed: int = 0,
    name: str | None = None, progress: bool = False,
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

    Returns:
        :class:`StudyFits`; laws that could not be fitted are in ``missing``
        with the runs they would need.
    """
    frames = StudyFrames.load(store_or_frames)
    label = name or (Path(frames.source).stem if frames.source not in ("frames", "") else "study")
    fits = StudyFits(laws=LawSet(name=label, source="fit", notes={"store": frames.source}))
    fits.accounting = accounting(frames)
    for key, law, select in STUDY_LAWS:
        if key == "kaplan_c":
            fit_frontiers(frames, fits, bootstrap, seed)
        _fit_one(fits, key, law, lambda s=select: s(frames, fits), fit, bootstrap, seed, progress)
    fit_parametric_frontier(fits)
    for dist in other_distributions(frames):
        _fit_one(fits, f"transfer:{dist}", "transfer", lambda d=dist: select_transfer(frames, d), fit,
                 bootstrap, seed, progress)
    if not other_distributions(frames):
        fits.missing["transfer"] = "needs runs evaluated on another distribution besides the training one"
    for run_id in position_runs(frames):
        _fit_one(fits, f"position:{run_id}", "position", lambda r=run_id: select_positions(frames, r), fit,
                 0, seed, progress)
    set_allocation(fits)
    if holdout:
        fits.holdout = holdout_check(fits)
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


def holdout_check(fits: StudyFits, law: str = "kaplan_n") -> HoldoutCheck | None:
    """Fit ``law`` without the largest model and predict its loss.

    Every point of the largest N is left out of the fit; the check reports
    the lowest-loss run of that size (the most converged one).
    """
    pts = fits.points.get(law)
    if pts is None or law not in fits.laws:
        fits.missing["holdout"] = f"needs a fitted {law}: {fits.missing.get(law, 'not fitted')}"
        return None
    largest = pts["N"] >= pts["N"].max() * (1.0 - 1e-9)
    train = pts[~largest]
    if count_distinct(train["N"]) < 2 or len(train) < len(get_form(law).params) + 1:
        fits.missing["holdout"] = f"needs {law} points at 3 or more sizes (has {count_distinct(pts['N'])})"
        return None
    held = pts[largest].sort_values("loss").iloc[0]
    result = fit(train, law=law)
    return HoldoutCheck(law=law, run_id=str(held.get("run_id", "")), N=float(held["N"]),
                        D=float(held.get("D", float("nan"))), loss=float(held["loss"]),
                        predicted=float(result.predict(N=float(held["N"]))), n_fit=len(train))


def accounting(frames: StudyFrames) -> dict[str, str]:
    """How N, D, C and the loss of the fits were counted (from the store's columns)."""
    pts = frames.final_points
    exact = ""
    if not pts.empty and {"N", "N_exact"} <= set(pts):
        ratio = (pts["N_exact"] / pts["N"]).replace([np.inf, -np.inf], np.nan).dropna()
        if len(ratio):
            exact = f"; the exact count is {ratio.min():.3g}x to {ratio.max():.3g}x of it in this study"
    return {
        "N": "non-embedding parameters by [K]'s formula 2 d_model n_layer (2 d_attn + d_ff) (no biases, "
             "norms or embeddings); the exact count of the instantiated model is in the run table" + exact,
        "D": "tokens trained, capped at the dataset size for multi-epoch runs",
        "C": "C = 6 N D, training FLOPs per [K] section 2.1 (no attention or logits terms); the exact "
             "FLOPs with them are the store's C_exact column, not used by the fits",
        "C_min": "C / (1 + B / B_crit(L)) ([K] eq. 5.5), the compute at a batch far below critical",
        "loss": "final test loss on the training distribution in nats/token (the best one for "
                "early-stopped runs); curves use the test loss at each evaluation",
        "architectures": "the laws are fitted on Transformer runs; LSTM and Universal Transformer runs "
                         "appear only in the architecture figure",
    }
