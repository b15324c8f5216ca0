"""The allocation validated like the loss: N_opt predicted for held-out budgets, against their minima.

A forecast validates its law on the loss of held-out runs; but near the
compute-optimal size the loss is flat, so laws that predict it equally
well can put N_opt a decade apart at a larger budget (Porian et al.'s
IsoFLOP points: 3.2e9 to 2.9e10 at 1e21 FLOPs). Where the runs are an
IsoFLOP design, each held-out budget measures its own optimum, the minimum
of its parabola in log N ([H] approach 2, :func:`~lmscale.laws.frontier.isoflop_optima`).
At every validation cut by compute this module predicts those optima

* by each law, from its fit below the cut (its compute-optimal allocation,
  :func:`~lmscale.laws.plan_uncertainty.optimal_allocation`), and
* by approach 2 itself, N_opt = k_N C^a fitted to the minima of the budgets
  below the cut,

and scores each by the mean |ln(predicted / measured N_opt)| over the
held-out budgets, averaged over the cuts; reported as the factor
exp(score) by which the allocation is off. A plan from the forecast
allocates by approach 2 where it validates clearly better than the law
(:func:`allocates_by_budget_minima`); the loss stays the law's, which is
what its own validation measured. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.frontier import APPROACH_2, isoflop_frontier, isoflop_optima
from lmscale.laws.plan_uncertainty import optimal_allocation

#: The name approach 2 goes by among the laws scored.
BUDGET_MINIMA = APPROACH_2
#: Approach 2 allocates a plan where its validated log error is below (1 - this) x the law's.
ALLOCATION_RTOL = 0.1
#: A held-out budget's optimum is matched to a cut when its compute lies within this of the threshold.
BUDGET_RTOL = 0.01


def check_allocations(points: Any, thresholds: Sequence[float], cut_params: Mapping[str, Sequence[tuple[str, Mapping]]],
                      law: str) -> dict[str, Any] | None:
    """Every law's (and approach 2's) N_opt at the held-out budgets of each cut, against their minima.

    ``points``: the runs (``X["N"]``, ``X["D"]``, ``y``); ``thresholds``: the cuts by compute
    (6 N D), largest first; ``cut_params``: name -> one ``(law, params)`` per cut (the fit below
    it); ``law``: the forecast's chosen name. None where no held-out budget has a minimum.
    """
    runs = runs_of(points)
    compute = 6.0 * runs["N"].to_numpy() * runs["D"].to_numpy()
    optima = isoflop_optima(runs)
    optima = optima[optima["status"] == "ok"]
    errors: dict[str, list[float]] = {name: [] for name in [*cut_params, BUDGET_MINIMA]}
    spread: list[tuple[float, float]] = []  # approach 2's (decades beyond the cut, ln error) per held-out budget
    cuts = []
    for k, threshold in enumerate(thresholds):
        held = optima[optima["C"] >= threshold * (1.0 - BUDGET_RTOL)]
        if held.empty:
            continue
        C, measured = held["C"].to_numpy(dtype=float), held["N_opt"].to_numpy(dtype=float)
        predicted = {name: _law_n_opt(*per_cut[k], C) for name, per_cut in cut_params.items()}
        fitted = compute < threshold * (1.0 - 1e-12)
        try:
            below = isoflop_frontier(runs[fitted], bootstrap=0)
            predicted[BUDGET_MINIMA] = np.asarray(below.n_opt(C), dtype=float)
            beyond = np.log10(C / compute[fitted].max())
            spread += list(zip(beyond, np.log(predicted[BUDGET_MINIMA] / measured)))
        except LmscaleError:  # fewer than 2 budgets with a minimum below the cut
            pass
        for name, n_opt in predicted.items():
            errors[name].append(float(np.mean(np.abs(np.log(n_opt / measured)))))
        cuts.append({"threshold": float(threshold), "C": C.tolist(), "N_opt": measured.tolist(),
                     "predicted": {name: v.tolist() for name, v in predicted.items()}})
    if not cuts:
        return None
    factor = {name: float(np.exp(np.mean(e))) for name, e in errors.items() if len(e) == len(cuts)}
    missing = sorted(name for name, f in factor.items() if not np.isfinite(f))  # no N_opt at some cut
    factor = {name: f for name, f in factor.items() if np.isfinite(f)}
    return {"method": "N_opt at each held-out budget, predicted from the runs below the cut (each law's "
                      "compute-optimal allocation; approach 2's k_N C^a), against the minimum of that budget's "
                      "parabola in log N; factor = exp(mean over cuts of the mean |ln(predicted / measured)|)",
            "law": law, "factor": factor, "no_allocation": missing, "cuts": cuts,
            "error_per_decade": error_per_decade(spread),
            "allocate": BUDGET_MINIMA if allocates_by_budget_minima(factor, law) else law}


def runs_of(points: Any) -> pd.DataFrame:
    """The fitted rows of :class:`~lmscale.laws.io.Points` as the frontier functions take them: N, D, loss."""
    return pd.DataFrame({"N": points.X["N"], "D": points.X["D"], "loss": points.y})


def error_per_decade(spread: Sequence[tuple[float, float]]) -> float | None:
    """k of the extrapolation error of ln N_opt, s(d) = k d at d decades of compute beyond the
    fitted budgets: the root mean square of (ln error / d) over approach 2's held-out budgets
    (its draws resample the budgets' minima, not the extrapolation itself). None without any."""
    ratios = [err / d for d, err in spread if d > 0 and np.isfinite(err)]
    return float(np.sqrt(np.mean(np.square(ratios)))) if ratios else None


def allocates_by_budget_minima(factor: Mapping[str, float], law: str) -> bool:
    """Whether approach 2's validated allocation is clearly better than the law's: its log error
    below (1 - :data:`ALLOCATION_RTOL`) x the law's (ties keep the law, whose loss the plan gives),
    or the law has none (no compute-optimal size at some cut: an exponent <= 0)."""
    if BUDGET_MINIMA not in factor:
        return False
    if law not in factor:  # the law had no compute-optimal allocation at some cut
        return True
    return np.log(factor[BUDGET_MINIMA]) < (1.0 - ALLOCATION_RTOL) * np.log(factor[law])


def _law_n_opt(law: str, params: Mapping[str, float], C: np.ndarray) -> np.ndarray:
    """N_opt of a fitted law at each compute C (inf where it has none: an exponent <= 0)."""
    out = []
    for c in C:
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                n = optimal_allocation(law, params, float(c))[0]
        except LmscaleError:
            n = np.inf
        out.append(n if np.isfinite(n) and n > 0 else np.inf)
    return np.array(out)


def allocation_text(check: Mapping[str, Any]) -> str:
    """One line: the factors, best first, and which allocation plans use."""
    factor = check["factor"]
    order = sorted(factor, key=factor.get)
    each = ", ".join(f"{name}{' (the law)' if name == check['law'] else ''} {factor[name]:.2f}x" for name in order)
    each += "".join(f", {name}{' (the law)' if name == check['law'] else ''} no allocation at some cut"
                    for name in check.get("no_allocation", []))
    uses = ("approach 2 (the budgets' minima fitted across budgets); the loss stays the law's"
            if check["allocate"] == BUDGET_MINIMA else "the law's own")
    return (f"allocation validated on the {len(check['cuts'])} cut(s)' held-out budget minima (mean factor off): "
            f"{each}; plans allocate by {uses}")


__all__ = ["ALLOCATION_RTOL", "BUDGET_MINIMA", "allocates_by_budget_minima", "allocation_text", "check_allocations",
           "error_per_decade", "runs_of"]
