"""Build a study's report: fits (asked of ``lmscale.laws``), figures, one HTML page, fits JSON.

Output folder layout::

    DIR/index.html          the report (figures embedded as data URIs by default)
    DIR/fits.json           the fitted laws as a LawSet (``lmscale plan --law DIR/fits.json``)
    DIR/forecast.json       the validated forecast, when the runs span 4+ model sizes
    DIR/figures/<key>.png   every drawn figure, also as <key>.svg

Everything is written to a temporary name and renamed, figures first and the
page last, so an interrupted build never leaves a page pointing at nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lmscale.errors import LmscaleError
from lmscale.files import write_text_atomic
from lmscale.laws.study import StudyFits, StudyFrames, fit_study
from lmscale.report import html
from lmscale.report.figures import FIGURES, FigureOutcome, FigureSpec, draw_figure
from lmscale.report.figures import forecast as forecast_figure

#: Published law sets shown beside the study's fits.
DEFAULT_PUBLISHED = ("kaplan2020", "hoffmann2022", "besiroglu2024")


@dataclass(frozen=True)
class ReportOptions:
    """How the report is built.

    Attributes:
        bootstrap: bootstrap replicates per law for the 95% intervals (0: none).
        holdout: run the held-out check (the largest model predicted from the others).
        seed: seed of the bootstrap.
        published: catalog law sets to compare with (``lmscale.laws.catalog``).
        embed: embed the PNGs in index.html as data URIs (the page alone is the
            whole report); otherwise it links ``figures/<key>.png``.
        strict: raise on a figure that fails for another reason than missing runs
            (otherwise the page reports the error and the other figures are kept).
        progress: a progress bar on stderr.
        title: page title (default: from the store's name).
        flops: the FLOP accounting of the fits (``"6N"`` or ``"exact"``, see
            ``lmscale.laws.study.fit_study``).
        forecast: validate the candidate L(N, D) laws at scale and draw the
            forecast figure and audit table (``lmscale.laws.forecast``).
    """

    bootstrap: int = 200
    holdout: bool = True
    seed: int = 0
    published: tuple[str, ...] = DEFAULT_PUBLISHED
    embed: bool = True
    strict: bool = False
    progress: bool = False
    title: str | None = None
    flops: str = "6N"
    forecast: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) or self.bootstrap < 0:
            raise LmscaleError(f"bootstrap = {self.bootstrap!r}: expected a count >= 0")


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    index: Path
    fits_json: Path
    fits: StudyFits
    figures: list[FigureOutcome] = field(default_factory=list)

    @property
    def drawn(self) -> list[str]:
        return [o.spec.key for o in self.figures if o.drawn]

    @property
    def not_drawn(self) -> dict[str, list[str]]:
        return {o.spec.key: o.missing or [str(o.error)] for o in self.figures if not o.drawn}


def published_sets(names: Sequence[str]) -> dict[str, Any]:
    from lmscale.laws import catalog

    return {name: catalog.load(name) for name in names}


def build_report(store_or_frames: Any, out_dir: str | Path, options: ReportOptions | None = None, *,
                 fits: StudyFits | None = None, specs: Sequence[FigureSpec] | None = None) -> Report:
    """Fit the study (unless ``fits`` is given), draw its figures, write the page and fits JSON."""
    options = options or ReportOptions()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LmscaleError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    frames = StudyFrames.load(store_or_frames)
    bar = _Progress(options.progress)
    if fits is None:
        bar.say("fitting the laws the study supports")
        fits = fit_study(frames, bootstrap=options.bootstrap, holdout=options.holdout, seed=options.seed,
                         progress=options.progress, flops=options.flops)
    fits_json = out / "fits.json"
    fits.laws.to_json(fits_json)
    outcomes = []
    todo = list(FIGURES if specs is None else specs)
    for spec in tqdm(todo, desc="figures", unit="fig", file=sys.stderr, disable=not options.progress):
        outcomes.append(draw_figure(spec, frames, fits, out / "figures", strict=options.strict))
    forecast_html = ""
    if options.forecast:
        bar.say("validating the candidate laws at scale (forecast)")
        fc, why_not = forecast_figure.study_forecast(frames, options.bootstrap, options.seed)
        if fc is not None:
            fc.to_json(out / "forecast.json")
            runs = forecast_figure.forecast_frame(frames)
            spec = replace(forecast_figure.SPEC, draw=lambda _frames, _fits: forecast_figure.draw_forecast(fc, runs))
            outcomes.append(draw_figure(spec, frames, fits, out / "figures", strict=options.strict))
        forecast_html = forecast_figure.audit_html(fc, why_not)
    title = options.title or f"lmscale report: {fits.laws.name}"
    body = [
        html.holdout_card(fits),
        html.laws_section(fits, published_sets(options.published)),
        html.exponents_section(fits),
        html.checks_section(fits),
        html.figures_section(outcomes, out, options.embed),
        forecast_html,
        html.method_section(fits, fit_settings(fits, options)),
        html.runs_section(frames.runs if not frames.runs.empty else frames.final_points),
    ]
    index = out / "index.html"
    write_text_atomic(index, html.page(title, frames.source, body))
    bar.say(f"wrote {index}")
    return Report(index=index, fits_json=fits_json, fits=fits, figures=outcomes)


def fit_settings(fits: StudyFits, options: ReportOptions) -> dict[str, str]:
    """The fitting settings the page lists under 'How the numbers were computed', read from the fits."""

    def used(stat: str) -> str:
        values = sorted({str(f.stats[stat]) for f in fits.laws.laws.values() if stat in f.stats})
        return ", ".join(values) or "-"

    def span(stat: str) -> str:
        values = [int(f.stats[stat]) for f in fits.laws.laws.values() if stat in f.stats]
        return "-" if not values else f"{min(values)} to {max(values)}"

    units = sorted({str(f.stats["bootstrap_unit"]) for f in fits.laws.laws.values() if "bootstrap_unit" in f.stats})
    return {
        "objective": (f"Huber loss (delta = {used('huber_delta')}) of log-residuals, reduced by "
                      f"{used('reduction')} over the points ([H] eq. 11)"),
        "search": (f"a grid of starting points per law ({span('grid_starts')}), then L-BFGS-B from the "
                   f"best {used('refined_starts')} (lmscale.laws.fitting)"),
        "intervals": (f"95% percentile intervals over {options.bootstrap} bootstrap refits, resampling "
                      f"{' or '.join(units) or 'points'}" if options.bootstrap
                      else "no bootstrap (--bootstrap 0): no intervals"),
        "held-out check": ("the largest model's loss predicted by L(N) fitted on the smaller models"
                           if options.holdout else "not run"),
        "compute-optimal frontier": "; ".join(f"{name}: {row['how']}" for name, row in fits.exponents.items())
                                    or "not found",
        "units": "loss in nats/token, N non-embedding parameters, D tokens, C FLOPs (PF-days for display)",
    }


class _Progress:
    """One-line progress messages on stderr."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def say(self, text: str) -> None:
        if self.enabled:
            print(f"lmscale report: {text}", file=sys.stderr, flush=True)
