"""Model shape at fixed size ([K] figure 5) and counting embeddings or not (figure 6)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lmscale.report import style
from lmscale.report.figures.base import FigureSpec, Missing, has_fit, note, points_of

#: Shape knobs of [K] figure 5: (label, function of a final-points frame).
KNOBS = (
    ("feed-forward ratio d_ff / d_model", lambda f: f["d_ff"] / f["d_model"]),
    ("aspect ratio d_model / n_layer", lambda f: f["d_model"] / f["n_layer"]),
    ("attention head size d_model / n_head (dims)", lambda f: f["d_model"] / f["n_head"]),
)

SHAPE_COLUMNS = ("N", "D", "loss", "n_layer", "d_model", "n_head", "d_ff")


def same_size_groups(points: pd.DataFrame, width: float = 0.1) -> list[pd.DataFrame]:
    """Runs of (nearly) the same N and D: N within ``width`` decades, D within 0.05 decades."""
    if points.empty:
        return []
    pts = points.assign(_d=np.round(np.log10(points["D"].astype(float)) / 0.05)).sort_values("N")
    groups = []
    for _, by_d in pts.groupby("_d"):
        start, members = None, []
        for idx, log_n in np.log10(by_d["N"].astype(float)).items():
            if start is None or log_n - start > width:
                if len(members) >= 2:
                    groups.append(by_d.loc[members])
                start, members = log_n, []
            members.append(idx)
        if len(members) >= 2:
            groups.append(by_d.loc[members])
    return [g.drop(columns="_d") for g in groups]


def shape_points(frames: Any) -> pd.DataFrame:
    pts = frames.results("transformer")
    if pts.empty or any(c not in pts for c in SHAPE_COLUMNS):
        return pd.DataFrame()
    return pts.dropna(subset=list(SHAPE_COLUMNS))


def draw_shape(frames: Any, fits: Any):
    groups = [g for g in same_size_groups(shape_points(frames)) if _varies(g)]
    if not groups:
        raise Missing(
            "2 or more Transformer runs of the same N and D (within 25%) that differ in shape "
            "(d_ff/d_model, d_model/n_layer or d_model/n_head); the study has none"
        )
    fig, axes = style.new_figure(ncols=3, width=3.6, height=3.2)
    sizes = [float(g["N"].median()) for g in groups]
    colors, _ = style.size_colors(sizes)
    for ax, (name, knob) in zip(axes, KNOBS):
        drawn = False
        for group, color, n in zip(groups, colors, sizes):
            x = knob(group).astype(float)
            if x.nunique() < 2:
                continue
            y = 100.0 * (group["loss"] / group["loss"].min() - 1.0)
            order = np.argsort(x.to_numpy())
            ax.plot(x.to_numpy()[order], y.to_numpy()[order], "o-", color=color, label=f"N = {n:.2g}")
            drawn = True
        if not drawn:
            note(ax, f"no runs of equal size differ in {name.split(' d_')[0]}")
            continue
        ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("loss increase over the best shape (%)")
        ax.legend(loc="upper left")
    return fig


def _varies(group: pd.DataFrame) -> bool:
    return any(knob(group).nunique() >= 2 for _, knob in KNOBS)


def draw_embeddings(frames: Any, fits: Any):
    pts = points_of(fits, "kaplan_n")
    rule = "the runs L(N) was fitted on"
    if pts.empty or "N_embedding" not in pts or "n_layer" not in pts:
        pts, rule = frames.results("transformer"), "all finished Transformer runs"
    needed = ("N", "N_embedding", "n_layer", "loss")
    known = pts.dropna(subset=list(needed)) if all(c in pts for c in needed) else pts.iloc[:0]
    if len(known) < 3:
        lacking = len(pts) - len(known)
        raise Missing(f"3 or more finished Transformer runs of different sizes with their embedding parameters "
                      f"and depth (the study has {len(known)}"
                      + (f"; {lacking} more without them, e.g. imported without their model shape" if lacking else "")
                      + ")")
    pts = known
    fig, (ax_all, ax_ne) = style.new_figure(ncols=2)
    layers = np.sort(pts["n_layer"].unique())
    colors, _ = style.size_colors(layers)
    for n_layer, color in zip(layers, colors):
        sel = pts[pts["n_layer"] == n_layer].sort_values("N")
        total = sel["N"] + sel["N_embedding"]
        text = f"{int(n_layer)} layer{'' if int(n_layer) == 1 else 's'}"
        ax_all.plot(total, sel["loss"], "o-", color=color, label=text)
        ax_ne.plot(sel["N"], sel["loss"], "o-", color=color, label=text)
    style.label(ax_all, "N_total", "loss")
    ax_all.set_xlabel("parameters including embeddings (count)")
    ax_all.set_title("with embedding parameters")
    style.label(ax_ne, "N", "loss")
    ax_ne.set_title("without embedding parameters")
    if has_fit(fits, "kaplan_n"):
        style.law_line(ax_ne, fits.laws.laws["kaplan_n"], "kaplan_n", style.log_grid(pts["N"]), along="N")
    ax_all.legend(loc="upper right")
    ax_ne.legend(loc="upper right")
    fig.suptitle(f"points: {rule}", fontsize=8)
    return fig


FIGURES = (
    FigureSpec(
        key="fig05_shape",
        title="Model shape at fixed size",
        paper="[K] figure 5",
        caption=(
            "Loss increase of each shape over the best shape of the same N and D, against the "
            "feed-forward ratio, the aspect ratio and the attention head size. [K] finds only a "
            "few percent across a factor of 40 in aspect ratio."
        ),
        needs="Transformer runs of the same N and D that differ in shape",
        draw=draw_shape,
    ),
    FigureSpec(
        key="fig06_embeddings",
        title="Counting parameters with and without embeddings",
        paper="[K] figure 6",
        caption=(
            "Final loss against parameters including the embedding matrices (left) and the "
            "non-embedding parameters N (right), by depth. Without embeddings the depths collapse "
            "onto one power law, drawn from the fitted L(N)."
        ),
        needs="3 or more finished Transformer runs",
        draw=draw_embeddings,
    ),
)
