"""Plans with error bars: N_opt, D_opt and the loss over the bootstrap draws of a fit.

:func:`optimal_allocation` is the compute-optimal (N, D) of any fitted
L(N, D) law at compute C = 6 N D: the [H] approach-3 closed form for
``chinchilla`` and ``chinchilla_tied`` (alpha = beta), the data-constrained
minimum with U unique tokens ([M] eq. 7), and for ``kaplan_nd`` the minimum
of [K] eq. 1.5 along the line C = 6 N D (a bounded search in log N).

:func:`plan_uncertainty` repeats the allocation for every bootstrap draw of
the fit and reports percentile intervals of N_opt, D_opt and the loss at
each level. When the law set comes from a forecast (``lmscale predict
--save``, ``lmscale fit --audit --out``), the loss interval also carries
the extrapolation error calibrated on its validation cuts
(:mod:`lmscale.laws.intervals`) at the plan's distance beyond the data; and
every fit that records the extent of its data warns when the plan lies
beyond it (in decades of model size or compute).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from lmscale.errors import LmscaleError
from lmscale.laws.data_constrained import data_constrained_allocation
from lmscale.laws.forms import chinchilla_params, get_form
from lmscale.laws.frontier import APPROACH_2, chinchilla_allocation, power_law
from lmscale.laws.intervals import ExtrapolationError, beyond, central_band, predictive_draws
from lmscale.laws.result import FitResult

#: Laws whose compute-optimal allocation :func:`optimal_allocation` knows.
ALLOCATABLE = ("chinchilla", "chinchilla_tied", "kaplan_nd", "data_constrained")
#: A plan this many decades beyond the fitted data gets a warning.
WARN_DECADES = 0.5


def optimal_allocation(law: str, params: Mapping[str, float], C: float,
                       unique_tokens: float | None = None) -> tuple[float, float]:
    """(N_opt, D_opt) of the fitted law ``law`` at compute C (FLOPs), C = 6 N D."""
    if law == "data_constrained":
        if unique_tokens is None:
            return chinchilla_allocation(chinchilla_params("chinchilla", params), C)
        return data_constrained_allocation(params, C, unique_tokens)
    if law in ("chinchilla", "chinchilla_tied"):
        return chinchilla_allocation(chinchilla_params(law, params), C)
    if law == "kaplan_nd":
        form = get_form(law)

        def loss(log_n: float) -> float:
            N = np.exp(log_n)
            return float(np.log(form.predict(params, N=N, D=C / (6.0 * N))))

        center = 0.5 * np.log(C / 6.0)  # N = D: the middle of the line
        res = minimize_scalar(loss, bounds=(center - 30.0, center + 30.0), method="bounded",
                              options={"xatol": 1e-8})
        if res.x < center - 29.9 or res.x > center + 29.9:
            raise LmscaleError(f"law kaplan_nd: no compute-optimal model size at C = {C:g} (the loss keeps "
                               "falling along C = 6 N D)")
        N = float(np.exp(res.x))
        return N, C / (6.0 * N)
    raise LmscaleError(f"law {law}: no compute-optimal allocation (known for {', '.join(ALLOCATABLE)})")


def loss_at(fit: FitResult, N: float, D: float, unique_tokens: float | None = None) -> float:
    """The law's loss at (N, D); a law of repeated data at ``unique_tokens`` (default: fresh data, U = D)."""
    inputs = {"N": N, "D": D}
    if "U" in fit.form.inputs:
        inputs["U"] = D if unique_tokens is None else unique_tokens
    return float(fit.form.predict(fit.params, **inputs))


def draw_allocations(fit: FitResult, C: float, unique_tokens: float | None = None) -> np.ndarray:
    """(B, 3) N_opt, D_opt and loss at compute C for each bootstrap draw of ``fit``."""
    if fit.bootstrap_params is None or len(fit.bootstrap_params) == 0:
        raise LmscaleError(f"law {fit.law}: the fit has no bootstrap draws (fitted, or saved, with bootstrap 0): "
                           "plan intervals need them; refit with --bootstrap K and save with --out")
    form = fit.form
    rows = []
    for row in fit.bootstrap_params:
        params = dict(zip(form.params, row))
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                N, D = optimal_allocation(fit.law, params, C, unique_tokens)
                row = (N, D, loss_at(FitResult(law=fit.law, params=params), N, D, unique_tokens))
        except LmscaleError:
            continue  # a draw with no optimum (e.g. alpha <= 0) counts as failed
        if np.all(np.isfinite(row)) and min(row) > 0:
            rows.append(row)
    if len(rows) < 2:
        raise LmscaleError(f"law {fit.law}: fewer than 2 bootstrap draws have a compute-optimal allocation")
    return np.array(rows)


