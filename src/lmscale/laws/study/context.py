"""Loss beyond the training text and along the context: transfer ([K] 3.2.2) and L(t) ([K] figure 20)."""

from __future__ import annotations

import pandas as pd

from lmscale.laws.study.frames import StudyFrames, finished_only
from lmscale.laws.study.results import NotEnough, enough


def select_transfer(frames: StudyFrames, distribution: str) -> tuple[pd.DataFrame, str]:
    """L_other(L_train) ([K] 3.2.2): final losses of the Transformers on ``distribution``."""
    final = finished_only(frames, frames.final_distribution_losses)
    arch = final["architecture"].fillna("transformer") if "architecture" in final else "transformer"
    final = final[arch == "transformer"]
    train = final[final["distribution"] == final["train_distribution"]].set_index("run_id")["loss"]
    other = final[final["distribution"] == distribution]
    pts = other.assign(L_train=other["run_id"].map(train)).dropna(subset=["L_train", "loss"])
    if len(pts) < 3:
        raise NotEnough(f"needs 3 or more Transformer runs evaluated on {distribution} (the study has {len(pts)})")
    return pts, f"final test loss of every finished Transformer on {distribution} against its training loss"


def select_positions(frames: StudyFrames, run_id: str) -> tuple[pd.DataFrame, str]:
    """L(t) ([K] figure 20): one run's final loss at each context position t."""
    pos = frames.per_position
    pts = pos[(pos["run_id"] == run_id) & (pos["loss"] > 0) & (pos["position"] > 0)]
    pts = pts.rename(columns={"position": "t"})
    enough(pts, "position", 8, "context positions")
    arch = pts["architecture"].iloc[0] if "architecture" in pts else "transformer"
    return pts, f"final test loss at each context position of the largest {arch} run ({run_id})"


def position_runs(frames: StudyFrames) -> list[str]:
    """The largest run of each architecture with per-position losses."""
    pos = finished_only(frames, frames.per_position)
    if pos.empty:
        return []
    sizes = pos.groupby("run_id").agg(N=("N", "first"), architecture=("architecture", "first"))
    sizes["architecture"] = sizes["architecture"].fillna("transformer")
    return [str(sizes[sizes["architecture"] == a]["N"].idxmax()) for a in sorted(sizes["architecture"].unique())]


def other_distributions(frames: StudyFrames) -> list[str]:
    final = frames.final_distribution_losses
    if final.empty or "train_distribution" not in final:
        return []
    return sorted(set(final["distribution"]) - set(final["train_distribution"].dropna()))
