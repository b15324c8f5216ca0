"""Compute: L(C), L(C_min) and the compute-optimal frontier three ways ([K] section 6, [H] section 3)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.study.frames import StudyFrames, after_warmup, rule_of, transformer_curves
from lmscale.laws.study.results import NotEnough, StudyFits, enough, rule_text

#: [H] table 2 and [K] table 6: published exponent a of N_opt ~ C^a per approach.
PUBLISHED_A = {"envelope": 0.50, "isoflop": 0.49, "parametric": 0.46}
APPROACHES = {
    "envelope": "approach 1: envelope of learning curves",
    "isoflop": "approach 2: IsoFLOP parabolas",
    "parametric": "approach 3: parametric L(N, D) ([H] eq. 2)",
}


def _bcrit_choice(fits: StudyFits) -> tuple[Any, str]:
    if "bcrit" in fits.laws:
        return dict(fits.laws.laws["bcrit"].params), "B_crit(L) fitted to this study"
    return None, "the measured noise scale where available, [K]'s B_crit(L) elsewhere"


def select_cmin_envelope(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(C_min) ([K] eq. 1.3): the lower envelope of the curves in C_min = C / (1 + B/B_crit)."""
    from lmscale.laws.selection import cmin_envelope

    curves = after_warmup(transformer_curves(frames))
    if curves.empty or curves["run_id"].nunique() < 2:
        raise NotEnough("needs learning curves of 2 or more Transformer runs")
    bcrit, how = _bcrit_choice(fits)
    pts = cmin_envelope(curves, bcrit=bcrit)
    enough(pts, "kaplan_cmin", 4, "points on the C_min envelope")
    return pts, f"curve points after warm-up; {rule_text(pts, 'cmin_envelope')}; B_crit from {how}"


def select_fixed_batch_envelope(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(C) at fixed batch ([K] figure 13): the compute-efficient frontier of the curves in C."""
    front = fits.frontiers.get("envelope")
    if front is None or front.points is None or front.points.empty:
        raise NotEnough("needs the envelope of learning curves of 2 or more Transformer sizes: "
                        + fits.missing.get("envelope", "not found"))
    pts = front.points[["C", "loss", "N_opt"]]
    enough(pts, "kaplan_c", 4, "points on the envelope")
    return pts, (f"the envelope of the Transformer learning curves after warm-up, in C = 6ND at each "
                 f"run's batch size: "
                 f"the lowest interpolated loss at {len(pts)} log-spaced C values reached by 2 or more runs")


def _frontier(fits: StudyFits, method: str, make: Any) -> None:
    try:
        front = make()
    except LmscaleError as exc:
        fits.missing.setdefault(method, str(exc))
        return
    fits.frontiers[method] = front
    fits.missing.pop(method, None)
    a_ci = front.ci.get("a") if front.ci else None
    fits.exponents[APPROACHES[method]] = {
        "a": front.a, "b": front.b, "ci": a_ci, "published": PUBLISHED_A[method],
        "how": "; ".join(f"{k}: {v}" for k, v in front.notes.items() if isinstance(v, str | int | float)),
    }


def fit_parametric_frontier(fits: StudyFits) -> None:
    """[H] approach 3 from the study's chinchilla fit (when there is one)."""
    from lmscale.laws.frontier import parametric_frontier

    if "chinchilla" in fits.laws:
        _frontier(fits, "parametric", lambda: parametric_frontier(fits.laws.laws["chinchilla"]))


def fit_frontiers(frames: StudyFrames, fits: StudyFits, bootstrap: int, seed: int) -> None:
    """[H] approaches 1 and 2 (approach 3 follows the chinchilla fit)."""
    from lmscale.laws.frontier import envelope_frontier, isoflop_frontier

    curves = after_warmup(transformer_curves(frames))
    if curves.empty:
        fits.missing["envelope"] = "needs learning curves of 2 or more Transformer sizes"
    else:
        _frontier(fits, "envelope", lambda: envelope_frontier(curves, bootstrap=bootstrap, seed=seed))
    runs = frames.results("transformer")
    iso = runs[rule_of(runs) == "isoflop"] if not runs.empty else runs
    if iso.empty:
        fits.missing["isoflop"] = "needs 'isoflop' groups: 3 or more sizes at each of 2 or more compute budgets"
    else:
        _frontier(fits, "isoflop", lambda: isoflop_frontier(iso, bootstrap=max(bootstrap, 0), seed=seed))


def set_allocation(fits: StudyFits) -> None:
    """extras["allocation"]: the study's N_opt(C), D_opt(C) (envelope, else IsoFLOP), for the planner."""
    from lmscale.laws.planner import power_allocation

    for method in ("envelope", "isoflop"):
        front = fits.frontiers.get(method)
        if front is not None:
            fits.laws.extras["allocation"] = power_allocation(
                N_opt=(front.k_N, front.a), D_opt=(front.k_D, front.b),
                where=f"this study, [H] {APPROACHES[method]}; C = 6ND in FLOPs",
            )
            fits.missing.pop("allocation", None)
            return
    fits.missing["allocation"] = ("needs the compute-optimal frontier: learning curves of 2 or more "
                                  "Transformer sizes, or IsoFLOP groups")
