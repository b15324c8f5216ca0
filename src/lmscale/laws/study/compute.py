"""Compute: L(C), L(C_min) and the compute-optimal frontier three ways ([K] section 6, [H] section 3).

Which curves: Transformer learning curves after warm-up, on fresh data only
(a run repeating a dataset counts within its first pass). [H] approach 1
and L(C) at fixed batch use the runs of the reference batch size
(:func:`~lmscale.laws.study.frames.reference_batch`), in C; [K]'s frontier
(figure 14, table 6), L(C_min) and the crossing of section 6.3 use every
batch size in C_min = C / (1 + B / B_crit(L)) ([K] eq. 5.5), which removes
the batch's effect.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.io import at_batch
from lmscale.laws.study.frames import (
    StudyFrames,
    after_warmup,
    first_epoch,
    reference_batch,
    rule_of,
    transformer_curves,
)
from lmscale.laws.study.results import NotEnough, StudyFits, enough, rule_text

#: [H] table 2 and [K] table 6: published exponent a of N_opt ~ C^a per approach.
PUBLISHED_A = {"envelope": 0.50, "isoflop": 0.49, "parametric": 0.46, "envelope_cmin": 0.73}
APPROACHES = {
    "envelope": "approach 1: envelope of learning curves",
    "isoflop": "approach 2: IsoFLOP parabolas",
    "parametric": "approach 3: parametric L(N, D) ([H] eq. 2)",
    "envelope_cmin": "[K] table 6: envelope in C_min",
}
#: What each frontier is fitted against.
COMPUTE_OF = {"envelope": "C", "isoflop": "C", "parametric": "C", "envelope_cmin": "C_min"}


def frontier_curves(frames: StudyFrames) -> pd.DataFrame:
    """Transformer curve points after warm-up on fresh data (first pass of a repeated dataset)."""
    return first_epoch(frames, after_warmup(transformer_curves(frames)))


def _bcrit_choice(fits: StudyFits) -> tuple[Any, str]:
    if "bcrit" in fits.laws:
        return dict(fits.laws.laws["bcrit"].params), "B_crit(L) fitted to this study"
    return None, "the measured noise scale where available, [K]'s B_crit(L) elsewhere"


def with_cmin(curves: pd.DataFrame, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """The curves with ``C_min`` = C / (1 + B / B_crit(L)) ([K] eq. 5.5), and where B_crit came from."""
    from lmscale.laws.selection import cmin_envelope

    bcrit, how = _bcrit_choice(fits)
    if curves.empty:
        return curves.assign(C_min=pd.Series(dtype=float)), how
    converted = cmin_envelope(curves, bcrit=bcrit, envelope=False)
    return converted, f"B_crit from {how}"


def select_cmin_envelope(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(C_min) ([K] eq. 1.3): the lower envelope of the curves in C_min = C / (1 + B/B_crit)."""
    from lmscale.laws.selection import cmin_envelope

    curves = frontier_curves(frames)
    if curves.empty or curves["run_id"].nunique() < 2:
        raise NotEnough("needs learning curves of 2 or more Transformer runs")
    bcrit, how = _bcrit_choice(fits)
    pts = cmin_envelope(curves, bcrit=bcrit)
    enough(pts, "kaplan_cmin", 4, "points on the C_min envelope")
    return pts, (f"curve points after warm-up on fresh data, every batch size; {rule_text(pts, 'cmin_envelope')}; "
                 f"B_crit from {how}")