def alternative_allocations(alternatives: Mapping[str, Any], C: float, unique_tokens: float | None,
                            ) -> dict[str, tuple[float, float, float, float]]:
    """(N_opt, D_opt, loss there, weight) at compute C of each of a forecast's plausible laws that
    has an allocation (laws without one, or whose allocation fails, are left out)."""
    out = {}
    for name, alt in alternatives.items():
        try:
            other = FitResult(law=alt["law"], params=dict(alt["params"]))
            N, D = optimal_allocation(other.law, other.params, C, unique_tokens)
            out[name] = (N, D, loss_at(other, N, D, unique_tokens), float(alt["weight"]))
        except (LmscaleError, KeyError, TypeError):
            continue
    return out


def _recentre(draws: np.ndarray, fit: FitResult, C: float, unique_tokens: float | None,
              allocations: Mapping[str, tuple[float, float, float, float]], seed: int) -> np.ndarray:
    """Model uncertainty: each draw moved by (a plausible law's allocation - the fit's), in logs,
    the law of each draw picked with the forecast's weights (``allocations``:
    :func:`alternative_allocations`; fewer than 2: the draws as they are)."""
    if len(allocations) < 2:
        return draws
    N0, D0 = optimal_allocation(fit.law, fit.params, C, unique_tokens)
    base = np.log([N0, D0, loss_at(fit, N0, D0, unique_tokens)])
    table = np.array(list(allocations.values()))
    logs, w = np.log(table[:, :3]), table[:, 3]
    pick = np.random.default_rng(seed).choice(len(logs), size=len(draws), p=w / w.sum())
    return np.exp(np.log(draws) + logs[pick] - base)


#: Plausible laws whose N_opt spread more than this factor disagree on the allocation.
DISAGREE_FACTOR = 3.0


def disagreement_warning(fit: FitResult, allocations: Mapping[str, tuple[float, ...]],
                         forecast: Mapping[str, Any] | None, C: float, N: float,
                         band: Sequence[float] | None = None) -> list[str]:
    """A warning where a forecast's plausible laws (``allocations``: :func:`alternative_allocations`)
    put N_opt more than :data:`DISAGREE_FACTOR` apart; with the 80% ``band`` of N_opt over them, it
    says whether the plan's own N (``fit``'s, the chosen law's) lies outside it; where the
    forecast's runs lie on compute budgets, it gives N_opt at C from their minima (approach 2,
    :func:`budget_minima_n_opt`), which measure it, and the plausible law nearest to that."""
    n_opt = {name: values[0] for name, values in allocations.items()}
    if len(n_opt) < 2:
        return []
    low, high = min(n_opt, key=n_opt.get), max(n_opt, key=n_opt.get)
    if n_opt[high] <= DISAGREE_FACTOR * n_opt[low]:
        return []
    text = (f"the forecast's {len(n_opt)} plausible laws (validated on the loss nearly as well as the chosen "
            f"one) disagree on the allocation: N_opt from {n_opt[low]:.3g} ({low}) to {n_opt[high]:.3g} ({high}), "
            f"{n_opt[high] / n_opt[low]:.1f}x; the loss is flat near the optimum, so validating the loss does "
            "not decide how to split the compute")
    if band is not None and not band[0] <= N <= band[1]:
        chosen = (fit.notes.get("candidate") or {}).get("name", fit.law)
        text += (f"; the chosen law's N_opt ({chosen}, {N:.3g}) lies outside the 80% interval over them "
                 f"[{band[0]:.3g}, {band[1]:.3g}]: read the interval, not the point")
    data = (forecast or {}).get("data") or {}
    measured = budget_minima_n_opt(data.get("isoflop_frontier"), C)
    if measured is not None:
        point, lo, hi = measured
        near = min(n_opt, key=lambda name: abs(np.log(n_opt[name] / point)))
        text += (f"; the runs lie on compute budgets (an IsoFLOP design), whose minima measure the allocation: "
                 f"approach 2 on them puts N_opt at {point:.3g}" + (f" [{lo:.3g}, {hi:.3g}] (95%)" if lo else "")
                 + f", nearest to {near} ({n_opt[near]:.3g})" + _validated(data.get("allocation_check")))
    elif data.get("isoflop_budgets"):
        text += ("; the runs lie on compute budgets (an IsoFLOP design), whose minima measure the allocation "
                 "directly: 'lmscale report STORE --out DIR' fits that frontier (approach 2), "
                 "'lmscale plan --law DIR/fits.json' plans from it")
    return [text]


