"""Candidate laws for a forecast of L(N, D): forms times fitting variants.

Forms (each one :class:`~lmscale.laws.forms.LawForm`, written once):

* ``chinchilla``: [H] eq. 2, E + A/N^alpha + B/D^beta, free exponents (5 parameters);
* ``chinchilla_tied``: the same with alpha = beta, the over-training form of
  Gadre et al. 2024 (4 parameters);
* ``kaplan_nd``: [K] eq. 1.5, [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (4);
* ``data_constrained``: Muennighoff et al. 2023 eq. 7, the [H] form at
  effective N', D' (7), a candidate only when the runs repeat data (a ``U``
  or ``epochs`` column with D > U somewhere).

Fitting variants (:class:`~lmscale.laws.fitting.FitOptions`), tried for every form:

* ``huber``: Huber delta 1e-3 on log residuals ([H] eq. 11), the default;
* ``huber_1e-2``: a wider threshold (closer to least squares);
* ``linear``: residuals f - y in nats, Huber delta 1e-2 nats;
* ``e_bound``: E bounded below the lowest observed loss (forms with an E);
* ``compute_weighted``: points weighted by C / C_max, the larger runs count more.

A candidate is named ``law`` for the default variant and ``law+variant``
otherwise (``chinchilla_tied+compute_weighted``). On a tie the simpler one
wins: fewer parameters first, then the earlier variant of the list above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws import data_constrained as _data_constrained  # noqa: F401  (registers its form)
from lmscale.laws.fitting import FitOptions
from lmscale.laws.forms import LawForm, get_form
from lmscale.laws.io import derive_columns, rename_columns
from lmscale.tables import columns_hint

#: Forms of L(N, D) a forecast chooses among, simplest first.
FORECAST_LAWS = ("chinchilla_tied", "kaplan_nd", "chinchilla", "data_constrained")

#: Variant name -> (FitOptions changes, what it is). The first is the default.
VARIANTS: dict[str, tuple[dict, str]] = {
    "huber": ({}, "Huber 1e-3 on log residuals ([H] eq. 11)"),
    "huber_1e-2": ({"huber_delta": 1e-2}, "Huber 1e-2 on log residuals"),
    "linear": ({"residuals": "linear", "huber_delta": 1e-2}, "Huber 1e-2 nats on linear residuals"),
    "e_bound": ({"e_below_min_loss": True}, "E bounded below the lowest observed loss"),
    "compute_weighted": ({"weight_power": 1.0}, "points weighted by C / C_max"),
}


@dataclass(frozen=True)
class Candidate:
    """One law form fitted one way.

    Attributes:
        law: the form's name in ``lmscale.laws.FORMS``.
        variant: a key of :data:`VARIANTS`.
        options: the fitting options of that variant.
    """

    law: str
    variant: str
    options: FitOptions

    @property
    def name(self) -> str:
        return self.law if self.variant == "huber" else f"{self.law}+{self.variant}"

    @property
    def form(self) -> LawForm:
        return get_form(self.law)

    @property
    def n_params(self) -> int:
        return len(self.form.params)

    @property
    def rank(self) -> tuple[int, int]:
        """Simplicity order for ties: fewer parameters, then the earlier variant."""
        return self.n_params, list(VARIANTS).index(self.variant)

    def describe(self) -> str:
        return f"{self.form.title} [{self.law}], {VARIANTS[self.variant][1]}"


def make_candidate(name: str, base: FitOptions | None = None) -> Candidate:
    """``"chinchilla"`` or ``"chinchilla_tied+compute_weighted"`` -> :class:`Candidate`."""
    law, _, variant = name.partition("+")
    variant = variant or "huber"
    form = get_form(law)  # the clear error for an unknown law
    if not {"N", "D"} <= set(form.inputs):
        raise LmscaleError(f"law {law}: a forecast is of the loss at (N, D), and {law} is a law of "
                           f"{', '.join(form.inputs)} alone; forecast laws: {', '.join(FORECAST_LAWS)} "
                           f"('lmscale fit --law {law}' without --audit fits it, with its intervals)")
    if variant not in VARIANTS:
        raise LmscaleError(f"candidate {name!r}: unknown fitting variant {variant!r}; known: {', '.join(VARIANTS)}")
    if variant == "e_bound" and not _has_e(get_form(law)):
        raise LmscaleError(f"candidate {name!r}: law {law} has no irreducible loss E to bound")
    return Candidate(law, variant, replace(base or FitOptions(), **VARIANTS[variant][0]))


def _has_e(form: LawForm) -> bool:
    return any(name in ("e", "log_E") for name in form.theta_names)


def repeats_data(frame: pd.DataFrame) -> bool:
    """True when some run saw its unique tokens more than once (D > U, or epochs > 1)."""
    derived, _ = derive_columns(frame, ("U",))
    if not {"U", "D"} <= set(derived.columns):
        return False
    d = pd.to_numeric(derived["D"], errors="coerce").to_numpy(dtype=float)
    u = pd.to_numeric(derived["U"], errors="coerce").to_numpy(dtype=float)
    return bool(np.any(d > u * (1.0 + 1e-9)))


def candidates_for(
    frame: pd.DataFrame, columns: Mapping[str, str] | None = None, laws: Sequence[str] | None = None,
    variants: Sequence[str] | None = None, base: FitOptions | None = None,
) -> tuple[list[Candidate], dict[str, str]]:
    """The candidates the columns support, and the forms left out with the reason.

    ``laws``: forms to consider (default :data:`FORECAST_LAWS`), or exact
    candidate names (``"chinchilla+linear"``); ``variants``: variant names
    (default all of :data:`VARIANTS`).
    """
    frame = rename_columns(frame, columns)
    out: list[Candidate] = []
    skipped: dict[str, str] = {}
    for law in laws or FORECAST_LAWS:
        if "+" in law:
            out.append(make_candidate(law, base))
            continue
        form = get_form(law)
        derived, _ = derive_columns(frame, (*form.inputs, form.output))
        missing = [c for c in (*form.inputs, form.output) if c not in derived.columns]
        if missing:
            hint = " (or epochs)" if "U" in missing else ""
            if missing == ["U"]:  # the others fit without it: say where the table may hold it
                hint += columns_hint(frame, missing)
            skipped[law] = f"needs column(s) {', '.join(missing)}{hint}"
            continue
        if law == "data_constrained" and not repeats_data(frame):
            skipped[law] = "no run repeats its data (D <= U everywhere): the form is the chinchilla form"
            continue
        for variant in variants or VARIANTS:
            if variant == "e_bound" and not _has_e(form):
                continue
            out.append(make_candidate(f"{law}+{variant}", base))
    if not out:
        have = list(map(str, frame.columns))
        shown = ", ".join(have[:30]) + (f", ... ({len(have)} in all)" if len(have) > 30 else "")
        raise LmscaleError("no candidate law fits these columns (a forecast needs N, D (or C) and loss): "
                           + "; ".join(f"{k}: {v}" for k, v in skipped.items())
                           + f". The table has: {shown or 'no columns'}; map yours to these names with "
                           "columns= (the CLI's --columns), e.g. N=n_params,D=tokens,loss=val_loss"
                           + columns_hint(frame, [c for c in ("N", "D", "loss", "U") if c not in frame.columns]))
    return out, skipped


__all__ = ["FORECAST_LAWS", "VARIANTS", "Candidate", "candidates_for", "make_candidate", "repeats_data"]