def select_fixed_batch_envelope(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(C) at fixed batch ([K] figure 13): the compute-efficient frontier of the reference-batch curves in C
    (the loss envelope, whichever size wins: approach 1's N_opt fit needs more)."""
    from lmscale.laws.frontier import envelope_points

    try:
        batch, curves = reference_batch_curves(frames)
        pts = envelope_points(curves)[["C", "loss", "N_opt"]]
    except LmscaleError as exc:
        raise NotEnough(f"needs the envelope of learning curves of 2 or more Transformer sizes: {exc}") from None
    enough(pts, "kaplan_c", 4, "points on the envelope")
    return pts, (f"the envelope of the Transformer learning curves after warm-up at the reference batch of "
                 f"{batch} tokens, in C: the lowest loss reached at or below each of {len(pts)} log-spaced C "
                 "values")


def _frontier(fits: StudyFits, method: str, make: Any) -> None:
    try:
        front = make()
    except LmscaleError as exc:
        fits.missing.setdefault(method, str(exc))
        return
    fits.frontiers[method] = front
    fits.missing.pop(method, None)
    fits.exponents[APPROACHES[method]] = {
        "a": front.a, "b": front.b, "ci": front.ci.get("a") if front.ci else None,
        "published": PUBLISHED_A[method], "compute": COMPUTE_OF[method], "method": method,
        "how": "; ".join(f"{k}: {v}" for k, v in front.notes.items() if isinstance(v, str | int | float)),
        **exponent_verdict(front, fits if method == "parametric" else None),
    }


def exponent_verdict(front: Any, fits: StudyFits | None = None) -> dict[str, Any]:
    """``identified`` and ``why`` for a frontier's exponent a, by the rule of ``lmscale.laws.identification``.

    The exponent is judged on its own bootstrap interval, as any exponent
    is. For approach 3 (``fits`` given) that interval comes from the [H]
    form's replicates, a = beta / (alpha + beta) of each: a ratio of the two
    exponents can be determined where E and B are not (a flat direction of
    E against A and alpha leaves the ratio nearly fixed); ``note`` then
    says that the form itself is not identified, so that only a, not the
    form's N_opt coefficient or its losses, is read from it.
    """
    from lmscale.laws.identification import MAX_FAILED, check_interval

    note = None
    if fits is not None and not fits.identified("chinchilla"):
        note = "a = beta / (alpha + beta) from the [H] form's replicates; the form itself is not identified (see chinchilla)"
    if not front.ci or not np.all(np.isfinite(front.ci["a"])):
        return {"identified": False, "why": "no interval (no bootstrap)", "note": note}
    _, problem = check_interval("a", float(front.a), *front.ci["a"], of="exponent")
    n = 0 if front.samples is None else len(front.samples)
    failed = int(front.notes.get("bootstrap_failed", 0) or 0)
    if problem is None and n and failed / (n + (failed if front.method == "parametric" else 0)) > MAX_FAILED:
        problem = f"{failed} bootstrap replicates failed (> {MAX_FAILED:.0%})"
    return {"identified": problem is None, "why": problem, "note": note}


def fit_parametric_frontier(fits: StudyFits) -> None:
    """[H] approach 3 from the study's chinchilla fit (when there is one)."""
    from lmscale.laws.frontier import parametric_frontier

    if "chinchilla" in fits.laws:
        _frontier(fits, "parametric", lambda: parametric_frontier(fits.laws.laws["chinchilla"]))


def reference_batch_curves(frames: StudyFrames) -> tuple[int | None, pd.DataFrame]:
    """The reference batch size and the Transformer curves at it (after warm-up, fresh data)."""
    batch = reference_batch(frames)
    curves = at_batch(frontier_curves(frames), batch, frames.results("transformer"))
    if curves.empty:
        raise LmscaleError("needs learning curves of 2 or more Transformer sizes")
    return batch, curves


def envelope_in_c(frames: StudyFrames, bootstrap: int, seed: int) -> Any:
    """[H] approach 1 on the reference-batch curves, in C."""
    from lmscale.laws.frontier import envelope_frontier

    batch, curves = reference_batch_curves(frames)
    front = envelope_frontier(curves, bootstrap=bootstrap, seed=seed)
    front.notes["batch_tokens"] = batch
    return front


def fit_frontiers(frames: StudyFrames, fits: StudyFits, bootstrap: int, seed: int) -> None:
    """[H] approaches 1 (in C, reference batch) and 2, and [K]'s envelope in C_min."""
    from lmscale.laws.frontier import envelope_frontier, isoflop_frontier

    _frontier(fits, "envelope", lambda: envelope_in_c(frames, bootstrap, seed))
    curves, how = with_cmin(frontier_curves(frames), fits)
    if curves.empty:
        fits.missing["envelope_cmin"] = "needs learning curves of 2 or more Transformer sizes"
    else:
        def cmin_front():
            front = envelope_frontier(curves, bootstrap=bootstrap, seed=seed, compute="C_min")
            front.notes["bcrit"] = how
            return front
        _frontier(fits, "envelope_cmin", cmin_front)
    runs = frames.results("transformer")
    iso = runs[rule_of(runs) == "isoflop"] if not runs.empty else runs
    if iso.empty:
        fits.missing["isoflop"] = "needs 'isoflop' groups: 3 or more sizes at each of 2 or more compute budgets"
    else:
        _frontier(fits, "isoflop", lambda: isoflop_frontier(iso, bootstrap=max(bootstrap, 0), seed=seed))


def envelope_stability(frames: StudyFrames, fits: StudyFits) -> dict[str, Any] | None:
    """Approach 1's exponent a refitted without each group that has curves on it.

    An exponent set by where some runs happen to end moves when they are left
    out; one set by the runs' losses does not. Returns ``{"a", "ci", "without":
    {group: a}, "max_shift", "stable"}`` (stable: every shift inside the
    interval's half-width on that side).
    """
    front = fits.frontiers.get("envelope")
    if front is None or not front.ci:
        return None
    every = frontier_curves(frames)
    curves = at_batch(every, front.notes.get("batch_tokens"), frames.results("transformer"))
    groups = sorted(curves["group"].dropna().unique()) if "group" in curves else []
    off = sorted(set(every["group"].dropna()) - set(groups)) if "group" in every else []
    without: dict[str, Any] = {}
    from lmscale.laws.frontier import envelope_frontier

    for group in groups:
        rest = curves[curves["group"] != group]
        try:
            without[str(group)] = float(envelope_frontier(rest, bootstrap=0).a)
        except LmscaleError as exc:
            without[str(group)] = f"not found without it: {exc}"
    lo, hi = front.ci["a"]
    shifts = [a - front.a for a in without.values() if isinstance(a, float)]
    stable = all((lo - front.a) <= d <= (hi - front.a) for d in shifts)
    return {"a": front.a, "ci": [lo, hi], "without": without, "not_on_it": off,
            "max_shift": max((abs(d) for d in shifts), default=0.0), "stable": stable}


def frontier_identification(front: Any, verdict: dict[str, Any]) -> dict[str, Any]:
    """A frontier's :func:`exponent_verdict` (its exponents row's) as ``extras["allocation"]`` carries it
    for the planner: ``identified``, ``failures`` and the width of a's interval in words (``a_width``)."""
    from lmscale.laws.identification import check_interval

    out = {"identified": verdict["identified"], "failures": [verdict["why"]] if verdict["why"] else []}
    if front.ci and np.all(np.isfinite(front.ci["a"])):
        out["a_width"] = check_interval("a", float(front.a), *front.ci["a"], of="exponent")[0]
    return out


def set_allocation(fits: StudyFits) -> None:
    """extras["allocation"]: the study's N_opt and D_opt, for the planner and the [K] 6.3 crossing.

    [K]'s frontier in C_min when there is one (table 6's convention: C means
    C_min), else approach 1 or 2 in C.
    """
    from lmscale.laws.planner import power_allocation

    for method in ("envelope_cmin", "envelope", "isoflop"):
        front = fits.frontiers.get(method)
        if front is not None:
            compute = COMPUTE_OF[method]
            alloc = power_allocation(
                N_opt=(front.k_N, front.a), D_opt=(front.k_D, front.b),
                where=f"this study, {APPROACHES[method]}; {compute} in FLOPs ({fits.flops} accounting)",
            )
            alloc["C"] = ("C_min, the compute at a batch far below critical ([K] eq. 5.5)"
                          if compute == "C_min" else "C, training FLOPs at the study's batch sizes")
            alloc["method"] = method
            alloc["compute"] = compute
            alloc["identification"] = frontier_identification(front, fits.exponents[APPROACHES[method]])
            if front.points is not None and {"C", "N_opt"} <= set(front.points) and not front.points.empty:
                alloc["data_range"] = {"N_max": float(front.points["N_opt"].max()),
                                       "C_max": float(front.points["C"].max())}
            if front.samples is not None:
                draws = np.asarray(front.samples, dtype=float).reshape(-1, 4)
                alloc["draws"] = draws[np.isfinite(draws).all(axis=1)].tolist()  # [a, k_N, b, k_D] each
            fits.laws.extras["allocation"] = alloc
            fits.missing.pop("allocation", None)
            return
    why = "; ".join(f"{APPROACHES[m]}: {fits.missing[m]}" for m in ("envelope_cmin", "envelope", "isoflop")
                    if m in fits.missing)
    fits.missing["allocation"] = ("needs the compute-optimal frontier: learning curves of 2 or more "
                                  "Transformer sizes, or IsoFLOP groups" + (f" ({why})" if why else ""))


def compute_range(fits: StudyFits, key: str = "kaplan_cmin", column: str = "C_min") -> tuple[float, float] | None:
    """Smallest and largest compute among a law's fitted points."""
    pts = fits.points.get(key)
    if pts is None or column not in pts or pts.empty:
        return None
    values = pts[column].to_numpy(dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return (float(values.min()), float(values.max())) if len(values) else None
