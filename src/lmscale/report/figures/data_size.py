"""Data size and training time: L(N, D) with overfitting ([K] figures 4 and 9), L(N, S_min) (figure 11)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lmscale.laws.forms import OVERFITTING
from lmscale.report import style
from lmscale.report.figures.base import FigureSpec, Missing, fit_of, points_of


def bands(values: pd.Series, decades: float = 0.05) -> pd.Series:
    """Group nearly equal values (within ``decades`` in log10) under their group median."""
    key = np.round(np.log10(values.astype(float)) / decades)
    return values.groupby(key).transform("median")


def draw_loss_vs_n_per_d(frames: Any, fits: Any):
    fit = fit_of(fits, "kaplan_nd", "L(N, D)")
    pts = points_of(fits, "kaplan_nd")
    if pts.empty:
        raise Missing("L(N, D): the fit kept no points")
    pts = pts.assign(D_band=bands(pts["D"]))
    fig, (ax, ax_over) = style.new_figure(ncols=2)
    d_values = np.sort(pts["D_band"].unique())
    colors, mappable = style.size_colors(d_values)
    grid = style.log_grid(pts["N"])
    for d, color in zip(d_values, colors):
        sel = pts[pts["D_band"] == d]
        ax.plot(sel["N"], sel["loss"], "o", color=color, ms=4)
        style.law_line(ax, fit, "kaplan_nd", grid, along="N", color=color, label="_nolegend_", D=float(d))
    style.label(ax, "N", "loss")
    ax.set_title("loss vs N for each D, fitted L(N, D)")
    ax.text(0.02, 0.02, style.law_text(fit), transform=ax.transAxes, fontsize=7)

    # [K] figure 9 (right): delta_L = L / L(N, inf) - 1 against N^(alpha_N/alpha_D) / D
    p = fit.params
    ratio = p["alpha_N"] / p["alpha_D"]
    x_pts = pts["N"].to_numpy(float) ** ratio / pts["D"].to_numpy(float)
    l_inf = np.asarray(fit.predict(N=pts["N"].to_numpy(float), D=np.inf), dtype=float)
    delta = pts["loss"].to_numpy(float) / l_inf - 1.0
    ax_over.scatter(x_pts, delta, c=colors_for(pts["D_band"], d_values, colors), s=16, zorder=4)
    n_ref = float(np.median(pts["N"]))
    x_grid = style.log_grid(x_pts)
    d_grid = n_ref**ratio / x_grid
    curve = np.asarray(OVERFITTING.predict(p, N=n_ref, D=d_grid), dtype=float) - 1.0
    (line,) = ax_over.plot(x_grid, curve, style.line_style(fit), color=style.FIT_COLOR,
                           label=style.marked(fit, "[K] eq. 4.3 from the fit"))
    line.set_gid(style.law_gid("overfitting", "D", N=n_ref))
    ax_over.axhline(0.0, color="#999999", lw=0.8)
    ax_over.set_xscale("log")
    ax_over.set_xlabel(f"N^(alpha_N/alpha_D) / D  (parameters^{ratio:.2f} / tokens)")
    ax_over.set_ylabel("L / L(N, D=inf) - 1  (relative loss)")
    ax_over.set_title("overfitting delta_L")
    ax_over.legend(loc="upper left")
    cbar = fig.colorbar(mappable, ax=[ax, ax_over], fraction=0.04, pad=0.02)
    cbar.set_label(style.LABELS["D"])
    return fig


def colors_for(values: pd.Series, levels: np.ndarray, colors: list) -> list:
    index = {float(v): c for v, c in zip(levels, colors)}
    return [index[float(v)] for v in values]


def draw_loss_vs_steps(frames: Any, fits: Any):
    fit = fit_of(fits, "kaplan_ns", "L(N, S_min)")
    pts = points_of(fits, "kaplan_ns")
    if pts.empty:
        raise Missing("L(N, S_min): the fit kept no points")
    fig, (ax,) = style.new_figure(width=5.6, height=3.9)
    n_values = np.sort(pts["N"].unique())
    colors, mappable = style.size_colors(n_values)
    for n, color in zip(n_values, colors):
        sel = pts[pts["N"] == n].sort_values("S")
        ax.plot(sel["S"], sel["loss"], "o", color=color, ms=2.5, alpha=0.6)
        style.law_line(ax, fit, "kaplan_ns", style.log_grid(sel["S"], pad=0.05), along="S", color=color,
                       label="_nolegend_", N=float(n))
    style.label(ax, "S", "loss")
    ax.set_title("L(N, S_min): learning curves after warm-up")
    ax.text(0.02, 0.02, style.law_text(fit), transform=ax.transAxes, fontsize=7)
    cbar = fig.colorbar(mappable, ax=ax, fraction=0.05)
    cbar.set_label(style.LABELS["N"])
    return fig


FIGURES = (
    FigureSpec(
        key="fig04_loss_vs_n_and_d",
        title="Loss against model size for each dataset size; overfitting",
        paper="[K] figures 4 (left) and 9",
        caption=(
            "Final test loss of each run against N, one colour per dataset size D, with the fitted "
            "L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D drawn at each D ([K] eq. 1.5). "
            "Right: the overfitting delta_L = L(N, D)/L(N, inf) - 1 against N^(alpha_N/alpha_D)/D; "
            "[K] eq. 4.3 predicts one curve for all runs."
        ),
        needs="runs at 2 or more dataset sizes for 2 or more model sizes (an L(N, D) grid)",
        draw=draw_loss_vs_n_per_d,
    ),
    FigureSpec(
        key="fig11_loss_vs_steps",
        title="Loss against model size and training steps",
        paper="[K] figure 11",
        caption=(
            "Test loss along each run against S_min, the steps it would have needed at a batch far "
            "above critical ([K] eq. 5.4), after warm-up, with the fitted "
            "L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S ([K] eq. 1.6) for each N."
        ),
        needs="learning curves of 2 or more model sizes and a critical-batch estimate",
        draw=draw_loss_vs_steps,
    ),
)
