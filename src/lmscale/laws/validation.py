"""Validation by scale: rolling cuts through the model sizes, an audit of every candidate, the choice.

Cut k (k = 1..K) fits the runs below a threshold size and holds out every
run at or above it, all runs of one size on the same side. The thresholds
are spaced in log size, not by count: cut k holds out the sizes in the top
``k x CUT_SPAN_SHARE`` (15% per cut) of the decades the sizes span, and at
least one more size than cut k - 1. On a sparse ladder this is the k-th
largest size; on densely spaced sizes (digitised points a few percent
apart) it keeps the cuts from testing extrapolations of a few hundredths
of a decade, which reward fits that are merely local. Sizes
are the distinct values of N (values within 1% are one size, as digitised
points are), or of the compute where the table has no N or ``by="C"``:
C = 6 N D wherever N and D are known, whatever C column the table also has
(the compute the intervals measure distances in; OLMo's C counts
attention and embeddings, 1.67 x 6ND at 190M and 1.21 x at 3.2B, and cut by
it the OLMo forecast chose another variant of the same law and missed the
3.2B runs by 1.46% instead of 0.58%), the table's C only without them.
When the model sizes leave fewer than :data:`MIN_CUTS_TO_SWITCH` cuts and
no axis was asked for, the cuts go by compute instead, where that gives
more (a ladder of a few sizes, each trained at several token budgets, has
many more distinct budgets than sizes): on synthetic ladders of 4 sizes x 5
budgets per size (1 cut by size), choosing on 3 cuts by compute picked the
true form in 80-100% of 20 seeds per form, where keeping the reference
fit picks it only when it is the reference; 2 larger held-out sizes were
predicted within 0.17% to 0.40% mean error, against 0.31% to 5.0%.
Each cut reports the mean and the worst |predicted / measured - 1| of the
held-out runs, and keeps every held-out point's log residual
log(measured / predicted) with its distance beyond the fitted data in
decades (:func:`~lmscale.laws.intervals.beyond`: of model size or of compute C = 6 N D, whichever
is farther): the material the forecast
intervals are calibrated on (:mod:`lmscale.laws.intervals`).

The score of a candidate is the mean over the cuts of the cut's mean
|relative error|. The choice (:func:`choose`): the lowest score; candidates
within ``tie_rtol`` (10%) of it are tied, and the simplest of them wins
(fewer parameters, then the default fitting variant), so an extra
parameter has to earn its place on the held-out runs. With fewer than
:data:`MIN_CUTS_TO_SWITCH` cuts the reference fit, [H]'s form fitted as
[H] did (:data:`REFERENCE`), stays: one cut is one comparison, and on the
OLMo ladder the ranking of the forms at its one cut is the reverse of
their ranking on the next size up.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from lmscale.errors import LmscaleError
from lmscale.laws.candidates import Candidate
from lmscale.laws.fitting import compute_weights, minimise
from lmscale.laws.goodness import prediction_variance
from lmscale.laws.intervals import beyond
from lmscale.laws.io import Points, derive_columns, prepare_points, rename_columns

#: Default number of cuts, and the fewest distinct sizes every cut must keep to fit on.
DEFAULT_CUTS = 3
MIN_TRAIN_SIZES = 3
#: Values within this relative distance are one size.
SIZE_RTOL = 0.01
#: Share of the log-size span per cut: cut k holds out the sizes in the top k x 15% (and one more than cut k - 1).
CUT_SPAN_SHARE = 0.15
#: The candidate that stays chosen when the cuts are too few to choose by.
REFERENCE = "chinchilla"
#: Fewest cuts on which the choice may leave the reference.
MIN_CUTS_TO_SWITCH = 2
#: Grid starts screened per cut fit (``FitOptions.n_screen``); the previous cut's minimum is one more start.
CUT_SCREEN = 8


def compute_of(points: Points) -> np.ndarray:
    """Training compute of every row, 6 N D where the law has N and D (else the row size)."""
    if "N" in points.X and "D" in points.X:
        return 6.0 * points.X["N"] * points.X["D"]
    return points.size


def size_axis(frame: pd.DataFrame, by: str | None = None, columns: Mapping[str, str] | None = None,
              ) -> tuple[np.ndarray, str]:
    """The size of every row for the cuts and the axis used: ``"N"`` or ``"C"`` (compute)."""
    frame = rename_columns(frame, columns)
    if by not in (None, "N", "C"):
        raise LmscaleError(f"cut by {by!r}: expected 'N' (model size) or 'C' (compute)")
    if by is None:
        by = "N" if "N" in frame.columns else "C"
    derived, _ = derive_columns(frame, ("D", "C") if by == "C" else (by,))  # D from tokens too
    if by == "C" and {"N", "D"} <= set(derived.columns):
        # the compute the intervals measure distances in (6 N D), whatever C column the table has:
        # a C that counts attention and embeddings (OLMo's, 1.67 to 1.21 x 6ND from 190M to 3.2B)
        # would order the runs into other cuts than the distances beyond them
        derived, _ = derive_columns(derived.drop(columns="C", errors="ignore"), ("C",))
    if by not in derived.columns:
        raise LmscaleError(f"cut by {by}: the table has no {by} column"
                           + (" (nor N and D to derive C = 6 N D)" if by == "C" else ""))
    values = pd.to_numeric(derived[by], errors="coerce").to_numpy(dtype=float)
    return values, by


def distinct_sizes(values: np.ndarray, rtol: float = SIZE_RTOL) -> np.ndarray:
    """The lower edge of every distinct size, ascending (values within ``rtol`` are one size)."""
    v = np.sort(values[np.isfinite(values) & (values > 0)])
    edges: list[float] = []
    for x in v:
        if not edges or x > edges[-1] * (1.0 + rtol):
            edges.append(float(x))
    return np.array(edges)


def cut_thresholds(values: np.ndarray, n_cuts: int | None = None, min_train_sizes: int = MIN_TRAIN_SIZES,
                   what: str = "model sizes") -> np.ndarray:
    """Thresholds of cuts 1..K, largest first: lower edges of sizes, spaced in log size.

    Cut k's threshold is the smallest size within the top ``k x CUT_SPAN_SHARE``
    of the log-size span, moved down where needed so that every cut holds out
    at least one more size than the one before and leaves ``min_train_sizes``
    sizes below the deepest. ``n_cuts=None``: up to :data:`DEFAULT_CUTS`, as many
    as leave ``min_train_sizes`` sizes to fit on; an explicit count that the
    sizes cannot give is an error.
    """
    edges = distinct_sizes(values)
    m, most = len(edges), len(edges) - min_train_sizes
    if n_cuts is not None and (isinstance(n_cuts, bool) or not isinstance(n_cuts, int | np.integer) or n_cuts < 1):
        raise LmscaleError(f"cuts = {n_cuts!r}: expected a positive number of cuts")
    asked = 1 if n_cuts is None else int(n_cuts)
    if asked > most:
        raise LmscaleError(
            f"validation by scale: the runs have {m} distinct {what}; {asked + min_train_sizes} are needed "
            f"({asked} cut(s), and {min_train_sizes} sizes below the cuts to fit on): add runs at more "
            "sizes" + (" or ask for fewer cuts" if asked > 1 else ""))
    n_cuts = min(DEFAULT_CUTS, most) if n_cuts is None else asked
    logs = np.log10(edges)
    span = logs[-1] - logs[0]
    index, previous = [], m
    for k in range(1, n_cuts + 1):
        i = int(np.searchsorted(logs, logs[-1] - k * CUT_SPAN_SHARE * span - 1e-12))
        i = max(min(i, previous - 1), min_train_sizes + n_cuts - k)
        index.append(i)
        previous = i
    return edges[index]


@dataclass
class CutResult:
    """One candidate at one cut."""

    candidate: str
    k: int
    threshold: float
    n_train: int
    n_held: int
    mean_abs_rel_error: float
    max_abs_rel_error: float
    mean_rel_error: float
    log_residuals: np.ndarray = field(repr=False)
    distances: np.ndarray = field(repr=False)
    held_index: np.ndarray = field(repr=False)
    predicted: np.ndarray = field(repr=False)
    measured: np.ndarray = field(repr=False)
    param_var: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    params: dict[str, float] = field(repr=False, default_factory=dict)  # the fit below the cut

    def row(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "cut": self.k, "threshold": self.threshold,
                "train_rows": self.n_train, "held_out_rows": self.n_held,
                "mean_abs_rel_error": self.mean_abs_rel_error, "max_abs_rel_error": self.max_abs_rel_error,
                "mean_rel_error": self.mean_rel_error,
                "max_distance_decades": float(np.max(self.distances)) if len(self.distances) else 0.0}


def validate(candidate: Candidate, points: Points, sizes: np.ndarray, thresholds: Sequence[float]) -> list[CutResult]:
    """Fit ``candidate`` below each threshold and score it on the runs at or above it.

    ``sizes``: the cut axis of every row of ``points``. Each cut's search
    screens at most :data:`CUT_SCREEN` grid starts, runs L-BFGS from the 2
    best grid and 2 best screened starts, and from the previous cut's
    minimum (the cuts are nested).
    """
    form = candidate.form
    options = replace(candidate.options, n_screen=min(candidate.options.n_screen, CUT_SCREEN),
                      n_refine=min(candidate.options.n_refine, 2))
    compute = compute_of(points)
    warm: list[np.ndarray] = []
    out = []
    for k, threshold in enumerate(thresholds, start=1):
        held = sizes >= threshold * (1.0 - 1e-12)
        train = ~held
        if train.sum() <= len(form.params):
            raise LmscaleError(f"{candidate.name}, cut {k}: {int(train.sum())} rows below the cut at "
                               f"{threshold:.3g}; the law has {len(form.params)} parameters")
        sub = points.subset(train)
        best = minimise(form, sub.X, np.log(sub.y), options, weights=compute_weights(sub.size, options.weight_power),
                        warm=warm)
        warm = [best.theta]
        X_held = {name: v[held] for name, v in points.X.items()}
        with np.errstate(over="ignore", invalid="ignore"):
            pred = np.exp(form.log_predict(best.theta, X_held))
        measured = points.y[held]
        rel = pred / measured - 1.0
        out.append(CutResult(
            candidate=candidate.name, k=k, threshold=float(threshold), n_train=int(train.sum()),
            n_held=int(held.sum()), mean_abs_rel_error=float(np.mean(np.abs(rel))),
            max_abs_rel_error=float(np.max(np.abs(rel))), mean_rel_error=float(np.mean(rel)),
            log_residuals=np.log(measured) - np.log(pred),
            distances=_beyond_of(points, compute, train, held), held_index=np.flatnonzero(held),
            predicted=pred, measured=measured,
            param_var=prediction_variance(form, best.theta, sub.X, sub.y, X_held),
            params=form.from_theta(best.theta)))
    return out


def _beyond_of(points: Points, compute: np.ndarray, train: np.ndarray, held: np.ndarray) -> np.ndarray:
    N = points.X.get("N")
    return beyond(None if N is None else N[held], compute[held], None if N is None else N[train].max(),
                  compute[train].max())


def score(results: Sequence[CutResult]) -> float:
    """Mean over the cuts of the mean |relative error| (inf when a prediction is not finite)."""
    values = [r.mean_abs_rel_error for r in results]
    return float(np.mean(values)) if values and np.all(np.isfinite(values)) else float("inf")


def choose(scores: Mapping[str, float], candidates: Sequence[Candidate], tie_rtol: float = 0.1,
           n_cuts: int | None = None) -> tuple[Candidate, str]:
    """The candidate to forecast with, and why (see the module docstring).

    ``n_cuts``: the cuts the scores are means over; fewer than
    :data:`MIN_CUTS_TO_SWITCH` keep the :data:`REFERENCE` candidate.
    """
    pick, reason = _lowest(scores, candidates, tie_rtol)
    ref = next((c for c in candidates if c.name == REFERENCE), None)
    if n_cuts is None or ref is None or pick.name == REFERENCE or not np.isfinite(scores.get(REFERENCE, np.inf)):
        return pick, reason
    if n_cuts < MIN_CUTS_TO_SWITCH:
        return ref, (f"the reference fit, kept: {pick.name} validated lower ({scores[pick.name]:.3%} against "
                     f"{scores[REFERENCE]:.3%}) but on {n_cuts} cut; leaving the reference takes "
                     f"{MIN_CUTS_TO_SWITCH} or more cuts (runs at more model sizes)")
    return pick, reason


def _lowest(scores: Mapping[str, float], candidates: Sequence[Candidate], tie_rtol: float,
            ) -> tuple[Candidate, str]:
    """The lowest score, the simplest among those within ``tie_rtol`` of it."""
    finite = {c.name: scores[c.name] for c in candidates if np.isfinite(scores.get(c.name, np.inf))}
    if not finite:
        raise LmscaleError("validation by scale: no candidate gave finite predictions on the held-out runs")
    best_name = min(finite, key=finite.get)
    best = finite[best_name]
    tied = [c for c in candidates if c.name in finite and finite[c.name] <= best * (1.0 + tie_rtol)]
    pick = min(tied, key=lambda c: (c.rank, finite[c.name]))
    if pick.name == best_name:
        reason = f"lowest validated error ({best:.3%} mean |relative error| over the cuts)"
        others = [c.name for c in tied if c.name != pick.name]
        if others:
            reason += f"; ties within {tie_rtol:.0%}: {', '.join(others)} (not simpler)"
    else:
        reason = (f"validated error {finite[pick.name]:.3%}, within {tie_rtol:.0%} of the lowest "
                  f"({best_name}, {best:.3%}), with fewer parameters or the default fitting")
    return pick, reason


@dataclass
class Audit:
    """Every candidate scored at every cut, and the choice.

    Attributes:
        by: the cut axis, ``"N"`` or ``"C"``.
        thresholds: cut k holds out the sizes >= ``thresholds[k - 1]``.
        results: candidate name -> its :class:`CutResult` per cut.
        scores: candidate name -> mean over cuts of the mean |relative error|.
        candidates: the candidates scored, in order.
        chosen: the candidate chosen; ``reason`` says why.
        skipped: forms or candidates left out, with the reason.
        n_sizes: distinct sizes in the data.
        axis_note: why the cuts go by compute where the model sizes were the default ('' otherwise).
    """

    by: str
    thresholds: np.ndarray
    results: dict[str, list[CutResult]]
    scores: dict[str, float]
    candidates: list[Candidate]
    chosen: Candidate
    reason: str
    skipped: dict[str, str] = field(default_factory=dict)
    n_sizes: int = 0
    axis_note: str = ""

    def table(self) -> list[dict[str, Any]]:
        """One row per candidate and cut (the ``--audit`` table), best candidate first."""
        order = sorted(self.candidates, key=lambda c: (self.scores[c.name], c.rank))
        return [{**r.row(), "law": c.law, "variant": c.variant, "n_params": c.n_params,
                 "score": self.scores[c.name]} for c in order for r in self.results[c.name]]

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "thresholds": [float(t) for t in self.thresholds], "n_sizes": self.n_sizes,
                "chosen": self.chosen.name, "reason": self.reason,
                "scores": dict(sorted(self.scores.items(), key=lambda kv: kv[1])),
                "table": self.table(), "skipped": dict(self.skipped), "axis_note": self.axis_note}

    def text(self) -> str:
        return audit_text(self.to_dict())


def audit_text(data: Mapping[str, Any]) -> str:
    """An audit (``Audit.to_dict()`` form) as a fixed-width table, one line per candidate and cut."""
    what, unit, axis = (("model size N", "sizes", "size") if data["by"] == "N"
                        else ("compute C", "budgets", "compute"))
    lines = [f"validation by scale: {len(data['thresholds'])} cut(s) by {what} ({data['n_sizes']} distinct {unit}); "
             f"cut k fits the runs below its threshold (spaced in log {axis}) and predicts the rest",
             *([f"cut by compute: {data['axis_note']}"] if data.get("axis_note") else []),
             f"{'candidate':<34} {'k':>2} {'held out >=':>11} {'fit':>4} {'held':>4} "
             f"{'mean |err|':>10} {'worst':>8} {'bias':>8} {'score':>8}"]
    for row in data["table"]:
        lines.append(f"{row['candidate']:<34} {row['cut']:>2} {row['threshold']:>11.3g} "
                     f"{row['train_rows']:>4} {row['held_out_rows']:>4} {row['mean_abs_rel_error']:>10.3%} "
                     f"{row['max_abs_rel_error']:>8.3%} {row['mean_rel_error']:>+8.3%} {row['score']:>8.3%}")
    lines.append(f"chosen: {data['chosen']}: {data['reason']}")
    lines += [f"not a candidate: {k}: {v}" for k, v in data.get("skipped", {}).items()]
    return "\n".join(lines)


def audit(
    frame: pd.DataFrame, candidates: Sequence[Candidate], n_cuts: int | None = None, by: str | None = None,
    columns: Mapping[str, str] | None = None, drop_highest_loss: int = 0, tie_rtol: float = 0.1,
    skipped: Mapping[str, str] | None = None, min_train_sizes: int = MIN_TRAIN_SIZES, progress: bool = False,
) -> tuple[Audit, dict[str, Points]]:
    """Score every candidate at every cut and choose; also returns each candidate's points.

    ``progress``: a bar on stderr, one step per candidate.
    """
    values, axis = size_axis(frame, by, columns)
    thresholds = cut_thresholds(values, n_cuts, min_train_sizes,
                                "model sizes" if axis == "N" else "compute budgets")
    axis_note = ""
    if by is None and n_cuts is None and axis == "N" and len(thresholds) < MIN_CUTS_TO_SWITCH:
        by_compute = _compute_cuts(frame, columns, values, thresholds, min_train_sizes)
        if by_compute is not None:
            axis, (values, thresholds, axis_note) = "C", by_compute
    by = axis
    results, scores, points_of = {}, {}, {}
    kept, skipped = [], dict(skipped or {})
    for cand in tqdm(candidates, desc="validation cuts", unit="law", file=sys.stderr, disable=not progress):
        try:
            points = prepare_points(frame, cand.form, columns, drop_highest_loss)
            sizes = points.X["N"] if by == "N" and "N" in points.X else _sizes_of(points, by)
            results[cand.name] = validate(cand, points, sizes, thresholds)
        except LmscaleError as exc:
            skipped[cand.name] = str(exc)
            continue
        scores[cand.name] = score(results[cand.name])
        points_of[cand.name] = points
        kept.append(cand)
    if not kept:
        raise LmscaleError("validation by scale: no candidate could be scored: "
                           + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    chosen, reason = choose(scores, kept, tie_rtol, n_cuts=len(thresholds))
    budgets = isoflop_budgets(frame, columns) if by == "N" and axis_note == "" else 0
    if budgets:
        reason += (f"; the runs lie on {budgets} compute budgets (an IsoFLOP design) and these cuts hold out "
                   "the largest models of each: to validate a forecast of a larger budget, cut by compute "
                   "(by='C', --by C)")
    return Audit(by, thresholds, results, scores, kept, chosen, reason, skipped,
                 n_sizes=len(distinct_sizes(values)), axis_note=axis_note), points_of


#: Runs within this many decades of compute share a budget (IsoFLOP designs round budgets).
BUDGET_DECADES = 0.01


def isoflop_budgets(frame: pd.DataFrame, columns: Mapping[str, str] | None = None) -> int:
    """How many compute budgets the runs lie on when they form an IsoFLOP design (0 when not):
    3 or more budgets (C = 6 N D within ``BUDGET_DECADES``) of 3 or more model sizes each,
    holding 80% of the runs or more."""
    if len(frame) < 9:
        return 0
    try:
        n, _ = size_axis(frame, "N", columns)
        compute, _ = size_axis(frame, "C", columns)  # 6 N D, as the cuts by compute count it
    except LmscaleError:
        return 0
    ok = (n > 0) & (compute > 0)
    budget = np.round(np.log10(compute[ok]) / BUDGET_DECADES)
    sizes = pd.Series(n[ok]).groupby(budget).agg(lambda v: len(distinct_sizes(v.to_numpy())))
    full = sizes[sizes >= 3]
    if len(full) < 3 or np.isin(budget, full.index).mean() < 0.8:
        return 0
    return len(full)


def _compute_cuts(frame: pd.DataFrame, columns: Mapping[str, str] | None, sizes: np.ndarray,
                  thresholds: np.ndarray, min_train_sizes: int) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Cuts by compute where the model sizes give too few to choose by: (values, thresholds, why).

    None where compute gives no more cuts than the sizes (or no C can be derived).
    """
    try:
        values, _ = size_axis(frame, "C", columns)
        by_compute = cut_thresholds(values, None, min_train_sizes, "compute budgets")
    except LmscaleError:
        return None
    if len(by_compute) <= len(thresholds):
        return None
    why = (f"the {len(distinct_sizes(sizes))} distinct model sizes leave {len(thresholds)} cut, too few to "
           f"choose by ({MIN_CUTS_TO_SWITCH} or more); the {len(distinct_sizes(values))} distinct compute "
           f"budgets give {len(by_compute)}")
    return values, by_compute, why


def _sizes_of(points: Points, by: str) -> np.ndarray:
    if by == "C" and "N" in points.X and "D" in points.X:
        return compute_of(points)  # 6 N D, as size_axis cuts by
    if by == "C" and "C" in points.frame.columns:
        return pd.to_numeric(points.frame["C"], errors="coerce").to_numpy(dtype=float)
    return points.size if by == "C" else pd.to_numeric(points.frame[by], errors="coerce").to_numpy(dtype=float)


__all__ = ["Audit", "CutResult", "audit", "audit_text", "choose", "cut_thresholds", "distinct_sizes", "score", "size_axis",
           "validate", "compute_of"]
