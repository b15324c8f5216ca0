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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _relation_text(laws: LawSet, key: str) -> str:
    alloc = laws.extras["allocation"]
    rel = alloc["relations"][key]
    return (f"{key}(C) = {rel['coef']:g} (C / {alloc.get('C_unit', 'FLOP')})^{rel['exponent']:g}"
            f" ({alloc.get('where', 'extras.allocation')})")


def crossing(law: str | LawSet | FitResult) -> Crossing:
    """C*, N*, D*, L* where L(C_min) = L(D_opt(C_min)), by a root in ln C."""
    laws = resolve(law)
    purpose = "the L(C_min) / L(D) crossing of [K] 6.3"
    cmin, data = laws.get("kaplan_cmin", purpose), laws.get("kaplan_d", purpose)
    if not has_relation(laws, "D_opt"):
        raise LmscaleError(
            f"law set {laws.name!r} has no D_opt(C) relation (extras.allocation.relations.D_opt, "
            f"e.g. [K] table 6 or a fitted frontier), needed for {purpose}"
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
