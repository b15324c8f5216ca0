"""Forecasts you can trust: the law chosen by validation at scale, with calibrated intervals.

``ls.forecast(frame)`` (:func:`forecast`) does, in order:

1. the candidates the columns support (:mod:`lmscale.laws.candidates`):
   the [H] form free and with tied exponents, [K]'s L(N, D), the
   data-constrained form when runs repeat data, each with its fitting variants;
2. validation by scale (:mod:`lmscale.laws.validation`): rolling cuts through
   the model sizes, each candidate fitted below the cut and scored on the
   larger runs;
3. the choice: the lowest validated error, the simplest on ties
   (``combine="select"``), or an average of the best candidates weighted by
   validated error^-2 (``combine="average"``);
4. the chosen law refitted on every run with bootstrap draws;
5. the intervals (:mod:`lmscale.laws.intervals`): bootstrap draws plus the
   extrapolation error calibrated on the cuts as a function of distance
   beyond the data in decades (of model size or compute).

The :class:`Forecast` it returns predicts (``.predict(N=, D=, level=0.8)``),
gives predictive draws and interval widths (``.draws``, ``.interval_width``:
the API experiment design builds on), prints ``.summary()``, saves
``.to_json()`` and reads back with :meth:`Forecast.from_json`;
``lmscale plan --law forecast.json`` plans with it (:meth:`Forecast.to_lawset`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.allocation_check import check_allocations, runs_of
from lmscale.laws.candidates import candidates_for, make_candidate
from lmscale.laws.estimate import fit_points
from lmscale.laws.fitting import FitOptions, compute_weights
from lmscale.laws.frontier import isoflop_frontier
from lmscale.laws.intervals import ExtrapolationError, beyond
from lmscale.laws.io import parse_columns
from lmscale.laws.prediction import N_DRAWS, Forecast, Prediction, point_inputs, points_frame
from lmscale.laws.result import FitResult
from lmscale.laws.validation import (
    CUT_SCREEN,
    MIN_TRAIN_SIZES,
    Audit,
    audit,
    compute_of,
    cut_thresholds,
    isoflop_budgets,
    size_axis,
)

#: Candidates validated within this factor of the lowest error count as plausible alternatives.
ALTERNATIVES_WITHIN = 2.0


def forecast(
    frame: pd.DataFrame, law: str | None = None, *, candidates: Sequence[str] | None = None,
    variants: Sequence[str] | None = None, cuts: int | None = None, by: str | None = None,
    bootstrap: int = 200, seed: int = 0, columns: Mapping[str, str] | str | None = None,
    drop_highest_loss: int = 0, tie_rtol: float = 0.1, combine: str = "select", max_members: int = 4,
    options: FitOptions | None = None, n_jobs: int | None = None, progress: bool = False,
    at: pd.DataFrame | None = None,
) -> Forecast:
    """Validate the candidate laws at scale, choose, refit with bootstrap, calibrate intervals.

    Args:
        frame: runs with ``N``, ``D`` (or ``C``) and ``loss`` (``U`` or ``epochs``
            for repeated data); ``columns`` maps other names.
        law: force one candidate (a form, ``"chinchilla_tied"``, or a form and
            variant, ``"chinchilla+linear"``); it is still validated, for the intervals.
        candidates: forms (or candidate names) to choose among (default: all of
            :data:`~lmscale.laws.candidates.FORECAST_LAWS` the columns support).
        variants: fitting variants to try (default: all of ``VARIANTS``).
        cuts: number of validation cuts (default: up to 3, leaving 3 sizes to fit).
        by: cut axis, ``"N"`` (default when there is an N column) or ``"C"``.
        at: the points the forecast is for (N and D, or N and C; or C alone: compute
            budgets); when ``by`` is not given and they lie further beyond the runs
            in compute than in model size, the cuts go by compute (:func:`axis_for_points`).
        bootstrap: bootstrap replicates of the final fit (0: no intervals).
        tie_rtol: validated errors within this fraction of the best are ties.
        combine: ``"select"`` (one law) or ``"average"`` (the best ``max_members``
            candidates within 1.5x of the lowest error, weights error^-2).
        options: base fitting options the variants start from.
        n_jobs: bootstrap worker threads (default: all cores).
        progress: progress bars on stderr (the validation cuts, the bootstrap).
    """
    if combine not in ("select", "average"):
        raise LmscaleError(f"combine = {combine!r}: expected 'select' or 'average'")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise LmscaleError(f"bootstrap = {bootstrap!r}: expected a count >= 0")
    columns = parse_columns(columns)
    base = options or FitOptions()
    if law is not None:
        pool = [make_candidate(law, base)]
        skipped: dict[str, str] = {}
    else:
        pool, skipped = candidates_for(frame, columns, candidates, variants, base)
    axis_reason = ""
    budgets = isoflop_budgets(frame, columns)
    if by is None and at is not None:
        by, axis_reason = axis_for_points(frame, at, columns)
    elif by is None and cuts is None:
        by, axis_reason = axis_for_design(budgets)

    def run_audit(axis: str | None) -> tuple[Audit, dict[str, Any]]:
        return audit(frame, pool, n_cuts=cuts, by=axis, columns=columns, drop_highest_loss=drop_highest_loss,
                     tie_rtol=tie_rtol, skipped=skipped, progress=progress)

    fallback = ""
    try:
        result, points_of = run_audit(by)
    except LmscaleError as exc:
        if not axis_reason:
            raise
        axis_reason = ""  # the compute budgets cannot hold the cuts asked for (cuts=K): the default axis
        fallback = f" (cuts by size: cuts by compute failed: {str(exc)[:160]})"
        result, points_of = run_audit(None)
    chosen = result.chosen
    weights = {chosen.name: 1.0}
    reason = result.reason if law is None else f"forced (law = {law!r}); validated error " \
                                               f"{result.scores[chosen.name]:.3%}"
    if combine == "average" and law is None:
        weights = _average_weights(result, points_of, max_members)
        reason = (f"average of {len(weights)} candidates weighted by validated error^-2 (within 1.5x of the "
                  f"lowest, {min(result.scores.values()):.3%})")
    if result.axis_note:
        reason += f" (cuts by compute: {result.axis_note})"
    if axis_reason:
        reason += f" (cuts by compute: {axis_reason})"
    reason += fallback
    members = {}
    for name in weights:
        cand = next(c for c in result.candidates if c.name == name)
        fit = fit_points(cand.form, points_of[name], cand.options, bootstrap, seed, n_jobs=n_jobs,
                         progress=progress)
        fit.notes["candidate"] = {"name": name, "variant": cand.variant, "fitting": cand.options.describe()}
        if columns:
            fit.notes["columns"] = dict(columns)
        members[name] = (weights[name], fit)
    alternatives = _alternatives(result, points_of, members)
    points = points_of[chosen.name]
    residuals, distances, param_var = _ensemble_residuals(result, weights)
    error = ExtrapolationError.calibrate(residuals, distances, floor=_scatter(members[chosen.name][1], points,
                                                                   chosen.options.weight_power),
                                         n_cuts=len(result.thresholds), param_var=param_var)
    c6 = compute_of(points)
    data = {"C_max": float(c6.max()), "C_min": float(c6.min()), "N_max": float(points.X["N"].max()),
            "D_max": float(points.X["D"].max()), "n_points": len(points), "by": result.by,
            "compute": "6 N D (FLOPs)", "isoflop_budgets": budgets}
    if data["isoflop_budgets"]:
        data["isoflop_frontier"] = _budget_minima(points, seed)
    if data.get("isoflop_frontier") and result.by == "C" and combine == "select":
        data["allocation_check"] = _allocation_check(result, points, [chosen.name, *alternatives])
    head = max(weights, key=weights.get)
    summary = result.to_dict()
    summary["detail"] = {name: [_cut_detail(r, points_of[name]) for r in result.results[name]] for name in weights}
    return Forecast(law=head, members=members, error=error, audit=summary, reason=reason, data=data,
                    combine=combine if law is None else "select", alternatives=alternatives,
                    notes={"points": dict(points.notes), "n_draws": N_DRAWS,
                           "runs": list(frame.attrs.get("notes", []))})


#: Decades by which the points asked about must lie further beyond the runs in compute than in
#: model size for the validation cuts to follow them (by compute).
AXIS_MARGIN_DECADES = 0.1


def axis_for_points(frame: pd.DataFrame, points: pd.DataFrame, columns: Mapping[str, str] | None = None,
                    ) -> tuple[str | None, str]:
    """The cut axis a question asks for, and why: ``("C", why)`` where the points lie further
    beyond the runs in compute (6 N D) than in model size N, so that the cuts hold out what
    the question extrapolates to (a larger budget of an IsoFLOP design, longer training of
    the sizes trained); ``(None, "")`` (the default axis) otherwise, or where the runs give
    too few compute budgets to cut by. ``points`` with a ``C`` column and no ``N`` are compute
    budgets, whose model size the fit chooses: they go by compute where they lie beyond the runs."""
    try:
        n_runs, _ = size_axis(frame, "N", columns)
        c_runs, _ = size_axis(frame, "C", columns)
        cut_thresholds(c_runs, None, MIN_TRAIN_SIZES, "compute budgets")
    except LmscaleError:
        return None, ""
    c_max = np.nanmax(np.where(c_runs > 0, c_runs, np.nan))
    if "N" not in points.columns and "C" in points.columns:
        budgets = pd.to_numeric(points["C"], errors="coerce").to_numpy(dtype=float)
        beyond_c = float(np.max(beyond(None, budgets, None, c_max)))
        if beyond_c <= AXIS_MARGIN_DECADES:
            return None, ""
        return "C", (f"the compute asked about lies up to {beyond_c:.2f} decades beyond the runs, and its model "
                     "size is the fit's choice, so the cuts hold out the largest budgets; --by N to cut by size")
    N, D, _ = points_frame(points)
    n_max = np.nanmax(np.where(n_runs > 0, n_runs, np.nan))
    beyond_n = float(np.max(beyond(None, N, None, n_max)))  # decades beyond, one axis at a time
    beyond_c = float(np.max(beyond(None, 6.0 * N * D, None, c_max)))
    if beyond_c <= max(beyond_n, 0.0) + AXIS_MARGIN_DECADES:
        return None, ""
    return "C", (f"the points asked about lie up to {beyond_c:.2f} decades beyond the runs in compute and "
                 f"{beyond_n:+.2f} in model size, so the cuts hold out the largest budgets, as the question "
                 "does; --by N to cut by size")


def axis_for_design(budgets: int) -> tuple[str | None, str]:
    """The cut axis runs ask for when no points are asked about: ``("C", why)`` for an IsoFLOP
    design (``budgets``: :func:`~lmscale.laws.validation.isoflop_budgets` of the runs), whose
    forecasts are of larger budgets, and whose cuts by size would hold out the largest model of
    every budget, a question nobody asks; ``(None, "")`` (the default axis) otherwise."""
    if not budgets:
        return None, ""
    return "C", (f"the runs lie on {budgets} compute budgets (an IsoFLOP design), where cuts by size would "
                 "hold out the largest model of every budget; --by N to cut by size")


#: Bootstrap draws of the approach-2 frontier a forecast of an IsoFLOP design keeps.
FRONTIER_DRAWS = 200


def _budget_minima(points: Any, seed: int) -> dict[str, Any] | None:
    """[H] approach 2 on the runs of an IsoFLOP design (:func:`~lmscale.laws.frontier.isoflop_frontier`):
    N_opt = k_N C^a from each budget's parabola minimum, with ``FRONTIER_DRAWS`` draws of (a, k_N), for
    plans to set beside the laws' allocations (the loss the forecast validates is flat near the
    optimum; the budgets' minima measure where it lies). None where fewer than 2 budgets give one."""
    try:
        front = isoflop_frontier(runs_of(points), bootstrap=FRONTIER_DRAWS, seed=seed)
    except LmscaleError:
        return None
    draws = front.samples[np.isfinite(front.samples).all(axis=1)][:, :2] if front.samples is not None else []
    return {"method": "[H] approach 2: the parabola minimum of each budget, N_opt = k_N C^a across budgets",
            "a": front.a, "k_N": front.k_N, "ci_a": list(front.ci["a"]) if front.ci else None,
            "budgets_used": front.notes["budgets_used"], "draws": np.asarray(draws).tolist()}