def _validated(check: Mapping[str, Any] | None) -> str:
    """What the allocation check (:mod:`lmscale.laws.allocation_check`) decided, for the warning."""
    if not check or APPROACH_2 not in check.get("factor", {}):
        return ("; 'lmscale report STORE --out DIR' fits it with the rest of the study, and 'lmscale plan --law "
                "DIR/fits.json' plans from it")
    factor, law = check["factor"], check["law"]
    which = "approach 2's" if check["allocate"] == APPROACH_2 else f"the law's ({law})"
    return (f"; on the held-out budgets' own minima approach 2's allocation is off by {factor[APPROACH_2]:.2f}x, "
            f"the chosen law's ({law}) {times(factor.get(law))}: the plan's N_opt and D_opt are {which}")


def times(factor: float | None) -> str:
    """'by 1.23x', or that there was none to score (a law without a compute-optimal size at some cut)."""
    return "has no compute-optimal size at some cut" if factor is None else f"by {factor:.2f}x"


def frontier_n_opt(frontier: Mapping[str, Any], C: float) -> float:
    """N_opt = k_N C^a of a forecast's approach-2 frontier (``data["isoflop_frontier"]``) at C."""
    return float(power_law(float(frontier["k_N"]), float(frontier["a"]), C))


def budget_minima_n_opt(frontier: Mapping[str, Any] | None, C: float) -> tuple[float, float | None, float | None] | None:
    """N_opt at C from a forecast's approach-2 frontier (``data["isoflop_frontier"]``: k_N C^a, and
    draws of (a, k_N)): (point, lo, hi), the 95% band over the draws (None, None without them)."""
    if not frontier or not frontier.get("k_N"):
        return None
    point = frontier_n_opt(frontier, C)
    draws = np.asarray(frontier.get("draws") or [], dtype=float).reshape(-1, 2)
    if len(draws) < 2:
        return point, None, None
    lo, hi = central_band(power_law(draws[:, 1], draws[:, 0], C), 0.95)
    return point, float(lo), float(hi)


def data_extent(fit: FitResult, extras: Mapping[str, Any] | None = None) -> dict[str, float] | None:
    """The fitted data's largest N and compute 6 N D (from a forecast or the fit's notes)."""
    fc = (extras or {}).get("forecast") or {}
    data = fc.get("data") or fit.notes.get("data_range")
    if not data or not data.get("C_max"):
        return None
    return {"N_max": data.get("N_max"), "C_max": float(data["C_max"])}


def plan_uncertainty(fit: FitResult, C: float, N: float, D: float, levels: Sequence[float] = (0.8, 0.95),
                     unique_tokens: float | None = None, extras: Mapping[str, Any] | None = None,
                     seed: int = 0) -> dict[str, Any]:
    """Percentile intervals of N_opt, D_opt and loss over the draws, at each level; extent warnings."""
    draws = draw_allocations(fit, C, unique_tokens)
    fc = (extras or {}).get("forecast")
    allocations = alternative_allocations((fc or {}).get("alternatives") or {}, C, unique_tokens)
    n_alt = len(allocations) if len(allocations) >= 2 else 0
    draws = _recentre(draws, fit, C, unique_tokens, allocations, seed)
    extent = data_extent(fit, extras)
    distance = None if extent is None else float(beyond(N, 6.0 * N * D, extent["N_max"], extent["C_max"]))
    log_loss, how_loss = _with_extrapolation(np.log(draws[:, 2]), "percentiles of the loss at each draw's own "
                                             "optimum", fc, distance, seed)
    out: dict[str, Any] = {"n_draws": int(len(draws)), "n_failed": int(len(fit.bootstrap_params) - len(draws)),
                           "levels": {}, "distance_decades": distance}
    for level in levels:
        lo, hi = central_band(draws[:, :2], level)
        l_lo, l_hi = np.exp(central_band(log_loss, level))
        out["levels"][f"{round(level * 100):d}"] = {
            "N_opt": [float(lo[0]), float(hi[0])], "D_opt": [float(lo[1]), float(hi[1])],
            "loss": [float(l_lo), float(l_hi)]}
    out["method"] = (f"the allocation repeated for each of {out['n_draws']} bootstrap draws of {fit.law} at "
                     f"C = {C:.3g} FLOPs" + (f", each re-centred on one of the forecast's {n_alt} plausible laws "
                                              "(weights from validated error)" if n_alt else "")
                     + f"; N_opt and D_opt: percentiles over the draws; loss: {how_loss}")
    out["warnings"] = beyond_warnings(distance) + disagreement_warning(
        fit, allocations, fc, C, N, central_band(draws[:, 0], 0.8))
    return out


