"""Compute-optimal plans from a law set: what to train for a budget, a size or a loss.

:func:`plan` takes a :class:`~lmscale.laws.result.LawSet` (a catalog entry
or a user's fit) and one of a compute budget C (FLOPs), a model size N or a
target loss L, and returns a :class:`Plan`: N_opt, D_opt, tokens per
parameter, the predicted loss, B_crit and S_min where the set has them, the
band of sizes within 20% of the optimal compute, the overfitting check, a
Transformer shape with [K]'s learning rate, and the wall time on a device.
Every number says how it was computed (``Plan.method``).

How the allocation is chosen (first that applies):

1. ``unique_tokens`` given: the data-constrained law ([M] eq. 7), minimised
   on the line C = 6 N D (:func:`~lmscale.laws.data_constrained.data_constrained_allocation`).
2. a ``chinchilla`` law (or ``chinchilla_tied``, alpha = beta): the [H]
   approach-3 closed form (:func:`~lmscale.laws.frontier.chinchilla_allocation`), C = 6 N D.
3. an ``allocation`` entry in ``extras`` (power laws y = coef (C / C_unit)^exponent,
   e.g. [K] table 6, where C is C_min): N_opt(C), D_opt(C), and the loss
   from L(C_min) ([K] eq. 1.3) or else L(N, D) ([K] eq. 1.5).
4. a fitted ``kaplan_nd`` alone: the minimum of [K] eq. 1.5 along C = 6 N D
   (:func:`~lmscale.laws.plan_uncertainty.optimal_allocation`).

With a fitted law that carries bootstrap draws (``lmscale fit --bootstrap K
--out``, or a forecast), the plan also gives 80% and 95% intervals of N_opt,
D_opt and the loss from the draws, and warns when the budget lies far
beyond the fitted data (:mod:`lmscale.laws.plan_uncertainty`).

Pure numpy/scipy; no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from lmscale.accounting import PF_DAY, non_embedding_params
from lmscale.errors import LmscaleError
from lmscale.laws.allocation_check import BUDGET_MINIMA
from lmscale.laws.catalog import resolve
from lmscale.laws.data_constrained import DATA_CONSTRAINED, data_constrained_allocation
from lmscale.laws.forms import chinchilla_params, min_steps, overfitting, overfitting_data_rule
from lmscale.laws.frontier import chinchilla_allocation, power_law
from lmscale.laws.identification import not_identified
from lmscale.laws.plan_options import DEVICES, REQUIRABLE, Device, PlanOptions, positive
from lmscale.laws.plan_uncertainty import (
    budget_minima_n_opt,
    budget_minima_uncertainty,
    frontier_n_opt,
    frontier_uncertainty,
    loss_at,
    optimal_allocation,
    times,
    uncertainty,
)
from lmscale.laws.result import FitResult, LawSet

#: ln C search range of the inversions: 1 FLOP ... 1e100 FLOPs.
LOG_C_RANGE = (0.0, 230.0)




@dataclass
class Plan:
    """A compute-optimal plan; ``None`` where the law set cannot say. Units: FLOPs, tokens, nats."""

    law: str
    law_source: str
    inputs: dict[str, Any]
    C: float
    C_pf_days: float
    N_opt: float
    D_opt: float
    tokens_per_param: float
    loss: float | None
    C_train: float
    batch: float | None = None
    B_crit: float | None = None
    S_min: float | None = None
    epochs: float | None = None
    loss_alternatives: dict[str, float] = field(default_factory=dict)
    size_band: dict[str, Any] | None = None
    overfitting: dict[str, Any] = field(default_factory=dict)
    shape: dict[str, Any] | None = None
    wall_time: dict[str, Any] = field(default_factory=dict)
    method: dict[str, str] = field(default_factory=dict)
    intervals: dict[str, Any] | None = None
    budget_minima: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------
# Allocation relations stored in extras (e.g. [K] table 6)
# ---------------------------------------------------------------------------


def power_allocation(
    N_opt: tuple[float, float],
    D_opt: tuple[float, float],
    C_unit_flops: float = 1.0,
    C_unit: str = "FLOP",
    where: str = "fit",
    **others: tuple[float, float],
) -> dict[str, Any]:
    """An ``extras["allocation"]`` entry: each relation y = coef (C / C_unit)^exponent.

    ``N_opt=(coef, exponent)``, ``D_opt=(coef, exponent)``; ``others`` may add
    ``B`` and ``S_min``. Put it in a LawSet's extras to plan from a fitted
    frontier (and to find the [K] 6.3 crossing with it).
    """
    rel = {"N_opt": N_opt, "D_opt": D_opt, **others}
    return {
        "where": where, "C_unit": C_unit, "C_unit_flops": float(C_unit_flops),
        "relations": {k: {"coef": float(c), "exponent": float(e)} for k, (c, e) in rel.items()},
    }


def allocation_relation(laws: LawSet, key: str, C):
    """y(C) = coef (C / C_unit)^exponent of ``extras["allocation"]``; C in FLOPs."""
    alloc = laws.extras.get("allocation")
    if not isinstance(alloc, Mapping) or not isinstance(alloc.get("relations"), Mapping):
        raise LmscaleError(f"law set {laws.name!r} has no extras.allocation.relations (needed for {key}(C))")
    rel = alloc["relations"].get(key)
    if not isinstance(rel, Mapping) or not {"coef", "exponent"} <= set(rel):
        have = ", ".join(alloc["relations"]) or "none"
        raise LmscaleError(f"law set {laws.name!r}: extras.allocation.relations has no {key} "
                           f"with coef and exponent; it has: {have}")
    unit = float(alloc.get("C_unit_flops", 1.0))
    return power_law(float(rel["coef"]), float(rel["exponent"]), np.asarray(C, dtype=float) / unit)


def has_relation(laws: LawSet, key: str) -> bool:
    alloc = laws.extras.get("allocation")
    return isinstance(alloc, Mapping) and key in (alloc.get("relations") or {})


# ---------------------------------------------------------------------------
# Allocators: N_opt(C), D_opt(C), loss(C)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Allocator:
    kind: str
    n_opt: Callable[[float], float]
    d_opt: Callable[[float], float]
    loss: Callable[[float], float] | None
    method: dict[str, str]
    fit: FitResult | None = None  # the fitted law the allocation comes from
    loss_law: str | None = None  # the law set's key of the loss law, where it is not ``fit``


def _allocator(laws: LawSet, unique_tokens: float | None) -> _Allocator:
    if unique_tokens is not None:
        dc = laws.get("data_constrained", "planning with --unique-tokens")
        U = float(unique_tokens)

        @lru_cache(maxsize=8)
        def both(C):
            return data_constrained_allocation(dc.params, C, U)

        return _Allocator(
            "data_constrained", lambda C: both(C)[0], lambda C: both(C)[1],
            lambda C: float(DATA_CONSTRAINED.predict(dc.params, N=both(C)[0], D=both(C)[1], U=U)),
            {"N_opt": f"argmin over N of L(N, C/(6N), U) with U = {U:g} unique tokens "
                      "([M] eq. 7); D_opt = C / (6 N_opt)",
             "loss": "[M] eq. 7 at (N_opt, D_opt, U)"}, fit=dc,
        )
    by_minima = _budget_minima_allocator(laws)
    if by_minima is not None:
        return by_minima
    frontier = has_relation(laws, "N_opt") and has_relation(laws, "D_opt")
    source, skipped = _parametric_source(laws), None
    if source is not None and frontier and (laws.extras["allocation"].get("identification") or {}).get("identified"):
        skipped = not_identified(source.law, source.identification, "the runs it was fitted on")
    if source is not None and skipped is None:  # a frontier the runs identify wins over a form they do not
        fit = _parametric_form(laws)
        tied = fit.law == "chinchilla_tied"
        p = chinchilla_params(fit.law, fit.params)
        return _Allocator(
            "chinchilla", lambda C: chinchilla_allocation(p, C)[0], lambda C: chinchilla_allocation(p, C)[1],
            lambda C: float(fit.predict(N=chinchilla_allocation(p, C)[0], D=chinchilla_allocation(p, C)[1])),
            {"N_opt": "[H] approach 3 closed form: N_opt = G (C/6)^a, G = (alpha A / (beta B))^(1/(alpha+beta)), "
                      "a = beta/(alpha+beta)" + (" = 1/2 (tied exponents, alpha = beta)" if tied else ""),
             "D_opt": "D_opt = G^-1 (C/6)^b, b = alpha/(alpha+beta); C = 6 N_opt D_opt",
             "loss": "[H] eq. 2: L = E + A/N^alpha + B/D^beta at (N_opt, D_opt)"
                     + (" with beta = alpha" if tied else "")}, fit=source,
        )
    if frontier:
        alloc = laws.extras["allocation"]
        where = alloc.get("where", "extras.allocation")
        method = {
            "N_opt": f"N_opt = coef (C/{alloc.get('C_unit', 'FLOP')})^exponent ({where})",
            "D_opt": f"D_opt = coef (C/{alloc.get('C_unit', 'FLOP')})^exponent ({where})"
                     + (f"; {alloc['D_convention']}" if alloc.get("D_convention") else ""),
        }
        if skipped:
            width = laws.extras["allocation"]["identification"].get("a_width", "")
            method["N_opt"] += (f"; the frontier's exponent is identified (95% interval {width}), "
                                f"not chinchilla: {skipped}")
        loss, loss_law = None, None
        in_c_min = alloc.get("compute", "C_min") == "C_min"  # [K] table 6's convention unless it says C
        if in_c_min and "kaplan_cmin" in laws:
            loss_law = "kaplan_cmin"
            loss = lambda C: float(laws.laws["kaplan_cmin"].predict(C_min=C))  # noqa: E731
            method["loss"] = "[K] eq. 1.3: L(C_min) = (C_c^min / C_min)^alpha_C^min with C_min = C"
            method["C"] = "C is C_min, the compute at a batch far below critical ([K] eq. 5.5)"
        elif not in_c_min and "kaplan_c" in laws:
            loss_law = "kaplan_c"
            loss = lambda C: float(laws.laws["kaplan_c"].predict(C=C))  # noqa: E731
            method["loss"] = "[K] figure 13: L(C) = (C_c / C)^alpha_C at the study's batch sizes"
            method["C"] = "C is training FLOPs at the study's batch sizes, as the frontier was fitted"
        elif "kaplan_nd" in laws:
            loss_law = "kaplan_nd"
            loss = lambda C: float(laws.laws["kaplan_nd"].predict(  # noqa: E731
                N=allocation_relation(laws, "N_opt", C), D=allocation_relation(laws, "D_opt", C)))
            method["loss"] = "[K] eq. 1.5: L(N, D) at (N_opt, D_opt)"
        return _Allocator("power", lambda C: float(allocation_relation(laws, "N_opt", C)),
                          lambda C: float(allocation_relation(laws, "D_opt", C)), loss, method, loss_law=loss_law)
    if "kaplan_nd" in laws:
        fit = laws.laws["kaplan_nd"]

        @lru_cache(maxsize=64)
        def opt(C):
            return optimal_allocation("kaplan_nd", fit.params, C)

        return _Allocator(
            "numeric", lambda C: opt(C)[0], lambda C: opt(C)[1],
            lambda C: float(fit.predict(N=opt(C)[0], D=opt(C)[1])),
            {"N_opt": "argmin over N of [K] eq. 1.5 L(N, C/(6N)) (bounded search in log N)",
             "D_opt": "D_opt = C / (6 N_opt)", "loss": "[K] eq. 1.5 at (N_opt, D_opt)"}, fit=fit,
        )
    have = ", ".join(sorted(laws.laws)) or "none"
    raise LmscaleError(
        f"law set {laws.name!r} cannot allocate compute: it needs a chinchilla, chinchilla_tied or kaplan_nd "
        f"law, or an extras.allocation with N_opt and D_opt relations; it has laws: {have}"
    )


def _budget_minima_allocator(laws: LawSet) -> _Allocator | None:
    """A forecast of an IsoFLOP design whose budgets' minima (approach 2) validated clearly better on
    the allocation than its law (:mod:`lmscale.laws.allocation_check`): N_opt = k_N C^a from them,
    the loss from the law at that allocation. None otherwise."""
    data = (laws.extras.get("forecast") or {}).get("data") or {}
    check, front = data.get("allocation_check") or {}, data.get("isoflop_frontier")
    if check.get("allocate") != BUDGET_MINIMA or not front or len(laws.laws) != 1:
        return None
    fit = next(iter(laws.laws.values()))
    factor = check["factor"]

    def n_opt(C):
        return frontier_n_opt(front, C)

    return _Allocator(
        "budget_minima", n_opt, lambda C: C / (6.0 * n_opt(C)),
        lambda C: loss_at(fit, n_opt(C), C / (6.0 * n_opt(C))),
        {"N_opt": f"[H] approach 2 on the forecast's runs: N_opt = {front['k_N']:.4g} C^{front['a']:.4f} from "
                  f"{front['budgets_used']} budgets' parabola minima; validated on held-out budgets' minima it is "
                  f"off by {factor[BUDGET_MINIMA]:.2f}x, the law's allocation ({check['law']}) "
                  f"{times(factor.get(check['law']))}, so the plan allocates by it",
         "D_opt": "D_opt = C / (6 N_opt)",
         "loss": f"{check['law']} (the forecast's law, validated on the loss) at (N_opt, D_opt)"}, fit=fit)


def _parametric_source(laws: LawSet) -> FitResult | None:
    """The [H]-form law of the set the closed-form allocation comes from, if any."""
    return laws.laws.get("chinchilla") or laws.laws.get("data_constrained") or laws.laws.get("chinchilla_tied")


def _parametric_form(laws: LawSet) -> FitResult:
    """The [H] form the closed-form allocation uses: ``chinchilla``, the data-constrained law without
    its repetition terms, or ``chinchilla_tied``."""
    return laws.laws.get("chinchilla") or (_unconstrained(laws.laws["data_constrained"])
                                           if "data_constrained" in laws else laws.laws["chinchilla_tied"])


def _unconstrained(dc: FitResult) -> FitResult:
    """The [H] form inside a data-constrained fit: the law when no data repeats (U >= D)."""
    params = {k: dc.params[k] for k in ("E", "A", "B", "alpha", "beta")}
    return FitResult(law="chinchilla", params=params, source=dc.source,
                     notes={"from": "data_constrained without repetition"})


def _solve_log_c(f: Callable[[float], float], target: float, what: str) -> float:
    """C (FLOPs) with f(C) = target, by root finding in ln C over :data:`LOG_C_RANGE`."""

    def g(x: float) -> float:
        return math.log(f(math.exp(x))) - math.log(target)

    lo, hi = LOG_C_RANGE
    g_lo, g_hi = g(lo), g(hi)
    if not (np.isfinite(g_lo) and np.isfinite(g_hi)) or g_lo * g_hi > 0:
        raise LmscaleError(
            f"no compute between 1 and 1e100 FLOPs gives {what} = {target:g} "
            f"(the law gives {f(math.exp(lo)):.4g} at 1 FLOP and {f(math.exp(hi)):.4g} at 1e100)"
        )
    return math.exp(brentq(g, lo, hi, xtol=1e-12, rtol=1e-13))


# ---------------------------------------------------------------------------
# Band of model sizes within (1 + overhead) of the optimal compute
# ---------------------------------------------------------------------------


def _amount_needed(fit: FitResult, N: float, loss: float, var: str) -> float:
    """The D (or S) with L(N, var) = loss; inf when N cannot reach the loss at all."""

    def g(x: float) -> float:
        return math.log(float(fit.predict(N=N, **{var: math.exp(x)}))) - math.log(loss)

    lo, hi = -10.0, 230.0
    if g(hi) >= 0:
        return math.inf
    if g(lo) <= 0:
        return math.exp(lo)
    return math.exp(brentq(g, lo, hi, xtol=1e-10))


def size_band(fit: FitResult, loss: float, N_center: float, overhead: float = 0.2) -> dict[str, Any]:
    """Model sizes whose compute to reach ``loss`` is at most (1 + overhead) x the least.

    ``fit`` is an L(N, D) law (``chinchilla``, ``kaplan_nd``), cost 6 N D(N, L),
    or [K]'s L(N, S_min) (``kaplan_ns``), cost C_min = 6 N B_crit(L) S_min(N, L)
    whose B_crit(L) is the same for every N at one loss ([K] section 6.1, figure 12).
    Returns the band as ratios to the size of least compute and in parameters.
    """
    var = "S" if fit.law == "kaplan_ns" else "D"

    def log_cost(log_n: float) -> float:
        amount = _amount_needed(fit, math.exp(log_n), loss, var)
        return log_n + math.log(amount) if math.isfinite(amount) else 1e6

    c0 = math.log(N_center)
    grid = np.linspace(c0 - 12.0, c0 + 12.0, 97)
    costs = np.array([log_cost(x) for x in grid])
    i = int(np.argmin(costs))
    if i in (0, len(grid) - 1) or costs[i] >= 1e6:
        raise LmscaleError(f"law {fit.law}: no least-compute model size near N = {N_center:g} for loss {loss:g}")
    best = minimize_scalar(log_cost, bounds=(grid[i - 1], grid[i + 1]), method="bounded",
                           options={"xatol": 1e-9})
    x_min, c_min = float(best.x), float(best.fun)
    level = c_min + math.log1p(overhead)

    def edge(a: float, b: float) -> float:
        if (log_cost(a) - level) * (log_cost(b) - level) > 0:
            raise LmscaleError(f"law {fit.law}: the {overhead:.0%} band does not close within 1e5x of N_opt")
        return brentq(lambda x: log_cost(x) - level, a, b, xtol=1e-10)

    lo, hi = math.exp(edge(grid[0], x_min) - x_min), math.exp(edge(x_min, grid[-1]) - x_min)
    cost = "C_min = 6 N B_crit(L) S_min(N, L), [K] eq. 5.6 solved for S_min" if var == "S" else \
        "C = 6 N D(N, L), the law solved for D"
    return {
        "overhead": overhead, "ratio_low": lo, "ratio_high": hi,
        "N_low": lo * N_center, "N_high": hi * N_center, "N_least_compute": math.exp(x_min),
        "law": fit.law,
        "method": f"at the plan's loss L, {cost}; the band is where it is at most {1 + overhead:g}x "
                  "its minimum over N (ratios to that minimum, applied to N_opt)",
        "reference": "[K] figure 12: 0.6x to 2.2x of the optimal size for 20% more compute",
    }


# ---------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------


def _shape(N: float, options: PlanOptions) -> dict[str, Any]:
    from lmscale.models.shapes import LR_A, LR_B, paper_learning_rate, shape_for_params

    try:
        spec = shape_for_params(N, n_ctx=options.n_ctx, n_vocab=options.n_vocab)
    except LmscaleError as exc:
        return {"error": str(exc)}
    n = non_embedding_params(spec)
    learning_rate = paper_learning_rate(float(n))
    return {
        "n_layer": spec.n_layer, "d_model": spec.d_model, "n_head": spec.n_head, "d_ff": spec.d_ff,
        "n_ctx": spec.n_ctx, "n_vocab": spec.n_vocab, "N": n, "aspect_ratio": spec.d_model / spec.n_layer,
        "learning_rate": learning_rate,
        "learning_rate_clamped": learning_rate > LR_A - LR_B * math.log(n),  # eq. D.1 below its floor
        "method": "lmscale.models.shapes.shape_for_params (N = 12 n_layer d_model^2 within 10%); "
                  "LR(N) = 0.003239 - 0.0001395 ln N, [K] eq. D.1 (clamped at 1e-5 beyond N ~ 1.2e10)",
    }


def _wall_time(C_train: float, options: PlanOptions) -> dict[str, Any]:
    dev = DEVICES[options.device]
    peak = options.peak_flops if options.peak_flops is not None else dev.peak_flops
    seconds = C_train / (options.n_devices * peak * options.mfu)
    return {
        "device": options.device if options.peak_flops is None else f"{options.device} (peak overridden)",
        "peak_flops": peak, "precision": dev.precision, "mfu": options.mfu, "n_devices": options.n_devices,
        "seconds": seconds, "hours": seconds / 3600.0, "days": seconds / 86400.0,
        "device_hours": seconds * options.n_devices / 3600.0,
        "method": "C_train / (n_devices x peak FLOP/s x MFU), C_train = 6 N_opt D_opt",
    }


def plan(
    law: str | LawSet | FitResult,
    compute: float | None = None,
    params: float | None = None,
    loss: float | None = None,
    options: PlanOptions | None = None,
) -> Plan:
    """Plan from exactly one of ``compute`` (FLOPs), ``params`` (N) or ``loss`` (nats/token)."""
    options = options or PlanOptions()
    options.validate()
    laws = resolve(law)
    given = {k: v for k, v in (("compute", compute), ("params", params), ("loss", loss)) if v is not None}
    if len(given) != 1:
        raise LmscaleError(f"give exactly one of compute, params or loss; got {', '.join(given) or 'none'}")
    (what, value), = given.items()
    positive(what, value)
    alloc = _allocator(laws, options.unique_tokens)
    method = dict(alloc.method)
    if what == "compute":
        C = float(value)
    elif what == "params":
        C = _solve_log_c(alloc.n_opt, float(value), "N_opt")
        method["C"] = (method.get("C", "") + "; " if "C" in method else "") + \
            "the compute at which N_opt(C) equals the given N (root in ln C)"
    else:
        if alloc.loss is None:
            raise LmscaleError(f"law set {laws.name!r} has no loss law to invert for --loss "
                               f"(needs chinchilla, kaplan_cmin or kaplan_nd)")
        floor = alloc.fit.params.get("E") if alloc.fit is not None else None
        if floor is not None and value <= floor:
            raise LmscaleError(f"loss = {value:g} is at or below the irreducible loss "
                               f"E = {floor:.4g} of {laws.name!r}: unreachable")
        C = _solve_log_c(alloc.loss, float(value), "the loss")
        method["C"] = (method.get("C", "") + "; " if "C" in method else "") + \
            "the compute at which the predicted loss equals the target (root in ln C)"
    with np.errstate(over="ignore", under="ignore"):
        N, D = float(alloc.n_opt(C)), float(alloc.d_opt(C))
    if not all(math.isfinite(x) and x > 0 for x in (C, N, D)):
        raise LmscaleError(f"{what} = {value:g}: {laws.name!r} gives C = {C:g} FLOPs, N_opt = {N:g}, "
                           f"D_opt = {D:g} there, beyond what floating point holds: give a value in a "
                           "range where models exist")
    L = alloc.loss(C) if alloc.loss is not None else None
    out = Plan(
        law=laws.name, law_source=laws.source,
        inputs={"compute": compute, "params": params, "loss": loss, **asdict(options)},
        C=C, C_pf_days=C / PF_DAY, N_opt=N, D_opt=D, tokens_per_param=D / N, loss=L,
        C_train=6.0 * N * D, method=method,
    )
    method["C_train"] = "6 N_opt D_opt ([K] section 2.1)"
    if alloc.kind == "power" and "kaplan_nd" in laws and "kaplan_cmin" in laws:
        out.loss_alternatives["L(N_opt, D_opt), [K] eq. 1.5"] = float(laws.laws["kaplan_nd"].predict(N=N, D=D))
    if options.unique_tokens is not None:
        out.epochs = D / options.unique_tokens
    if alloc.kind == "power" and has_relation(laws, "B"):
        out.batch = float(allocation_relation(laws, "B", C))
        method["batch"] = "B = coef (C/C_unit)^exponent of extras.allocation ([K] table 6)"
    if "bcrit" in laws and L is not None:
        out.B_crit = float(laws.laws["bcrit"].predict(L=L))
        method["B_crit"] = "[K] eq. 5.3: B_crit(L) = B_* / L^(1/alpha_B) at the predicted loss"
    if alloc.kind == "power" and has_relation(laws, "S_min"):
        out.S_min = float(allocation_relation(laws, "S_min", C))
        method["S_min"] = "S_min = coef (C/C_unit)^exponent of extras.allocation ([K] table 6)"
    elif out.B_crit is not None:
        out.S_min = float(min_steps(D / out.B_crit, out.B_crit, out.B_crit))
        method["S_min"] = "training at B = B_crit: S = D_opt / B_crit, S_min = S / (1 + B_crit/B) = S/2 ([K] eq. 5.4)"
    band_fit = _band_fit(laws, alloc.kind)
    if band_fit is not None and L is not None:
        out.size_band = size_band(band_fit, L, N, options.overhead)
    elif alloc.kind == "budget_minima":
        method["size_band"] = ("not computed: N_opt comes from the budgets' minima, and the law's own band lies "
                               "around its own optimum")
    else:
        method["size_band"] = "not computed: needs a loss and chinchilla, kaplan_ns or kaplan_nd " \
            "(and no data constraint)"
    rule = float(overfitting_data_rule(N))
    out.overfitting = {
        "D_min_rule": rule, "rule_ok": bool(D >= rule),
        "rule": "[K] eq. 4.4: D >= 5e3 N^0.74 tokens keeps delta_L below ~0.02",
        "delta_L": float(overfitting(laws.laws["kaplan_nd"].params, N, D)) if "kaplan_nd" in laws else None,
    }
    if "kaplan_nd" in laws:
        out.overfitting["delta_L_method"] = "[K] eq. 4.3 with the kaplan_nd constants at (N_opt, D_opt)"
    out.shape = _shape(N, options)
    out.wall_time = _wall_time(out.C_train, options)
    _uncertainty(out, alloc, laws, options)
    out.warnings += _not_identified(out, alloc, laws)
    _check_required(out, laws, options.require)
    return out


def _not_identified(out: Plan, alloc: _Allocator, laws: LawSet) -> list[str]:
    """A warning per law the plan rests on that its runs do not identify (a published law says nothing)."""
    used = [(alloc.fit, "the loss follows" if alloc.kind == "budget_minima" else "N_opt, D_opt and the loss follow")]
    if alloc.loss_law is not None and out.loss is not None:
        used.append((laws.laws[alloc.loss_law], "the loss follows"))
    if out.overfitting.get("delta_L") is not None:
        used.append((laws.laws["kaplan_nd"], "delta_L follows"))
    if out.B_crit is not None:
        used.append((laws.laws["bcrit"], "B_crit and S_min follow"))
    warnings = []
    for fit, gives in used:
        line = not_identified(fit.law, fit.identification, "the runs it was fitted on") if fit else None
        if line:
            warnings.append(f"{line}: {gives} from parameters those runs do not pin down")
    return warnings


def _uncertainty(out: Plan, alloc: _Allocator, laws: LawSet, options: PlanOptions) -> None:
    """Intervals from the fit's bootstrap draws, the warning for a plan far beyond the data, and (a
    forecast of an IsoFLOP design) N_opt at the plan's C from its runs' budget minima."""
    if alloc.kind == "power":
        out.intervals, warnings = frontier_uncertainty(laws.extras["allocation"], out.C, out.N_opt, laws.name,
                                                       options.intervals, options.levels)
    elif alloc.kind == "budget_minima":
        out.intervals, warnings = budget_minima_uncertainty(alloc.fit, out.C, out.N_opt, out.D_opt, laws.extras,
                                                            options.intervals, options.levels)
    else:
        out.intervals, warnings = uncertainty(alloc.fit, out.C, out.N_opt, out.D_opt, laws.name, laws.extras,
                                              options.intervals, options.levels, options.unique_tokens)
    out.warnings += warnings
    if out.intervals:
        out.method["intervals"] = out.intervals["method"]
    front = ((laws.extras.get("forecast") or {}).get("data") or {}).get("isoflop_frontier")
    measured = budget_minima_n_opt(front, out.C)
    if measured is not None:
        point, lo, hi = measured
        out.budget_minima = {"N_opt": point, "N_opt_95": None if lo is None else [lo, hi], "a": front["a"],
                             "method": front["method"] + " (the forecast's runs, an IsoFLOP design)"}


def _band_fit(laws: LawSet, kind: str) -> FitResult | None:
    """The law the size band is computed from: the one the allocation's loss comes from."""
    if kind == "chinchilla":
        return _parametric_form(laws)
    if kind == "numeric":
        return laws.laws["kaplan_nd"]
    if kind == "power":
        return next((laws.laws[law] for law in ("kaplan_ns", "kaplan_nd") if law in laws), None)
    return None


