"""The headline power laws ([K] figure 1) and the critical batch size (figure 10)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lmscale.report import style
from lmscale.report.figures.base import (
    FigureSpec,
    Missing,
    fit_of,
    has_fit,
    note,
    points_of,
    why_missing,
)
from lmscale.report.figures.curves import transformer_curves

#: The three panels of [K] figure 1: (law keys in order of preference, x column, title).
PANELS = (
    (("kaplan_cmin", "kaplan_c"), "compute", "L(C_min)"),
    (("kaplan_d",), "D", "L(D)"),
    (("kaplan_n",), "N", "L(N)"),
)


def draw_headline(frames: Any, fits: Any):
    if not any(has_fit(fits, key) for keys, _, _ in PANELS for key in keys):
        raise Missing(*(why_missing(fits, keys[0], title) for keys, _, title in PANELS))
    fig, axes = style.new_figure(ncols=3, width=3.7, height=3.3)
    for ax, (keys, x, title) in zip(axes, PANELS):
        key = next((k for k in keys if has_fit(fits, k)), None)
        if key is None:
            note(ax, why_missing(fits, keys[0], title))
            continue
        fit = fits.laws.laws[key]
        pts = points_of(fits, key)
        column = fit.form.inputs[0]
        if x == "compute":
            curves = transformer_curves(frames)
            for _, run in curves.groupby("run_id"):
                run = run[run["C"] > 0].sort_values("C")
                ax.plot(run["C"], run["loss"], "-", color="#9db4d3", lw=0.7, alpha=0.7)
            style.label(ax, "C", "loss")
            if key == "kaplan_cmin":
                ax.set_xlabel("compute (FLOPs): curves at C = 6ND, points at C_min")
        else:
            style.label(ax, x, "loss")
        if not pts.empty:
            ax.plot(pts[column], pts["loss"], "o", color="#1f4e79", ms=4, zorder=4, label="fitted points")
            if key == "kaplan_n":
                _size_sweep_left_out(ax, frames, pts)
        xs = pts[column] if not pts.empty else None
        if xs is None or xs.empty:
            raise Missing(f"{title}: the fit kept no points")
        scale, alpha = fit.form.params
        style.law_line(ax, fit, key, style.log_grid(xs), along=column,
                       label=f"({scale} / {column})^{alpha}: {scale} = {fit.params[scale]:.2g}")
        ax.set_title(style.marked(fit, f"{fit.form.title}: {alpha} = {fit.params[alpha]:.3f}"))
        ax.legend(loc="best")
    return fig


def _size_sweep_left_out(ax: Any, frames: Any, pts: Any) -> None:
    """The size sweep's Transformer runs L(N) did not fit (another learning rate at their size, or
    not converged; the rule under the figure says which), hollow, beside the fitted points."""
    runs = frames.results("transformer")
    if runs.empty or not {"rule", "run_id", "N", "loss"} <= set(runs.columns):
        return
    out = runs[(runs["rule"] == "converge") & ~runs["run_id"].isin(pts["run_id"])]
    if not out.empty:
        ax.plot(out["N"], out["loss"], "o", mfc="none", color="#7f7f7f", ms=4, zorder=3,
                label="left out: other LR, or not converged")


def draw_critical_batch(frames: Any, fits: Any):
    fit = fit_of(fits, "bcrit", "B_crit(L)")
    pts = points_of(fits, "bcrit")
    if pts.empty:
        raise Missing("B_crit(L): the fit kept no points")
    fig, (ax,) = style.new_figure(width=5.6, height=4.0)
    noise = frames.noise_scale
    if not noise.empty and {"loss", "noise_scale"} <= set(noise):
        raw = noise[(noise["noise_scale"] > 0) & (noise["loss"] > 0)]
        ax.plot(raw["loss"], raw["noise_scale"], ".", color="#cccccc", ms=2, label="every noise-scale estimate")
    se = pts["noise_scale_se"].to_numpy(dtype=float) if "noise_scale_se" in pts else None
    ax.errorbar(pts["L"], pts["B"], yerr=se, fmt="o", color="#1f4e79", ms=3.5, lw=0.8, zorder=4,
                label="B_simple, windows fitted (+-1 s.e.)")
    grid = style.log_grid(pts["L"], pad=0.05)
    style.law_line(ax, fit, "bcrit", grid, along="L",
                   label=f"fit to B_simple: B_* = {fit.params['B_star']:.2g}, alpha_B = {fit.params['alpha_B']:.3f}")
    emp = points_of(fits, "bcrit_empirical")
    title = "B_crit(L) = B_* / L^(1/alpha_B)"
    if not emp.empty:
        ax.errorbar(emp["L"], emp["B"], yerr=emp["se"].fillna(0.0) if "se" in emp else None, fmt="s",
                    color=style.FRONTIER_COLOR, ms=5, mfc="white", lw=1.0, zorder=5,
                    label="empirical: S = S_min + E_min / B per loss ([K] 5.1)")
        if has_fit(fits, "bcrit_empirical"):
            e = fits.laws.laws["bcrit_empirical"]
            style.law_line(ax, e, "bcrit_empirical", style.log_grid(emp["L"], pad=0.05), along="L",
                           color=style.FRONTIER_COLOR, label=f"fit to the empirical: alpha_B = {e.params['alpha_B']:.3f}")
        agree = (fits.checks or {}).get("bcrit_agreement") if fits is not None else None
        if agree:
            title += f"; empirical / noise scale = {agree['ratio_median']:.2f}"
        outside = [x for x in (agree or {}).get("outside", []) if np.isfinite(x.get("B", np.nan))]
        if outside:
            ax.plot([x["L"] for x in outside], [x["B"] for x in outside], "x", color=style.FRONTIER_COLOR, ms=6,
                    zorder=5, label="sweep levels outside S = S_min + E_min / B (not fitted)")
    style.label(ax, "loss", "B")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=7)
    return fig


HEADLINE = (
    FigureSpec(
        key="fig01_headline",
        title="Loss against compute, dataset size and model size",
        paper="[K] figure 1",
        caption=(
            "Left: learning curves against compute with the compute-efficient frontier and "
            "L(C_min) ([K] eq. 1.3). Middle: loss against dataset size D for the largest models "
            "with L(D) (eq. 1.2). Right: loss against non-embedding parameters N of models trained "
            "near convergence with L(N) (eq. 1.1). Points are the runs each law was fitted on; "
            "lines are the fitted laws."
        ),
        needs="a size sweep near convergence, a data sweep with a large model, learning curves",
        draw=draw_headline,
    ),
)

FIGURES = (
    FigureSpec(
        key="fig10_critical_batch",
        title="Critical batch size against loss",
        paper="[K] figure 10",
        caption=(
            "Critical batch size (tokens) against test loss, measured two ways. Blue: the gradient "
            "noise scale B_simple ([K] section 5.1), one estimate per window of steps with its "
            "standard error, and B_crit(L) = B_*/L^(1/alpha_B) ([K] eq. 1.4) fitted to them; grey: "
            "every estimate. Orange: the empirical critical batch of the batch-size sweep, from the "
            "steps S and tokens E = B S each batch size needs to reach a loss, fitted to "
            "S = S_min + E_min / B ((S/S_min - 1)(E/E_min - 1) = 1, McCandlish et al. 2018): "
            "B_crit = E_min / S_min; crosses: levels where a smaller batch needs more tokens than a "
            "larger one, outside that relation, so not fitted (what a line through them gives)."
        ),
        needs="gradient-noise-scale estimates, and a batch-size sweep (one size at 3 or more batch sizes)",
        draw=draw_critical_batch,
    ),
)