def _with_extrapolation(log_loss: np.ndarray, how: str, forecast: Mapping[str, Any] | None, distance: float | None,
                        seed: int) -> tuple[np.ndarray, str]:
    """Loss draws (logs) plus a forecast's extrapolation error s(d) at ``distance`` decades beyond its
    data (unchanged without a forecast or a distance), and ``how`` they were made, said."""
    if not forecast or "extrapolation_error" not in forecast or distance is None:
        return log_loss, how
    error = ExtrapolationError.from_dict(forecast["extrapolation_error"])
    return (predictive_draws(log_loss[:, None], error.scale(distance), 4000, seed)[:, 0],
            f"{how}, plus the forecast's extrapolation error s(d) at d = {max(distance, 0.0):.2f} decades beyond its data")


def budget_minima_uncertainty(fit: FitResult, C: float, N: float, D: float, extras: Mapping[str, Any],
                              intervals: bool | None = None, levels: Sequence[float] = (0.8, 0.95),
                              seed: int = 0) -> tuple[dict[str, Any] | None, list[str]]:
    """A plan allocated by a forecast's budget minima (approach 2, chosen by its validated allocation,
    :mod:`lmscale.laws.allocation_check`): N_opt and D_opt over the frontier's draws of (a, k_N), the
    loss over ``fit``'s bootstrap draws at the plan's (N, D) plus the extrapolation error; the
    extent warning and the plausible laws' disagreement."""
    fc = extras.get("forecast") or {}
    front = fc["data"]["isoflop_frontier"]
    extent = data_extent(fit, extras)
    distance = None if extent is None else float(beyond(N, 6.0 * N * D, extent["N_max"], extent["C_max"]))
    warnings = beyond_warnings(distance) + disagreement_warning(
        fit, alternative_allocations(fc.get("alternatives") or {}, C, None), fc, C, N)
    frontier_draws = np.asarray(front.get("draws") or [], dtype=float).reshape(-1, 2)
    has = fit.bootstrap_params is not None and len(fit.bootstrap_params) > 1 and len(frontier_draws) > 1
    if intervals and not has:
        raise LmscaleError(f"intervals asked of forecast:{fc.get('law')}, which has no bootstrap draws: save the "
                           "forecast with bootstrap draws (lmscale fit --audit --bootstrap K --out)")
    if not has or intervals is False:
        return None, warnings
    n_opt = power_law(frontier_draws[:, 1], frontier_draws[:, 0], C)
    k = (fc["data"].get("allocation_check") or {}).get("error_per_decade")
    reach = None if extent is None else max(float(np.log10(C / extent["C_max"])), 0.0)
    how_n = ""
    if k and reach:  # the frontier's draws resample the minima, not the extrapolation: add its validated error
        n_opt = n_opt * np.exp(k * reach * np.random.default_rng(seed).standard_normal(len(n_opt)))
        how_n = (f", each moved by the extrapolation error validated on held-out budgets, s = {k:.3f} per decade "
                 f"x {reach:.2f} decades beyond the runs' largest budget")
    losses = [loss_at(FitResult(law=fit.law, params=dict(zip(fit.form.params, row))), N, D, None)
              for row in fit.bootstrap_params]
    log_loss, how_loss = _with_extrapolation(np.log(np.asarray(losses, dtype=float)), "percentiles of the law's "
                                             "bootstrap draws at the plan's (N_opt, D_opt)", fc, distance, seed)
    out: dict[str, Any] = {"n_draws": int(len(frontier_draws)), "levels": {}, "distance_decades": distance}
    for level in levels:
        lo, hi = central_band(n_opt, level)
        l_lo, l_hi = np.exp(central_band(log_loss, level))
        out["levels"][f"{round(level * 100):d}"] = {
            "N_opt": [float(lo), float(hi)], "D_opt": [C / (6.0 * float(hi)), C / (6.0 * float(lo))],
            "loss": [float(l_lo), float(l_hi)]}
    out["method"] = (f"N_opt = k_N C^a for each of approach 2's {len(frontier_draws)} bootstrap draws (budgets "
                     f"resampled, each minimum moved by its error) at C = {C:.3g} FLOPs{how_n}, D_opt = C / (6 N_opt);"
                     f" loss: {how_loss}")
    return out, warnings


