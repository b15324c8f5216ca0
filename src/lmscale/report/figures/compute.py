"""The headline power laws ([K] figure 1) and the critical batch size (figure 10)."""

from __future__ import annotations

from typing import Any

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
        xs = pts[column] if not pts.empty else None
        if xs is None or xs.empty:
            raise Missing(f"{title}: the fit kept no points")
        scale, alpha = fit.form.params
        style.law_line(ax, fit, key, style.log_grid(xs), along=column,
                       label=f"({scale} / {column})^{alpha}: {scale} = {fit.params[scale]:.2g}")
        ax.set_title(f"{fit.form.title}: {alpha} = {fit.params[alpha]:.3f}")
        ax.legend(loc="best")
    return fig


def draw_critical_batch(frames: Any, fits: Any):
    fit = fit_of(fits, "bcrit", "B_crit(L)")
    pts = points_of(fits, "bcrit")
    if pts.empty:
        raise Missing("B_crit(L): the fit kept no points")
    fig, (ax,) = style.new_figure(width=5.2, height=3.8)
    noise = frames.noise_scale
    if not noise.empty and {"loss", "noise_scale"} <= set(noise):
        raw = noise[(noise["noise_scale"] > 0) & (noise["loss"] > 0)]
        ax.plot(raw["loss"], raw["noise_scale"], ".", color="#bbbbbb", ms=2, label="noise-scale estimates")
    ax.plot(pts["L"], pts["B"], "o", color="#1f4e79", ms=4, label="fitted points", zorder=4)
    grid = style.log_grid(pts["L"], pad=0.05)
    style.law_line(ax, fit, "bcrit", grid, along="L")
    style.label(ax, "loss", "B")
    ax.set_title(f"B_crit(L) = B_* / L^(1/alpha_B), alpha_B = {fit.params['alpha_B']:.3f}")
    ax.legend(loc="best")
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
            "Critical batch size (tokens) against test loss, with the fitted "
            "B_crit(L) = B_*/L^(1/alpha_B) ([K] eq. 1.4). Grey: the gradient-noise-scale "
            "estimates along the runs ([K] section 5.1)."
        ),
        needs="a batch-size sweep at one or more model sizes, or gradient-noise-scale estimates",
        draw=draw_critical_batch,
    ),
)
