"""Where the compute frontier meets the data wall ([K] section 6.3).

Along the compute-efficient frontier the loss falls as L(C_min) ([K] eq.
1.3), but the data grows only as D_opt(C_min) ([K] table 6), and a model
trained on D tokens can do no better than L(D) ([K] eq. 1.2). L(C_min)
falls faster, so the two meet: past that C* the frontier would predict a
loss the data cannot give. :func:`crossing` finds C* from any law set with
``kaplan_cmin``, ``kaplan_d`` and a D_opt(C) relation (``extras["allocation"]``:
[K] table 6 in the catalog, or a fitted frontier, see
:func:`lmscale.laws.planner.power_allocation`). Pure numpy/scipy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from lmscale.accounting import PF_DAY
from lmscale.errors import LmscaleError
from lmscale.laws.catalog import resolve
from lmscale.laws.intervals import central_band
from lmscale.laws.planner import LOG_C_RANGE, allocation_relation, has_relation
from lmscale.laws.result import FitResult, LawSet


@dataclass
class Crossing:
    """The intersection of L(C_min) and L(D_opt(C_min)); C in FLOPs, loss in nats/token."""

    law: str
    C_star: float
    C_star_pf_days: float
    N_star: float | None
    D_star: float
    L_star: float
    formula: dict[str, str]
    published: dict[str, Any] | None = None
    ci: dict[str, tuple[float, float]] | None = None
    n_replicates: int = 0
    data_max: float | None = None
    decades_beyond: float | None = None

    @property
    def beyond_data(self) -> bool | None:
        """Whether C* lies above the largest compute the laws were fitted on (None: unknown)."""
        return None if self.decades_beyond is None else self.decades_beyond > 0

    def identification(self) -> str | None:
        """Why C* is not identified (no interval, or a 95% interval wider than the rule allows
        a scale: :func:`lmscale.laws.identification.check_interval`); None when it is."""
        from lmscale.laws.identification import check_interval

        ci = self.ci.get("C_star") if self.ci else None
        if ci is None:
            return "no interval"
        return check_interval("C_star", self.C_star, *ci)[1]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "beyond_data": self.beyond_data}


def _relation_text(laws: LawSet, key: str) -> str:
    alloc = laws.extras["allocation"]
    rel = alloc["relations"][key]
    return (f"{key}(C) = {rel['coef']:g} (C / {alloc.get('C_unit', 'FLOP')})^{rel['exponent']:g}"
            f" ({alloc.get('where', 'extras.allocation')})")


def crossing(law: str | LawSet | FitResult, *, d_opt_samples: Any = None, data_max: float | None = None,
             level: float = 0.95) -> Crossing:
    """C*, N*, D*, L* where L(C_min) = L(D_opt(C_min)), by a root in ln C.

    With ``d_opt_samples`` ((k, 2) rows of D_opt's coefficient and exponent,
    a frontier's bootstrap) and bootstrap samples on the set's
    ``kaplan_cmin`` and ``kaplan_d`` fits, the crossing is recomputed per
    replicate (the i-th sample of each) and ``ci`` holds percentile
    intervals of C*, D* and L*. ``data_max``: the largest C_min the laws saw;
    ``decades_beyond`` says how far C* lies above it.
    """
    laws = resolve(law)
    point = _crossing(laws)
    if data_max is not None and data_max > 0:
        point.data_max = float(data_max)
        point.decades_beyond = math.log10(point.C_star / data_max)
    cmin, data = laws.laws["kaplan_cmin"], laws.laws["kaplan_d"]
    if d_opt_samples is None or cmin.bootstrap_params is None or data.bootstrap_params is None:
        return point
    d_opt = np.asarray(d_opt_samples, dtype=float)
    k = min(len(d_opt), len(cmin.bootstrap_params), len(data.bootstrap_params))
    rows = []
    for i in range(k):
        sub = LawSet(name=laws.name, extras={"allocation": _with_d_opt(laws, d_opt[i])}, laws={
            "kaplan_cmin": FitResult("kaplan_cmin", dict(zip(cmin.form.params, cmin.bootstrap_params[i]))),
            "kaplan_d": FitResult("kaplan_d", dict(zip(data.form.params, data.bootstrap_params[i]))),
        })
        try:
            c = _crossing(sub)
        except (LmscaleError, ValueError, OverflowError, ZeroDivisionError):
            continue
        rows.append([c.C_star, c.D_star, c.L_star])
    point.n_replicates = len(rows)
    if len(rows) >= 2:
        lo, hi = central_band(np.array(rows), level)
        point.ci = {name: (float(a), float(b)) for name, a, b in zip(("C_star", "D_star", "L_star"), lo, hi)}
    return point


def _with_d_opt(laws: LawSet, row: Any) -> dict[str, Any]:
    alloc = dict(laws.extras["allocation"])
    relations = dict(alloc["relations"])
    relations["D_opt"] = {"coef": float(row[0]), "exponent": float(row[1])}
    relations.pop("N_opt", None)
    alloc["relations"] = relations
    return alloc


def _crossing(laws: LawSet) -> Crossing:
    purpose = "the L(C_min) / L(D) crossing of [K] 6.3"
    cmin, data = laws.get("kaplan_cmin", purpose), laws.get("kaplan_d", purpose)
    if not has_relation(laws, "D_opt"):
        raise LmscaleError(
            f"law set {laws.name!r} has no D_opt(C) relation (extras.allocation.relations.D_opt, "
            f"e.g. [K] table 6 or a fitted frontier), needed for {purpose}"
        )
    if laws.extras["allocation"].get("compute", "C_min") != "C_min":
        raise LmscaleError(
            f"law set {laws.name!r}: its D_opt(C) relation was fitted in C (training FLOPs at its batch "
            f"sizes, {laws.extras['allocation'].get('where', 'extras.allocation')}); {purpose} needs "
            "D_opt(C_min), a frontier in C_min ([K] eq. 5.5: learning curves with the noise scale)"
        )

    def gap(log_c: float) -> float:
        C = math.exp(log_c)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            d = float(allocation_relation(laws, "D_opt", C))
            a, b = float(cmin.predict(C_min=C)), float(data.predict(D=d))
        if not (math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0):
            raise LmscaleError(f"law set {laws.name!r}: at C = {C:.3g} FLOPs, L(C_min) = {a:.3g} and "
                               f"L(D_opt = {d:.3g}) = {b:.3g}: the laws give no positive finite losses to compare")
        return math.log(a) - math.log(b)

    lo, hi = LOG_C_RANGE
    if gap(lo) * gap(hi) > 0:
        raise LmscaleError(f"law set {laws.name!r}: L(C_min) and L(D_opt(C_min)) do not cross "
                           "between 1 and 1e100 FLOPs")
    C = math.exp(brentq(gap, lo, hi, xtol=1e-12, rtol=1e-14))
    D = float(allocation_relation(laws, "D_opt", C))
    N = float(allocation_relation(laws, "N_opt", C)) if has_relation(laws, "N_opt") else None
    formula = {
        "C_star": "C* solves L(C_min) = L(D_opt(C_min)): (C_c^min / C)^alpha_C^min = (D_c / D_opt(C))^alpha_D "
                  "([K] eqs. 1.3, 1.2), root in ln C",
        "D_opt": _relation_text(laws, "D_opt"),
        "D_star": "D* = D_opt(C*)",
        "N_star": "N* = N_opt(C*): " + _relation_text(laws, "N_opt") if N is not None else "no N_opt relation",
        "L_star": "L* = L(C_min = C*) = L(D*)",
        "units": "C in FLOPs (C_star_pf_days: / 8.64e19), D in tokens, L in nats/token",
        "note": "[K] eq. 6.8 rounds to C* ~ 1e4 PF-days, N* ~ 1e12, D* ~ 1e12 tokens, L* ~ 1.7; "
                "D* here is the D_opt relation at C*, stated above",
    }
    published = (laws.extras.get("published") or {}).get("intersection")
    return Crossing(law=laws.name, C_star=C, C_star_pf_days=C / PF_DAY, N_star=N, D_star=D,
                    L_star=float(cmin.predict(C_min=C)), formula=formula, published=published)


__all__ = ["Crossing", "crossing"]
