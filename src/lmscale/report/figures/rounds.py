"""A study grown by ``lmscale next``: forecast, interval width and error against compute, per round."""

from __future__ import annotations

from typing import Any

import numpy as np

from lmscale.report import style
from lmscale.report.figures.base import FigureSpec, Missing


def draw_rounds(frames: Any, fits: Any):
    from lmscale.design.rounds import study_rounds
    from lmscale.errors import LmscaleError

    try:
        table = study_rounds(frames.final_points)
    except LmscaleError as exc:
        raise Missing(str(exc)) from None
    fig, (ax, ax_w) = style.new_figure(ncols=2, width=4.4, height=3.4)
    x = table["compute"].to_numpy(float)
    ax.errorbar(x, table["forecast"], yerr=[table["forecast"] - table["lo"], table["hi"] - table["forecast"]],
                fmt="o-", color=style.FIT_COLOR, capsize=3, ms=4)
    for xi, yi, r, law in zip(x, table["forecast"], table["round"], table["law"]):
        ax.annotate(f"round {r}: {law}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    style.label(ax, "C", "loss", ylog=False)
    ax.set_xlabel("compute spent (FLOPs, C = 6 N D summed over runs)")
    ax.set_title(f"forecast at N = {table['target_N'].iloc[0]:.3g}, D = {table['target_D'].iloc[0]:.3g}")
    ax_w.plot(x, 100 * table["width"], "o-", color=style.FIT_COLOR, ms=4, label="interval width at the target")
    err = table["later_error"].to_numpy(float)
    ok = np.isfinite(err)
    if ok.any():
        ax_w.plot(x[ok], 100 * err[ok], "s--", color="#b45f06", ms=4, label="error on the later rounds' runs")
    ax_w.set_xscale("log")
    ax_w.set_yscale("log")
    ax_w.set_xlabel("compute spent (FLOPs)")
    ax_w.set_ylabel("percent of the loss")
    ax_w.set_title("what each round bought")
    ax_w.legend(loc="best")
    return fig


FIGURES = (
    FigureSpec(
        key="fig90_design_rounds",
        title="Experiment design: what each round of lmscale next bought",
        paper="beyond [K]: lmscale next (expected variance reduction per FLOP)",
        caption=(
            "A study grown by 'lmscale next --write-study' and 'lmscale sweep run'. Left: the forecast of the "
            "loss at the target (the last round's) with its interval, refitted on the runs of rounds 0 to R, "
            "against the compute spent so far, by the forecast 'lmscale next' uses (the validated forecast where "
            "the runs hold enough sizes to validate, with its extrapolation error; else chinchilla: the law is "
            "named at each round, and a change of law can widen the interval). Right: the relative width of that interval, and the mean "
            "|predicted / measured - 1| of each round's forecast on the runs the later rounds added (runs it "
            "had not seen)."
        ),
        needs="a store grown by lmscale next (groups named next-R@N=..,D=..)",
        draw=draw_rounds,
    ),
)