def _check_required(out: Plan, laws: LawSet, require: Sequence[str]) -> None:
    values = {"loss": out.loss, "bcrit": out.B_crit, "s_min": out.S_min, "batch": out.batch,
              "delta_l": out.overfitting.get("delta_L"), "band": out.size_band,
              "shape": None if out.shape is None or "error" in out.shape else out.shape}
    needs = {"loss": "chinchilla, kaplan_cmin or kaplan_nd", "bcrit": "a bcrit law ([K] eq. 5.3)",
             "s_min": "a bcrit law or an S_min allocation relation", "batch": "a B allocation relation ([K] table 6)",
             "delta_l": "a kaplan_nd law ([K] eq. 1.5)", "band": "chinchilla, kaplan_ns or kaplan_nd",
             "shape": "a model size within the shapes' range"}
    for item in require:
        if values[item] is None:
            have = ", ".join(sorted(laws.laws)) or "none"
            extra = f" ({out.shape['error']})" if item == "shape" and out.shape and "error" in out.shape else ""
            raise LmscaleError(f"law set {laws.name!r} cannot give {item}: it needs {needs[item]}; "
                               f"it has laws: {have}{extra}")


def plan_many(laws: Sequence[str | LawSet | FitResult], **kwargs: Any) -> list[Plan]:
    """:func:`plan` for each law set, same inputs: the disagreement side by side."""
    return [plan(law, **kwargs) for law in laws]


__all__ = [
    "DEVICES",
    "Device",
    "Plan",
    "PlanOptions",
    "REQUIRABLE",
    "allocation_relation",
    "has_relation",
    "plan",
    "plan_many",
    "power_allocation",
    "size_band",
]
