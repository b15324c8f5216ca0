"""The forecast figure and the audit table: how well the chosen law predicted larger runs.

Left: every validation cut (:mod:`lmscale.laws.validation`), each held-out
run's predicted / measured - 1 against its model size, with the 80% interval
the calibrated extrapolation error gives at its distance beyond the cut's
data. Right: the forecast beyond the largest run, the loss along the largest
run's tokens per parameter with its 80% and 95% intervals
(:meth:`lmscale.laws.forecast.Forecast.predict`), the runs it was fitted on,
and cut 1's predictions of the largest model size from the smaller ones.

The forecast itself is asked of ``lmscale.laws`` (:func:`study_forecast`);
this module only draws it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from lmscale.errors import LmscaleError
from lmscale.report import style
from lmscale.report.figures.base import FigureSpec

KEY = "fig_forecast"
TITLE = "Forecast: validated at scale, with calibrated intervals"
CAPTION = ("Left: each validation cut fits the runs below a threshold size (cuts spaced in log size) and "
           "predicts the rest; bars are the 80% intervals of the calibrated extrapolation error. Right: the "
           "forecast beyond the largest run (at its tokens per parameter), with 80% and 95% intervals; "
           "crosses are cut 1's predictions of the largest model size from the smaller ones.")
SPEC = FigureSpec(key=KEY, title=TITLE, paper="beyond [K]: validation by scale", caption=CAPTION,
                  needs="runs at 4 or more model sizes with N, D and loss", draw=lambda frames, fits: None)


def forecast_frame(frames: Any) -> pd.DataFrame:
    """The study's runs for a forecast (:func:`lmscale.laws.forecast.store_runs`)."""
    from lmscale.laws.forecast import store_runs

    runs = frames.final_points if hasattr(frames, "final_points") else frames
    return store_runs(runs if runs is not None else pd.DataFrame())


def study_forecast(frames: Any, bootstrap: int, seed: int = 0) -> tuple[Any, str | None]:
    """(forecast, None), or (None, why not): the forecast of the study's runs."""
    from lmscale.laws.forecast import forecast

    frame = forecast_frame(frames)
    if frame.empty:
        return None, "no finished transformer runs with N, tokens and loss"
    try:
        return forecast(frame, bootstrap=bootstrap, seed=seed), None
    except LmscaleError as exc:
        return None, str(exc)


def draw_forecast(fc: Any, runs: pd.DataFrame | None = None):
    """The two panels for a :class:`~lmscale.laws.forecast.Forecast` (``runs``: N, D, loss it was fitted on)."""
    fig, (ax_cut, ax_far) = style.new_figure(ncols=2)
    z80 = float(norm.ppf(0.9))
    details = fc.audit.get("detail", {}).get(fc.law, [])
    axis = fc.audit.get("by", "N")  # the cuts' axis: model size N, or compute C
    colors, _ = style.size_colors(np.arange(1, len(details) + 2, dtype=float))
    for cut, color in zip(details, colors):
        N, pred, meas = (np.asarray(cut[k], dtype=float) for k in ("N", "predicted", "measured"))
        rel = pred / meas - 1.0
        half = z80 * fc.error.scale(np.asarray(cut["distance"], dtype=float))
        ax_cut.errorbar(N, 100 * rel, yerr=100 * np.vstack([rel - (pred * np.exp(-half) / meas - 1.0),
                                                           pred * np.exp(half) / meas - 1.0 - rel]),
                        fmt="o", ms=4, color=color, capsize=2, lw=0.8,
                        label=f"cut {cut['cut']}: {axis} >= {cut['threshold']:.3g}")
    ax_cut.axhline(0.0, color="#999999", lw=0.8)
    ax_cut.set_xscale("log")
    ax_cut.set_xlabel(style.LABELS["N"])
    ax_cut.set_ylabel("predicted / measured - 1 (%)")
    ax_cut.set_title(f"validation cuts: {fc.law}")
    if details:
        ax_cut.legend(loc="best")

    n_max = fc.data["N_max"]
    ratio = float(fc.data["D_max"] / n_max) if runs is None or runs.empty else \
        float((runs["D"] / runs["N"])[runs["N"] == runs["N"].max()].median())
    grid = np.logspace(np.log10(n_max) - 1.0 if runs is None or runs.empty else np.log10(runs["N"].min()),
                       np.log10(n_max) + 1.0, 60)
    if fc.has_draws:
        p95 = fc.predict(N=grid, D=ratio * grid, level=0.95)
        p80 = fc.predict(N=grid, D=ratio * grid, level=0.8)
        ax_far.fill_between(grid, p95.lo, p95.hi, color=style.FIT_COLOR, alpha=0.12, lw=0, label="95% interval")
        ax_far.fill_between(grid, p80.lo, p80.hi, color=style.FIT_COLOR, alpha=0.25, lw=0, label="80% interval")
    label = f"forecast at D/N = {ratio:.3g}" + ("" if fc.has_draws else " (no bootstrap: no intervals)")
    (line,) = ax_far.plot(grid, fc.point(N=grid, D=ratio * grid), "-", color=style.FIT_COLOR, label=label)
    line.set_gid(style.law_gid(f"forecast:{fc.law}", "N", D_over_N=ratio))
    if runs is not None and not runs.empty:
        ax_far.plot(runs["N"], runs["loss"], "o", color="#1f4e79", ms=3.5, zorder=4, label="runs fitted")
    if details:
        first = details[0]
        ax_far.plot(first["N"], first["predicted"], "x", color="#e67e22", ms=6, zorder=5,
                    label="cut 1: predicted from smaller sizes")
    ax_far.axvline(n_max, color="#999999", lw=0.8, ls="--")
    style.label(ax_far, "N", "loss")
    ax_far.set_title("the forecast beyond the largest run")
    ax_far.legend(loc="lower left")
    return fig


def audit_html(fc: Any, why_not: str | None) -> str:
    """The audit table as an HTML section (or why the study has no forecast)."""
    from lmscale.report.html import esc, num, table, td

    if fc is None:
        return f'<h2 id="forecast">Forecast</h2><p class="note">No forecast: {esc(why_not)}</p>'
    rows = [[td(esc(r["candidate"])), td(num(r["cut"]), True), td(num(r["threshold"], 3), True),
             td(num(r["train_rows"]), True), td(num(r["held_out_rows"]), True),
             td(f"{100 * r['mean_abs_rel_error']:.3f}%", True), td(f"{100 * r['max_abs_rel_error']:.3f}%", True),
             td(f"{100 * r['score']:.3f}%", True)] for r in fc.audit["table"]]
    e = fc.error
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in fc.notes.get("runs", []))
    return (f'<h2 id="forecast">Forecast</h2>{notes}<p>Chosen: <strong>{esc(fc.law)}</strong>: {esc(fc.reason)}. '
            f"Intervals: bootstrap draws plus the extrapolation error s(d) = sqrt({e.s0:.4f}<sup>2</sup> + "
            f"({e.k:.4f} d)<sup>2</sup>) in log loss, d in decades beyond the data, calibrated on "
            f"{e.n_residuals} held-out runs of {e.n_cuts} cut(s).</p>"
            + table(["candidate", "cut", f"held out {esc(fc.audit.get('by', 'N'))} &ge;", "fit", "held", "mean |error|", "worst", "score"],
                    rows, 'id="audit-table"'))


__all__ = ["KEY", "SPEC", "audit_html", "draw_forecast", "forecast_frame", "study_forecast"]