def uncertainty(fit: FitResult | None, C: float, N: float, D: float, name: str,
                extras: Mapping[str, Any] | None = None, intervals: bool | None = None,
                levels: Sequence[float] = (0.8, 0.95), unique_tokens: float | None = None,
                ) -> tuple[dict[str, Any] | None, list[str]]:
    """A plan's intervals (None without draws, or with ``intervals=False``) and its warnings.

    ``intervals=True`` makes a fit without bootstrap draws an error.
    """
    draws = fit is not None and fit.bootstrap_params is not None and len(fit.bootstrap_params) > 0
    if intervals and not draws:
        what = f"law {fit.law} of {name!r}" if fit is not None else f"law set {name!r} (published, no draws)"
        raise LmscaleError(f"intervals asked of {what}, which has no bootstrap draws: fit with --bootstrap K "
                           "and save with --out (the draws are saved), or plan from a saved forecast")
    if draws and intervals is not False:
        out = plan_uncertainty(fit, C, N, D, levels, unique_tokens, extras)
        return out, list(out["warnings"])
    if fit is None:
        return None, []
    fc = (extras or {}).get("forecast")
    said = disagreement_warning(fit, alternative_allocations((fc or {}).get("alternatives") or {}, C, unique_tokens),
                                fc, C, N)
    extent = data_extent(fit, extras)
    if extent is None:
        return None, said
    return None, beyond_warnings(float(beyond(N, 6.0 * N * D, extent["N_max"], extent["C_max"]))) + said


def frontier_uncertainty(alloc: Mapping[str, Any], C: float, N: float, name: str, intervals: bool | None = None,
                         levels: Sequence[float] = (0.8, 0.95)) -> tuple[dict[str, Any] | None, list[str]]:
    """Intervals of N_opt and D_opt from a fitted frontier's bootstrap draws, and its extent warning.

    ``alloc`` is an ``extras["allocation"]`` entry; ``draws`` (optional) holds one
    ``[a, k_N, b, k_D]`` per bootstrap replicate of the frontier (N_opt = k_N C^a,
    D_opt = k_D C^b, C in units of ``C_unit_flops``), ``data_range`` (optional) the
    largest N_opt and C it was fitted on. ``intervals=True`` makes draws required.
    """
    draws = np.asarray(alloc.get("draws") or [], dtype=float).reshape(-1, 4)
    draws = draws[np.isfinite(draws).all(axis=1)]
    if intervals and not len(draws):
        raise LmscaleError(f"intervals asked of law set {name!r}, whose N_opt(C) relation (extras.allocation) "
                           "carries no bootstrap draws (a published table has none; a study fitted with "
                           "bootstrap replicates has them)")
    rng = alloc.get("data_range") or {}
    distance = None
    if rng.get("N_max") and rng.get("C_max"):
        distance = max(float(beyond(N, C, float(rng["N_max"]), float(rng["C_max"]))), 0.0)
    warnings = beyond_warnings(distance)
    if not len(draws) or intervals is False:
        return None, warnings
    c = C / float(alloc.get("C_unit_flops", 1.0))
    n_opt, d_opt = power_law(draws[:, 1], draws[:, 0], c), power_law(draws[:, 3], draws[:, 2], c)
    out: dict[str, Any] = {"n_draws": int(len(draws)), "levels": {}, "distance_decades": distance}
    for level in levels:
        out["levels"][f"{round(level * 100):d}"] = {
            "N_opt": [float(v) for v in central_band(n_opt, level)],
            "D_opt": [float(v) for v in central_band(d_opt, level)]}
    out["method"] = (f"N_opt = k_N C^a and D_opt = k_D C^b for each of the frontier's {len(draws)} bootstrap "
                     f"draws at C = {C:.3g} FLOPs, percentiles over the draws (no loss interval: the "
                     "frontier carries no loss law)")
    return out, warnings


def beyond_warnings(distance: float | None) -> list[str]:
    if distance is None or distance < WARN_DECADES:
        return []
    return [f"the plan lies {distance:.1f} decades beyond the fitted data (in model size or compute): "
            "the numbers and their intervals assume the law still holds that far out"]


__all__ = ["ALLOCATABLE", "WARN_DECADES", "budget_minima_uncertainty", "data_extent", "frontier_n_opt", "loss_at", "times", "draw_allocations", "frontier_uncertainty",
           "optimal_allocation", "plan_uncertainty", "uncertainty"]