def _allocation_check(result: Audit, points: Any, names: Sequence[str]) -> dict[str, Any] | None:
    """The chosen law's and its plausible alternatives' N_opt validated on the held-out budgets' minima,
    beside approach 2's (:func:`~lmscale.laws.allocation_check.check_allocations`)."""
    law_of = {c.name: c.law for c in result.candidates}
    cut_params = {name: [(law_of[name], r.params) for r in result.results[name]] for name in dict.fromkeys(names)}
    return check_allocations(points, result.thresholds, cut_params, result.chosen.name)


def _cut_detail(cut: Any, points: Any) -> dict[str, Any]:
    """One cut's held-out runs: N, D, measured and predicted loss, distance beyond the cut's data."""
    return {"cut": cut.k, "threshold": cut.threshold, "N": points.X["N"][cut.held_index].tolist(),
            "D": points.X["D"][cut.held_index].tolist(), "measured": cut.measured.tolist(),
            "predicted": cut.predicted.tolist(), "distance": cut.distances.tolist()}


def _alternatives(result: Audit, points_of: Mapping[str, Any], members: Mapping[str, Any],
                  ) -> dict[str, tuple[float, FitResult]]:
    """Candidates within ALTERNATIVES_WITHIN of the lowest validated error, weights error^-2, refitted on all runs."""
    best = min(result.scores.values())
    names = [n for n, s in result.scores.items() if s <= ALTERNATIVES_WITHIN * best]
    if len(names) < 2:
        return {}
    w = np.array([result.scores[n] for n in names]) ** -2.0
    out = {}
    for name, weight in zip(names, w / w.sum()):
        if name in members:
            fit = members[name][1]
        else:
            cand = next(c for c in result.candidates if c.name == name)
            fit = fit_points(cand.form, points_of[name], replace(cand.options, n_screen=CUT_SCREEN))
        out[name] = (float(weight), fit)
    return out


