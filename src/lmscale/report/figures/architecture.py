"""Architectures and distributions: Transformer vs LSTM by size and context position
([K] figure 7), loss on other distributions against the training distribution (figure 8)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lmscale.laws.study.context import position_curves
from lmscale.report import style
from lmscale.report.figures.base import FigureSpec, Missing, has_fit, note, why_missing

MARKERS = {"transformer": "o", "lstm": "s", "universal": "^"}
DASHES = {"transformer": "-", "lstm": "--", "universal": ":"}
#: At most this many runs per architecture in the per-position panel.
MAX_POSITION_RUNS = 6


def transfer_key(distribution: str) -> str:
    """Law-set key of the fit L_other(L_train) for one other distribution."""
    return f"transfer:{distribution}"


def position_key(run_id: str) -> str:
    """Law-set key of the fit L(t) of one run's loss per context position."""
    return f"position:{run_id}"


def _architectures(frame: pd.DataFrame) -> pd.Series:
    return frame["architecture"].fillna("transformer") if "architecture" in frame else \
        pd.Series("transformer", index=frame.index)


def draw_architectures(frames: Any, fits: Any):
    pts = frames.final_points
    archs = _architectures(pts) if not pts.empty else pd.Series(dtype=str)
    others = sorted(set(archs) - {"transformer"})
    by_n_ok = "transformer" in set(archs) and bool(others)
    pos = frames.per_position
    if not by_n_ok and pos.empty:
        raise Missing(
            "finished LSTM (or Universal Transformer) runs beside Transformer runs "
            f"(the study has architectures: {', '.join(sorted(set(archs))) or 'none'})",
            "per-position test losses (runs evaluated per context position)",
        )
    fig, (ax_n, ax_t, ax_gap) = style.new_figure(ncols=3)
    if by_n_ok:
        converged = fits.points.get("kaplan_n") if fits is not None else None
        for arch in sorted(set(archs)):
            sel = pts[archs == arch].sort_values("N")
            label = arch
            if arch == "transformer" and converged is not None and not converged.empty:
                sel, label = converged.sort_values("N"), "transformer (the runs L(N) was fitted on)"
            ax_n.plot(sel["N"], sel["loss"], MARKERS.get(arch, "o"), label=label, ms=5)
        if has_fit(fits, "kaplan_n"):
            grid = style.log_grid(pts["N"])
            style.law_line(ax_n, fits.laws.laws["kaplan_n"], "kaplan_n", grid, along="N",
                           label="Transformer L(N), fitted")
        style.label(ax_n, "N", "loss")
        ax_n.set_title("architectures by size")
        ax_n.legend(loc="upper right")
    else:
        note(ax_n, "needs LSTM or Universal Transformer runs beside the Transformers")
    if pos.empty:
        note(ax_t, "needs per-position test losses")
    else:
        draw_positions(ax_t, pos, fits)
    draw_position_gaps(ax_gap, pos, fits)
    return fig


