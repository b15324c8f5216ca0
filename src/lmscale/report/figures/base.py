"""What every figure module shares: the figure type, :class:`Missing`, look-ups into the fits."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd


class Missing(Exception):
    """A figure cannot be drawn: the study lacks the runs (or fits) listed in ``needs``."""

    def __init__(self, *needs: str):
        self.needs = [n for n in needs if n]
        super().__init__("; ".join(self.needs))


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report.

    Attributes:
        key: file stem and anchor, e.g. ``fig01_headline``.
        title: heading in the report.
        paper: the figure of the paper it reproduces.
        caption: what it shows and how to read it.
        needs: the runs it needs, in words (shown when it cannot be drawn).
        draw: ``draw(frames, fits) -> Figure``; raises :class:`Missing`.
    """

    key: str
    title: str
    paper: str
    caption: str
    needs: str
    draw: Callable[[Any, Any], Any]


def has_fit(fits: Any, key: str) -> bool:
    return fits is not None and key in fits.laws.laws


def fit_of(fits: Any, key: str, what: str) -> Any:
    """The fitted law ``key``, or :class:`Missing` saying why it could not be fitted."""
    if has_fit(fits, key):
        return fits.laws.laws[key]
    why = (fits.missing.get(key) if fits is not None else None) or "no fit"
    raise Missing(f"{what} ({key}): {why}")


def points_of(fits: Any, key: str) -> pd.DataFrame:
    """The points the law ``key`` was fitted on (empty when none)."""
    if fits is None:
        return pd.DataFrame()
    frame = fits.points.get(key)
    return frame if frame is not None else pd.DataFrame()


def why_missing(fits: Any, key: str, what: str) -> str:
    why = (fits.missing.get(key) if fits is not None else None) or "not fitted"
    return f"{what} ({key}): {why}"


def note(ax: Any, text: str, width: int = 38) -> None:
    """Write in an empty panel why it is empty (wrapped to fit the panel)."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, textwrap.fill(text, width), ha="center", va="center", fontsize=7.5,
            color="#555555", transform=ax.transAxes)