def _scatter(fit: FitResult, points: Any, power: float) -> float:
    """Robust scatter of the runs about the fit: 1.4826 x the (compute-weighted) median |log residual|."""
    form = fit.form
    log_pred = form.log_predict(form.to_theta(fit.params), points.X)
    r = np.abs(np.log(points.y) - log_pred)
    w = compute_weights(points.size, power)
    if w is None:
        return float(1.4826 * np.median(r))
    order = np.argsort(r)
    cum = np.cumsum(w[order]) / w.sum()
    return float(1.4826 * r[order][np.searchsorted(cum, 0.5)])


def _average_weights(result: Audit, points_of: Mapping[str, Any], max_members: int) -> dict[str, float]:
    """Weights ~ error^-2 of the best candidates sharing the chosen one's rows (within 1.5x of the best)."""
    rows = len(points_of[result.chosen.name])
    best = min(result.scores.values())
    pool = sorted((n for n, s in result.scores.items() if s <= 1.5 * best and len(points_of[n]) == rows),
                  key=result.scores.get)[:max_members]
    w = np.array([result.scores[n] for n in pool]) ** -2.0
    return {n: float(x) for n, x in zip(pool, w / w.sum())}


def _ensemble_residuals(result: Audit, weights: Mapping[str, float]) -> tuple[np.ndarray, ...]:
    """Held-out log residuals, distances and parameter variances of the (weighted) forecast at every cut."""
    names = list(weights)
    res, dist, var = [], [], []
    for k in range(len(result.thresholds)):
        cuts = [result.results[n][k] for n in names]
        log_pred = sum(weights[n] * np.log(c.predicted) for n, c in zip(names, cuts))
        res.append(np.log(cuts[0].measured) - log_pred)
        dist.append(cuts[0].distances)
        var.append(sum(weights[n] * c.param_var for n, c in zip(names, cuts)))
    return np.concatenate(res), np.concatenate(dist), np.concatenate(var)