def draw_position_gaps(ax: Any, pos: pd.DataFrame, fits: Any) -> None:
    """Each pair of ``fits.checks["position_gaps"]`` (an LSTM or Universal Transformer and the
    Transformer nearest in N, scored on the same test sequences): loss / the Transformer's - 1
    at each context position, with the means over the check's ranges of position."""
    gaps = ((getattr(fits, "checks", None) or {}).get("position_gaps") or {}).get("pairs") or []
    if not gaps or pos.empty:
        note(ax, "needs an LSTM or Universal Transformer and a Transformer of nearly equal N, trained "
                 "alike and scored on the same test sequences")
        return
    curves = position_curves(pos)
    for i, pair in enumerate(gaps):
        mine, theirs = curves.get(pair["run_id"]), curves.get(pair["transformer"])
        if mine is None or theirs is None:
            continue
        ratio = (mine / theirs - 1.0).dropna()
        color = f"C{i % 10}"
        ax.plot(ratio.index, 100 * ratio.to_numpy(), DASHES.get(pair["architecture"], "-"), color=color, lw=1.0,
                label=f"{pair['architecture']} N = {pair['N']:.2g} / Transformer N = {pair['transformer_N']:.2g}")
        for g in pair["gaps"]:
            ax.hlines(100 * g["gap"], g["from"], g["to"], color=color, lw=2.0)
    ax.axhline(0.0, color="#999999", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("context position t (tokens)")
    ax.set_ylabel("loss / the Transformer's - 1 (%)")
    ax.set_title("against a Transformer of near N, same sequences")
    ax.legend(loc="lower right", fontsize=7)


def draw_positions(ax: Any, pos: pd.DataFrame, fits: Any) -> None:
    pos = pos[(pos["position"] > 0) & np.isfinite(pos["loss"]) & (pos["loss"] > 0)]
    fitted = {k.split(":", 1)[1] for k in (fits.laws.laws if fits is not None else {}) if k.startswith("position:")}
    if fitted:  # the runs L(t) was fitted on: the longest final evaluations, one per architecture
        pos = pos[pos["run_id"].isin(fitted)]
    archs = _architectures(pos)
    sizes = pos.groupby("run_id")["N"].first()
    colors, _ = style.size_colors(sizes.to_numpy())
    color_of = dict(zip(sizes.index, colors))
    for arch in sorted(set(archs)):
        runs = sizes[sizes.index.isin(pos.loc[archs == arch, "run_id"])].sort_values()
        if len(runs) > MAX_POSITION_RUNS:
            runs = runs.iloc[np.linspace(0, len(runs) - 1, MAX_POSITION_RUNS).round().astype(int)]
        for k, (run_id, n) in enumerate(runs.items()):
            sel = pos[pos["run_id"] == run_id].sort_values("position")
            ax.plot(sel["position"], sel["loss"], DASHES.get(arch, "-"), color=color_of[run_id], lw=1.0,
                    label=f"{arch}, N = {n:.2g}" if k in (0, len(runs) - 1) else "_nolegend_")
            if "se" in sel and sel["se"].notna().any():
                se = sel["se"].fillna(0.0)
                ax.fill_between(sel["position"], sel["loss"] - 2 * se, sel["loss"] + 2 * se,
                                color=color_of[run_id], alpha=0.2, lw=0)
            key = position_key(str(run_id))
            if has_fit(fits, key):
                style.law_line(ax, fits.laws.laws[key], key, sel["position"].to_numpy(float), along="t",
                               label="_nolegend_", color=style.FIT_COLOR)
    style.label(ax, "t", "loss")
    ax.set_title("loss per context position (bands: +-2 s.e.)")
    ax.legend(loc="upper right", fontsize=7)


def draw_transfer(frames: Any, fits: Any):
    final = frames.final_distribution_losses
    if final.empty or "train_distribution" not in final:
        raise Missing("runs evaluated on 2 or more distributions (the study has no per-distribution losses)")
    train = final[final["distribution"] == final["train_distribution"]].set_index("run_id")["loss"]
    other = final[final["distribution"] != final["train_distribution"]]
    other = other.assign(L_train=other["run_id"].map(train)).dropna(subset=["L_train", "loss"])
    if other.empty:
        raise Missing("runs evaluated on at least one distribution besides the training one")
    fig, (ax, ax_curve) = style.new_figure(ncols=2)
    dists = sorted(other["distribution"].unique())
    palette = [f"C{i % 10}" for i in range(len(dists))]
    for dist, color in zip(dists, palette):
        sel = other[other["distribution"] == dist]
        ax.plot(sel["L_train"], sel["loss"], "o", color=color, label=str(dist))
        key = transfer_key(str(dist))
        if has_fit(fits, key):
            grid = np.linspace(sel["L_train"].min(), sel["L_train"].max(), 50)
            style.law_line(ax, fits.laws.laws[key], key, grid, along="L_train", color=color, label="_nolegend_")
    lo, hi = other["L_train"].min(), other["L_train"].max()
    ax.plot([lo, hi], [lo, hi], ":", color="#999999", label="same loss")
    ax.set_xlabel("test loss on the training distribution (nats/token)")
    ax.set_ylabel("test loss on the other distribution (nats/token)")
    ax.set_title("final loss, fitted L_other = slope L_train + offset")
    ax.legend(loc="upper left", fontsize=7)
    draw_transfer_curves(ax_curve, frames, dists, palette)
    if not any(has_fit(fits, transfer_key(str(d))) for d in dists):
        ax.text(0.02, 0.02, why_missing(fits, "transfer", "transfer"), transform=ax.transAxes, fontsize=7)
    return fig


def draw_transfer_curves(ax: Any, frames: Any, dists: list, palette: list) -> None:
    """Along training: the other-distribution loss against the training-distribution loss."""
    curve = frames.distribution_losses
    if curve.empty:
        note(ax, "needs per-distribution losses along the learning curves")
        return
    train = curve[curve["distribution"] == curve["train_distribution"]][["run_id", "idx", "loss"]]
    merged = curve[curve["distribution"] != curve["train_distribution"]].merge(
        train.rename(columns={"loss": "L_train"}), on=["run_id", "idx"])
    merged = merged.dropna(subset=["loss", "L_train"])
    for dist, color in zip(dists, palette):
        for _, run in merged[merged["distribution"] == dist].groupby("run_id"):
            run = run.sort_values("idx")
            ax.plot(run["L_train"], run["loss"], "-", color=color, lw=0.8, alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("test loss on the training distribution (nats/token)")
    ax.set_ylabel("test loss on the other distribution (nats/token)")
    ax.set_title("along training (every run)")


def draw_universal(frames: Any, fits: Any):
    """Universal Transformers beside Transformers, by unique and by applied parameters ([K] figure 17)."""
    from lmscale.accounting import applied_non_embedding_params
    from lmscale.models.spec import ModelSpec

    pts = frames.final_points
    archs = _architectures(pts) if not pts.empty else pd.Series(dtype=str)
    if "universal" not in set(archs) or "transformer" not in set(archs):
        raise Missing("Universal Transformer runs beside Transformer runs (the study has architectures: "
                      f"{', '.join(sorted(set(archs))) or 'none'})")
    shape_cols = ("n_layer", "d_model", "n_head", "d_ff")
    ut = pts[archs == "universal"].dropna(subset=list(shape_cols)).sort_values("N")

    def applied(row: pd.Series) -> float:
        spec = ModelSpec(architecture="universal", **{c: int(row[c]) for c in shape_cols},
                         n_ctx=int(row.get("n_ctx", 64) or 64), n_vocab=int(row.get("n_vocab", 512) or 512))
        return float(applied_non_embedding_params(spec))

    ut = ut.assign(N_applied=[applied(r) for _, r in ut.iterrows()])
    reference = (fits.points.get("kaplan_n") if fits is not None else None)
    if reference is None or reference.empty:
        reference = pts[archs == "transformer"]
    fig, (ax_u, ax_a) = style.new_figure(ncols=2)
    for ax, column, title in ((ax_u, "N", "by parameters (shared weights counted once)"),
                              (ax_a, "N_applied", "by parameters applied (compute per token)")):
        ax.plot(reference["N"], reference["loss"], "o", color="#1f4e79", ms=4, label="Transformer")
        ax.plot(ut[column], ut["loss"], "^-", color=style.FRONTIER_COLOR, ms=6,
                label=f"Universal Transformer ({int(ut['n_layer'].iloc[0])} applications)")
        if has_fit(fits, "kaplan_n"):
            style.law_line(ax, fits.laws.laws["kaplan_n"], "kaplan_n",
                           style.log_grid(pd.concat([reference["N"], ut[column]])), along="N",
                           label="Transformer L(N), fitted")
        style.label(ax, "N", "loss")
        ax.set_xlabel("non-embedding parameters N" if column == "N" else
                      "non-embedding parameters applied per token (N x reuse)")
        ax.set_title(title)
        ax.legend(loc="upper right")
    return fig


FIGURES = (
    FigureSpec(
        key="fig17_universal",
        title="Universal Transformers against Transformers",
        paper="[K] figure 17",
        caption=(
            "Final loss of Universal Transformers (one block applied n_layer times) beside the "
            "Transformers' L(N), against their unique non-embedding parameters (left) and the "
            "parameters applied per token, n_layer x one block (right). [K] finds the reuse buys "
            "a little per parameter and loses per unit of compute."
        ),
        needs="Universal Transformer runs at 2 or more sizes beside Transformer runs",
        draw=draw_universal,
    ),
    FigureSpec(
        key="fig07_architectures",
        title="Transformers against LSTMs: by size and by context position",
        paper="[K] figure 7",
        caption=(
            "Left: final loss against non-embedding parameters for each architecture, with the "
            "Transformers' fitted L(N). Right: final loss at each position t of the context, from "
            "a final evaluation over many test sequences (bands: +-2 standard errors, clustered "
            "by test document); LSTMs keep up on early tokens and plateau on late ones. Third: "
            "the largest LSTM and Universal Transformer against the Transformer nearest in N, "
            "trained alike and scored on the same test sequences, position by position (bars: "
            "the means over t up to 4, 16, n_ctx / 2 and the rest); below 0, the Transformer is "
            "the worse there."
        ),
        needs="LSTM (or Universal Transformer) runs beside Transformer runs, per-position losses",
        draw=draw_architectures,
    ),
    FigureSpec(
        key="fig08_transfer",
        title="Generalization to other distributions",
        paper="[K] figure 8",
        caption=(
            "Loss on each other text distribution against the loss on the training distribution: "
            "final points with a fitted line per distribution (left), and the whole course of "
            "training (right). [K] finds a near-constant offset that depends only on the "
            "training loss, not on the phase of training."
        ),
        needs="runs evaluated on at least one other distribution",
        draw=draw_transfer,
    ),
)
