"""The figures of [K], drawn from a study's own runs and fits.

Each figure is a :class:`FigureSpec` whose ``draw(frames, fits)`` returns a
matplotlib ``Figure``, or raises :class:`Missing` naming the runs the study
would need for it. :func:`draw_all` draws every figure the study supports
and lists the others with what they would need.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmscale.report import style
from lmscale.report.figures.base import FigureSpec, Missing


@dataclass
class FigureOutcome:
    """A drawn figure (``paths``) or why it was not drawn (``missing`` / ``error``)."""

    spec: FigureSpec
    paths: dict[str, Path] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def drawn(self) -> bool:
        return bool(self.paths)


def draw_figure(spec: FigureSpec, frames: Any, fits: Any, out_dir: str | Path,
                strict: bool = False) -> FigureOutcome:
    """Draw one figure into ``out_dir`` (PNG and SVG).

    A figure that fails for another reason than missing runs is reported as
    an error (and raised when ``strict``): one bad figure never loses the rest
    of the report.
    """
    try:
        with style.style():
            fig = spec.draw(frames, fits)
            paths = style.save(fig, out_dir, spec.key)
    except Missing as miss:
        return FigureOutcome(spec, missing=miss.needs or [spec.needs])
    except Exception as exc:  # noqa: BLE001 - reported in the page, raised in strict mode
        if strict:
            raise
        warnings.warn(f"figure {spec.key} failed: {exc!r}", stacklevel=2)
        return FigureOutcome(spec, error=f"{type(exc).__name__}: {exc}")
    return FigureOutcome(spec, paths=paths)


def draw_all(frames: Any, fits: Any, out_dir: str | Path, specs: Sequence[FigureSpec] | None = None,
             strict: bool = False, progress: Callable[[str], None] | None = None) -> list[FigureOutcome]:
    """Draw every figure (default: :data:`FIGURES`); returns one outcome per figure."""
    outcomes = []
    for spec in FIGURES if specs is None else specs:
        if progress is not None:
            progress(spec.key)
        outcomes.append(draw_figure(spec, frames, fits, out_dir, strict=strict))
    return outcomes


def _registry() -> tuple[FigureSpec, ...]:
    from lmscale.report.figures import (
        allocation,
        architecture,
        compute,
        curves,
        data_size,
        rounds,
        shape,
    )

    specs = (*compute.HEADLINE, *compute.FIGURES, *curves.FIGURES, *data_size.FIGURES,
             *shape.FIGURES, *architecture.FIGURES, *allocation.FIGURES, *rounds.FIGURES)
    return tuple(sorted(specs, key=lambda s: s.key))


FIGURES: tuple[FigureSpec, ...] = _registry()

__all__ = ["FIGURES", "FigureOutcome", "FigureSpec", "Missing", "draw_all", "draw_figure"]
