"""The paper's figures, drawn from a study's own runs, and the HTML report.

>>> from lmscale.report import build_report
>>> report = build_report("study.sqlite", "study-report")   # index.html, fits.json, figures/

Figures ask :mod:`lmscale.laws` for every fit and draw every law curve
through ``FitResult.predict``; this package computes no fit itself.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Report", "ReportOptions", "build_report"]


def __getattr__(name: str) -> Any:
    # matplotlib and the fitting stack load only when a report is built
    if name in __all__:
        from lmscale.report import build

        return getattr(build, name)
    raise AttributeError(name)