#: Model sizes a forecast needs among a store's single-pass runs before the runs that repeat
#: their data are left out of it (validation cuts hold out sizes and fit on 3 or more).
SINGLE_PASS_SIZES = 4


def store_runs(runs: pd.DataFrame, every_run: bool = False) -> pd.DataFrame:
    """A results store's final points as forecast input: N, D = tokens trained, loss.

    The laws of N and D have no term for the batch size or for repeated
    data, and a study's batch-size sweep or its runs on small datasets move
    the loss at equal N and D by several percent (on ``kaplan-cpu`` they made
    the validated error of the forecast 5.6% at the first cut, 0.7% without
    them). So by default the forecast is of single-pass runs at one batch:

    * Transformer runs only, when the store records the architecture;
    * where the runs of one N differ in batch size, only those at the batch
      most runs use (a sweep; a batch scaled with N keeps every run);
    * runs that repeat their data (``dataset_tokens`` < tokens) left out,
      unless the single-pass runs have fewer than ``SINGLE_PASS_SIZES`` model
      sizes; kept, their unique tokens are ``U`` (the data-constrained form).

    ``every_run``: keep every Transformer run (batch sweeps, repeated data
    as ``U``). What was left out is said in ``frame.attrs["notes"]``.
    """
    from lmscale.laws.io import at_batch, modal_batch

    notes: list[str] = []
    if "architecture" in runs.columns:
        runs = runs[runs["architecture"].fillna("transformer") == "transformer"]
    if runs.empty or not {"N", "loss"} <= set(runs.columns):
        return pd.DataFrame(columns=["N", "D", "loss"])
    tokens = runs["tokens"] if "tokens" in runs.columns else runs["D"]
    if not every_run:
        batch = modal_batch(runs)
        kept = at_batch(runs, batch)
        if len(kept) < len(runs):
            notes.append(f"left out {len(runs) - len(kept)} run(s) of a batch-size sweep: at the model sizes "
                         f"trained at several batch sizes, only those at {batch} tokens (the batch most runs "
                         "use) are kept; the laws have no term for the batch (every_run / --every-run keeps them)")
            runs, tokens = kept, tokens.loc[kept.index]
        repeats = _repeats(runs, tokens)
        if repeats.any() and runs.loc[~repeats, "N"].nunique() >= SINGLE_PASS_SIZES:
            notes.append(f"left out {int(repeats.sum())} run(s) that repeat their data (dataset_tokens < "
                         "tokens): the forecast is of single-pass runs (every_run / --every-run keeps them, "
                         "with their unique tokens as U for the data-constrained form)")
            runs, tokens = runs[~repeats], tokens[~repeats]
    out = pd.DataFrame({"N": runs["N"].astype(float), "D": tokens.astype(float), "loss": runs["loss"].astype(float)})
    if _repeats(runs, tokens).any():
        out["U"] = runs["dataset_tokens"].fillna(tokens).astype(float)
    if "run_id" in runs.columns:  # which runs these are (``lmscale next`` takes their recipe)
        out["run_id"] = runs["run_id"].astype(str).to_numpy()
    out = out.dropna().reset_index(drop=True)
    out.attrs["notes"] = notes
    return out


def _repeats(runs: pd.DataFrame, tokens: pd.Series) -> pd.Series:
    """Runs that trained on more tokens than their dataset holds (repeated data)."""
    if "dataset_tokens" not in runs.columns:
        return pd.Series(False, index=runs.index)
    return runs["dataset_tokens"] < tokens


def load_forecast(path: str | Path) -> Forecast:
    """A forecast saved with ``to_json`` (``lmscale fit --audit --out``, ``lmscale predict --save``)."""
    return Forecast.from_json(Path(path))


__all__ = ["ALTERNATIVES_WITHIN", "Forecast", "Prediction", "forecast", "load_forecast", "point_inputs",
           "points_frame", "store_runs"]
