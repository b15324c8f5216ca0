"""Learning curves against tokens and compute, coloured by model size ([K] figures 2 and 13)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lmscale.laws.study import transformer_curves
from lmscale.report import style
from lmscale.report.figures.base import FigureSpec, Missing, has_fit, points_of, why_missing


def draw_runs(ax: Any, curves: pd.DataFrame, x: str) -> Any:
    """One line per run, coloured by N; returns the colour mappable (for a colour bar)."""
    sizes = curves.groupby("run_id")["N"].first().sort_values()
    colors, mappable = style.size_colors(sizes.to_numpy())
    for (run_id, _n), color in zip(sizes.items(), colors):
        run = curves[curves["run_id"] == run_id].sort_values(x)
        run = run[run[x] > 0]
        ax.plot(run[x], run["loss"], "-", color=color, alpha=0.85, lw=1.0)
    return mappable


def draw_learning_curves(frames: Any, fits: Any):
    curves = transformer_curves(frames)
    n_runs = curves["run_id"].nunique() if not curves.empty else 0
    if n_runs < 2:
        raise Missing(f"learning curves of at least 2 Transformer runs (the study has {n_runs})")
    fig, (ax_d, ax_c) = style.new_figure(ncols=2)
    mappable = draw_runs(ax_d, curves, "D")
    style.label(ax_d, "tokens", "loss")
    ax_d.set_title("learning curves vs tokens")
    draw_runs(ax_c, curves, "C")
    style.label(ax_c, "C", "loss")
    ax_c.set_title("learning curves vs compute, frontier")
    frontier = points_of(fits, "kaplan_c")
    if not frontier.empty:
        ax_c.plot(frontier["C"], frontier["loss"], "o", color=style.FRONTIER_COLOR, ms=3.5,
                  label="compute-efficient frontier", zorder=4)
    if has_fit(fits, "kaplan_c"):
        fit = fits.laws.laws["kaplan_c"]
        grid = style.log_grid(curves["C"][curves["C"] > 0], pad=0.0)
        style.law_line(ax_c, fit, "kaplan_c", grid, along="C")
    else:
        ax_c.text(0.02, 0.02, why_missing(fits, "kaplan_c", "L(C)"), transform=ax_c.transAxes, fontsize=7)
    ax_c.legend(loc="upper right")
    cbar = fig.colorbar(mappable, ax=[ax_d, ax_c], fraction=0.03, pad=0.02)
    cbar.set_label(style.LABELS["N"])
    return fig


FIGURES = (
    FigureSpec(
        key="fig02_learning_curves",
        title="Learning curves and the compute-efficient frontier",
        paper="[K] figures 2 and 13",
        caption=(
            "Test loss on the training distribution along each Transformer run, against tokens "
            "processed (left) and training compute C = 6ND (right), coloured by non-embedding "
            "parameters N. Larger models reach a given loss in fewer tokens. The dots are the "
            "compute-efficient frontier (lowest loss at each compute over all runs) and the line "
            "is L(C) at fixed batch size fitted to it."
        ),
        needs="learning curves of at least 2 Transformer runs",
        draw=draw_learning_curves,
    ),
)
