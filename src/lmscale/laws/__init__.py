"""The laws of [K] and [H]: forms, fitting with uncertainty, frontiers, forecasts, plans.

``fit`` (here) fits one law to a table; :mod:`lmscale.laws.forecast`
(``ls.forecast``) validates the candidate laws at scale and forecasts with
calibrated intervals.

Pure numpy/scipy/pandas: importing or using this package never imports torch.
"""

from __future__ import annotations

from typing import Any

from lmscale.laws import data_constrained as _data_constrained  # noqa: F401  (registers its form)
from lmscale.laws.forms import FORMS, LawForm, get_form
from lmscale.laws.result import FitResult, LawSet

__all__ = ["FORMS", "FitResult", "LawForm", "LawSet", "fit", "get_form"]


def fit(frame: Any, law: str = "chinchilla", **kwargs: Any) -> FitResult:
    """Fit ``law`` to a DataFrame (see ``lmscale.laws.api.fit``)."""
    from lmscale.laws.api import fit as _fit

    return _fit(frame, law=law, **kwargs)

