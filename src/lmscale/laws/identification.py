"""Whether a fit's points identify its law: one documented rule for every fit.

A law is *identified* by its points when all of these hold (the rule,
``RULE``):

1. **inputs**: every input of the form takes at least ``MIN_DISTINCT``
   distinct values (values within 5% of a neighbour count once, 1% for
   losses), and there
   are at least two more points than parameters;
2. **replicates**: at most ``MAX_FAILED`` (5%) of the bootstrap replicates
   failed (they are counted and left out of the intervals);
3. **bounds**: in at most ``MAX_AT_BOUND`` (5%) of the replicates a
   parameter sits at a bound of its search: an exponent at or below 0 (or
   above ``EXPONENT_CEIL``), an irreducible loss collapsed below
   ``COLLAPSE`` of the smallest output, any scale constant beyond
   1e+-``SCALE_DECADES_CEIL``;
4. **exponents**: each exponent's 95% interval is narrower than half its
   value (``EXPONENT_WIDTH``), and each linear coefficient's likewise;
5. **scales**: each scale constant's 95% interval spans at most
   ``SCALE_DECADES`` (2) decades.

Intervals are the bootstrap's percentile intervals; a fit without a
bootstrap uses value +- 1.96 Gauss-Newton standard errors (log-normal for
scale constants) and says so.

A percentile interval from a few hundred replicates carries Monte Carlo
noise of its own: where a check lands within ``EDGE_MARGIN`` (10%) of its
limit (:func:`at_edge`), the verdict could turn with the bootstrap's seed,
so the fits draw ``EDGE_REPLICATES`` times as many replicates and judge
again; a check still that close is reported as *at the rule's edge*
(:func:`edge_note`), whichever way it fell. :func:`verdict` applies the rule;
``lmscale.laws.estimate.fit_points`` stores its result on every
``FitResult`` (``fit.identification``), so ``lmscale fit``, the study fits,
the report and the demo all read the same verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Distinct values each input needs.
MIN_DISTINCT = 3
#: Largest share of failed bootstrap replicates.
MAX_FAILED = 0.05
#: Largest share of replicates with a parameter at a search bound.
MAX_AT_BOUND = 0.05
#: An exponent's (or coefficient's) 95% interval must be narrower than this fraction of its value.
EXPONENT_WIDTH = 0.5
#: A scale constant's 95% interval may span at most this many decades.
SCALE_DECADES = 2.0
#: Exponents above this are at the search bound (no law of [K] or [H] comes near it).
EXPONENT_CEIL = 10.0
#: An irreducible loss below this fraction of the smallest output has collapsed to 0.
COLLAPSE = 1e-3
#: A scale constant beyond 1e+-this has run away.
SCALE_DECADES_CEIL = 60.0

#: A check within this fraction of its limit (interval width, share of replicates) is at the rule's edge.
EDGE_MARGIN = 0.1
#: Replicates drawn in all, as a multiple of those asked for, where a verdict is at the edge.
EDGE_REPLICATES = 4

#: Names of exponents (by prefix), linear coefficients, and irreducible terms.
EXPONENT_PREFIXES = ("alpha", "beta", "eta", "gamma")
COEFFICIENTS = ("slope", "offset")
OFFSETS = ("E", "L_inf")

RULE = (f"identified when every input has >= {MIN_DISTINCT} distinct values and there are >= 2 more "
        f"points than parameters; <= {MAX_FAILED:.0%} of bootstrap replicates failed; <= "
        f"{MAX_AT_BOUND:.0%} of replicates have a parameter at a search bound (exponent <= 0 or > "
        f"{EXPONENT_CEIL:g}, irreducible loss < {COLLAPSE:g} x the smallest loss, scale beyond "
        f"1e+-{SCALE_DECADES_CEIL:g}); every exponent's 95% interval narrower than "
        f"{EXPONENT_WIDTH:g} x its value; every scale constant's 95% interval within "
        f"{SCALE_DECADES:g} decades")


def kind(name: str) -> str:
    """``"exponent"``, ``"coefficient"``, ``"offset"`` or ``"scale"`` for a parameter name."""
    if name.startswith(EXPONENT_PREFIXES):
        return "exponent"
    if name in COEFFICIENTS:
        return "coefficient"
    if name in OFFSETS:
        return "offset"
    return "scale"


#: Inputs that are losses: their values are distinct from 1% apart (others from 5%).
LOSS_INPUTS = ("L", "L_train")


def distinct(values: Any, rtol: float = 0.05) -> int:
    """Distinct values of a positive array: from the smallest up, a value more than ``rtol``
    above the first of the current cluster starts a new one (dense data spanning a range
    counts as many values as that range holds steps of ``rtol``)."""
    v = np.asarray(values, dtype=float)
    v = np.sort(v[np.isfinite(v) & (v > 0)])
    count, start = 0, -np.inf
    for x in v:
        if x > start * (1.0 + rtol):
            count, start = count + 1, x
    return count


def check_interval(name: str, value: float, lo: float, hi: float,
                   of: str | None = None) -> tuple[str, str | None]:
    """(the interval's width in words, the failure or None) by rules 4 and 5 for one parameter.

    ``of``: the parameter's kind when its name does not say it (see :func:`kind`).
    """
    k = of or kind(name)
    if k in ("exponent", "coefficient"):
        rel = (hi - lo) / abs(value) if value != 0 else math.inf
        if k == "exponent" and value <= 0:
            return f"{rel:.2f} x value", f"{name} = {value:.3g} is not positive"
        if not rel < EXPONENT_WIDTH:
            # the width only: an interval that fails the rule is not a result to print
            return f"{rel:.2f} x value", (f"{name}'s 95% interval is {rel:.2f} x its value "
                                          f"(needs < {EXPONENT_WIDTH:g})")
        return f"{rel:.2f} x value", None
    decades = math.log10(float(hi) / float(lo)) if lo > 0 and hi > 0 else math.inf  # inf past the floats
    if not decades <= SCALE_DECADES:
        span = ("reaches 0 or below" if not lo > 0 else "spans more than 300 decades" if not math.isfinite(decades)
                else f"spans {decades:.1f} decades" if round(decades, 1) > SCALE_DECADES  # 2.03: not "2.0"
                else f"spans {decades:.2f} decades")
        return f"{decades:.2f} decades", f"{name}'s 95% interval {span} (needs <= {SCALE_DECADES:g} decades)"
    return f"{decades:.2f} decades", None


def limit_ratio(name: str, value: float, lo: float, hi: float, of: str | None = None) -> float:
    """How far along its limit one parameter's interval is (1: exactly at rule 4's or 5's limit):
    width / (``EXPONENT_WIDTH`` x value) for exponents and coefficients, decades /
    ``SCALE_DECADES`` for the others; inf where the interval has no finite measure."""
    k = of or kind(name)
    if k in ("exponent", "coefficient"):
        if value == 0 or (k == "exponent" and value < 0):
            return math.inf
        return (hi - lo) / abs(value) / EXPONENT_WIDTH
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        return math.inf
    return math.log10(hi / lo) / SCALE_DECADES


def _at_bound(params: list[str], samples: np.ndarray, floor: float) -> np.ndarray:
    """Per replicate: whether any parameter sits at a search bound."""
    bad = ~np.all(np.isfinite(samples), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        for j, name in enumerate(params):
            x = samples[:, j]
            k = kind(name)
            if k == "exponent":
                bad |= (x <= 0) | (x > EXPONENT_CEIL)
            elif k == "offset":
                bad |= x < COLLAPSE * floor
            elif k == "scale":
                bad |= (x <= 0) | (np.abs(np.log10(np.abs(x))) > SCALE_DECADES_CEIL)
    return bad


def _intervals(params: Mapping[str, float], ci: Mapping[str, Any] | None,
               stderr: Mapping[str, Any] | None) -> tuple[dict[str, tuple[float, float]], str]:
    if ci:
        return {k: (float(v[0]), float(v[1])) for k, v in ci.items() if v is not None}, "bootstrap percentile"
    out = {}
    for name, value in params.items():
        se = (stderr or {}).get(name)
        if se is None or not math.isfinite(float(se)):
            continue
        se = float(se)
        if kind(name) in ("scale", "offset") and value > 0:
            s = 1.96 * se / value
            # a factor past exp(700) is no interval at all: (0, inf), which the rule rejects
            out[name] = (value * math.exp(-s), value * math.exp(s)) if s < 700 else (0.0, math.inf)
        else:
            out[name] = (value - 1.96 * se, value + 1.96 * se)
    return out, "value +- 1.96 Gauss-Newton standard errors (no bootstrap)"


def verdict(params: Mapping[str, float], inputs: Mapping[str, Any], y: Any, *,
            ci: Mapping[str, Any] | None = None, stderr: Mapping[str, Any] | None = None,
            samples: np.ndarray | None = None, n_requested: int = 0) -> dict[str, Any]:
    """Apply :data:`RULE`; returns ``{"identified", "failures", "checks", "intervals", "rule"}``.

    Args:
        params: the fitted natural parameters, in the form's order.
        inputs: input name -> values of the fitted points.
        y: the fitted outputs.
        ci, stderr: the fit's intervals and standard errors.
        samples: bootstrap parameter samples (n_ok, k) in the order of ``params``.
        n_requested: replicates asked for (``n_requested - len(samples)`` failed).
    """
    names = list(params)
    y = np.asarray(y, dtype=float)
    failures: list[str] = []
    checks: dict[str, Any] = {}
    ratios: dict[str, float] = {}  # each judged measure over its limit (1: at the limit)
    counts = {x: distinct(v, 0.01 if x in LOSS_INPUTS else 0.05) for x, v in inputs.items()}
    checks["distinct_inputs"] = counts
    for x, n in counts.items():
        if n < MIN_DISTINCT:
            failures.append(f"{x} takes {n} distinct value(s); needs {MIN_DISTINCT} or more")
    checks["points"] = int(len(y))
    if len(y) < len(names) + 2:
        failures.append(f"{len(y)} points for {len(names)} parameters; needs {len(names) + 2} or more")
    if n_requested:
        n_ok = 0 if samples is None else len(samples)
        failed = (n_requested - n_ok) / n_requested
        checks["replicates"] = n_requested
        checks["bootstrap_failed"] = n_requested - n_ok
        ratios["failed replicates"] = failed / MAX_FAILED
        if failed > MAX_FAILED:
            failures.append(f"{n_requested - n_ok} of {n_requested} bootstrap replicates failed "
                            f"({failed:.0%} > {MAX_FAILED:.0%})")
        if samples is not None and len(samples):
            floor = float(np.min(y)) if len(y) else 0.0
            share = float(np.mean(_at_bound(names, np.asarray(samples, dtype=float), floor)))
            checks["at_bound"] = share
            ratios["replicates at a bound"] = share / MAX_AT_BOUND
            if share > MAX_AT_BOUND:
                failures.append(f"a parameter is at a search bound in {share:.0%} of the bootstrap replicates "
                                f"(> {MAX_AT_BOUND:.0%})")
    intervals, how = _intervals(params, ci, stderr)
    checks["intervals"] = how
    widths: dict[str, str] = {}
    for name in names:
        lo_hi = intervals.get(name)
        if lo_hi is None:
            failures.append(f"{name} has no interval")
            continue
        width, problem = check_interval(name, float(params[name]), *lo_hi)
        widths[name] = width
        ratios[name] = limit_ratio(name, float(params[name]), *lo_hi)
        if problem:
            failures.append(problem)
    checks["widths"] = widths
    checks["limit_ratios"] = ratios
    checks["edge"] = [k for k, r in ratios.items() if abs(r - 1.0) <= EDGE_MARGIN]
    return {"identified": not failures, "failures": failures, "checks": checks,
            "intervals": {k: list(v) for k, v in intervals.items()}, "rule": RULE}


def at_edge(identification: Mapping[str, Any] | None) -> list[str]:
    """The checks of a verdict within ``EDGE_MARGIN`` of their limits (parameter names, or
    ``"failed replicates"`` / ``"replicates at a bound"``): where more replicates could turn it."""
    if not identification:
        return []
    return list((identification.get("checks") or {}).get("edge") or [])


def edge_note(identification: Mapping[str, Any] | None) -> str | None:
    """``"at the rule's edge after 800 replicates: C_c_min at 0.96 of its limit"``; None off the edge."""
    edge = at_edge(identification)
    if not edge:
        return None
    checks = identification.get("checks") or {}
    ratios = checks.get("limit_ratios") or {}
    n = checks.get("replicates")
    after = f" after {n} replicates" if n else ""
    parts = ", ".join(f"{k} at {ratios[k]:.2f} of its limit" for k in edge if k in ratios)
    return f"at the rule's edge{after}: {parts}"


def short(identification: Mapping[str, Any] | None) -> str:
    """One line: ``identified`` or ``not identified: <first reasons>``; with :func:`edge_note` where it applies."""
    if not identification:
        return "identification not assessed"
    edge = edge_note(identification)
    tail = f" ({edge})" if edge else ""
    if identification.get("identified"):
        return "identified" + tail
    return "not identified: " + "; ".join(identification.get("failures", [])[:3]) + tail


def not_identified(law: str, identification: Mapping[str, Any] | None, runs: str = "these runs") -> str | None:
    """``"<law>'s parameters are not identified by <runs> (<first two reasons>)"``; None when the
    verdict says identified or there is none (a published law)."""
    if not identification or identification.get("identified"):
        return None
    failures = identification.get("failures") or []
    return (f"{law}'s parameters are not identified by {runs}"
            + (f" ({'; '.join(failures[:2])})" if failures else ""))


__all__ = ["EDGE_MARGIN", "EDGE_REPLICATES", "RULE", "at_edge", "check_interval", "distinct", "edge_note", "kind",
           "limit_ratio", "not_identified", "short", "verdict"]
