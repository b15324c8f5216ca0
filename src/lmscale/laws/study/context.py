"""Loss beyond the training text and along the context: transfer ([K] 3.2.2) and L(t) ([K] figure 20)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
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
    pts = pts.rename(columns={"position": "t"}).drop(columns=["run_id"])  # positions resample one by one
    enough(pts, "position", 8, "context positions")
    arch = pts["architecture"].iloc[0] if "architecture" in pts else "transformer"
    return pts, (f"final test loss at each context position of the largest {arch} run ({run_id}), from its "
                 "final evaluation")


def position_runs(frames: StudyFrames) -> list[str]:
    """The largest run of each architecture with per-position losses; among runs of that size,
    the one whose final evaluation was longest (smallest standard errors), else the lowest loss."""
    pos = finished_only(frames, frames.per_position)
    if pos.empty:
        return []
    has_se = "se" in pos and pos["se"].notna().any()
    runs = pos.groupby("run_id").agg(N=("N", "first"), architecture=("architecture", "first"),
                                     loss=("loss", "mean"), se=("se", "mean") if has_se else ("loss", "size"))
    runs["architecture"] = runs["architecture"].fillna("transformer")
    out = []
    for arch in sorted(runs["architecture"].unique()):
        sel = runs[runs["architecture"] == arch]
        top = sel[sel["N"] >= sel["N"].max() * (1 - 1e-9)]
        out.append(str(top.sort_values(["se", "loss"] if has_se else ["loss"]).index[0]))
    return out


def other_distributions(frames: StudyFrames) -> list[str]:
    final = frames.final_distribution_losses
    if final.empty or "train_distribution" not in final:
        return []
    return sorted(set(final["distribution"]) - set(final["train_distribution"].dropna()))


def position_check(frames: StudyFrames, fits: Any = None) -> dict | None:
    """Largest standard error of the per-position losses relative to the loss, per fitted run; with
    ``fits`` (:class:`StudyFits`), each run's L(t) fit (``r2``: :func:`_position_r2`); the test and
    total documents of the corpus where its prepared data is on this machine (``documents``)."""
    pos = finished_only(frames, frames.per_position)
    if pos.empty:
        return None
    runs = position_runs(frames)
    sel = pos[pos["run_id"].isin(runs)]
    r2 = _position_r2(sel, fits)
    if "se" not in sel or not sel["se"].notna().any():
        return {"max_rel_se": None, "runs": len(runs), "r2": r2,
                "note": "no standard errors stored (runs from before the final evaluation recorded them)"}
    rel = (sel["se"] / sel["loss"]).groupby(sel["run_id"]).max()
    out = {"max_rel_se": float(rel.max()), "runs": len(runs), "by_run": {str(k): float(v) for k, v in rel.items()},
           "r2": r2}
    if "se_shape" in sel and sel["se_shape"].notna().any():
        shape = (sel["se_shape"] / sel["loss"]).groupby(sel["run_id"]).max()
        out.update(max_rel_se_shape=float(shape.max()), by_run_shape={str(k): float(v) for k, v in shape.items()})
    documents = corpus_documents(frames, runs)
    if documents:
        out["documents"] = documents
    return out


def corpus_documents(frames: StudyFrames, run_ids: list[str]) -> dict[str, int] | None:
    """Test and total documents of the training distribution the runs ``run_ids`` were evaluated
    on, from the prepared data's ``manifest.json`` (:mod:`lmscale.data.prepared`); None where the
    runs name no prepared directory this machine has."""
    import json
    from pathlib import Path

    runs = frames.runs
    if runs.empty or not {"run_id", "data_dir", "train_distribution"} <= set(runs.columns):
        return None
    mine = runs[runs["run_id"].isin(run_ids)][["data_dir", "train_distribution"]].dropna().drop_duplicates()
    if len(mine) != 1:
        return None
    data_dir, name = mine.iloc[0]
    try:
        manifest = json.loads((Path(str(data_dir)) / "manifest.json").read_text("utf-8"))
        entry = next(d for d in manifest["distributions"] if d["name"] == name)
        test, train = int(entry["test"]["documents"]), int(entry["train"]["documents"])
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None
    return {"test": test, "corpus": test + train} if test > 0 else None


def _position_r2(sel: pd.DataFrame, fits: Any) -> list[dict] | None:
    """Each fitted run's L(t) R^2 (of log loss), architecture, N and whether its runs identify it:
    Transformers first, then by architecture, largest N first (None without ``fits``)."""
    if fits is None:
        return None
    out = []
    for run_id, g in sel.groupby("run_id"):
        law = fits.laws.laws.get(f"position:{run_id}")
        if law is None or law.stats.get("r2") is None:
            continue
        arch = g["architecture"].iloc[0] if "architecture" in g else None
        out.append({"run_id": str(run_id), "architecture": str(arch if isinstance(arch, str) else "transformer"),
                    "N": float(g["N"].iloc[0]), "r2": float(law.stats["r2"]),
                    "identified": law.identified is not False})
    return sorted(out, key=lambda r: (r["architecture"] != "transformer", r["architecture"], -r["N"]))


#: A run trained on at least this share of the L(N) runs' tokens counts as trained alike.
EQUAL_TRAINING_SHARE = 0.9


def trained_alike(tokens: float, reference: float, early_stopped: bool) -> bool:
    """Whether a run of ``tokens`` compares with runs of ``reference`` tokens: it early-stopped
    (converged), or it saw at least :data:`EQUAL_TRAINING_SHARE` of them."""
    return early_stopped or tokens >= EQUAL_TRAINING_SHARE * reference


def architecture_check(frames: StudyFrames, fits) -> dict | None:
    """Each LSTM and Universal Transformer run's loss against the Transformers' L(N) at its N.

    ``ratio`` = loss / L_transformer(N) - 1 (positive: worse than a Transformer of equal
    non-embedding N).
    ``beyond_decades``: how far the run's N lies outside the sizes L(N) was fitted on (0 inside).
    The comparison is of architectures only where the run was trained as the L(N) runs were:
    it early-stopped (converged), or it saw at least :data:`EQUAL_TRAINING_SHARE` of their
    median tokens. A run cut off earlier is flagged (``equal_training`` False): its gap
    measures its shorter training as much as its architecture.
    """
    law = fits.laws.laws.get("kaplan_n")
    pts = frames.final_points
    if law is None or pts.empty or "architecture" not in pts:
        return None
    others = pts[pts["architecture"].fillna("transformer") != "transformer"]
    if others.empty:
        return None
    ref_pts = fits.points.get("kaplan_n")
    reference = (float(np.median(ref_pts["tokens"])) if ref_pts is not None and "tokens" in ref_pts
                 and not ref_pts.empty else None)
    fitted = (ref_pts["N"].to_numpy(dtype=float) if ref_pts is not None and "N" in ref_pts
              and not ref_pts.empty else None)
    n = others["N"].to_numpy(dtype=float)
    ref = np.asarray(law.predict(N=n), dtype=float)
    rows = []
    for (_, run), x, r in zip(others.iterrows(), n, ref):
        tokens = float(run["tokens"]) if "tokens" in run and pd.notna(run["tokens"]) else None
        stopped = str(run.get("status", "")) == "early_stopped"
        equal = reference is None or tokens is None or trained_alike(tokens, reference, stopped)
        beyond = (0.0 if fitted is None else
                  float(max(np.log10(x / fitted.max()), np.log10(fitted.min() / x), 0.0)))
        rows.append({"architecture": str(run["architecture"]), "N": float(x), "loss": float(run["loss"]),
                     "transformer": float(r), "ratio": float(run["loss"] / r - 1.0), "tokens": tokens,
                     "early_stopped": stopped, "equal_training": bool(equal), "beyond_decades": beyond})
    return {"runs": sorted(rows, key=lambda r: (r["architecture"], r["N"])), "reference_tokens": reference,
            "share": EQUAL_TRAINING_SHARE,
            "how": ("loss / L(N) of the Transformers (fitted) at the same non-embedding N, minus 1; a run "
                    f"that neither early-stopped nor saw {EQUAL_TRAINING_SHARE:.0%} of the L(N) runs' median "
                    "tokens is flagged: not trained alike")}


#: A Transformer within this factor of N pairs with an LSTM or Universal Transformer by position.
PAIR_N_FACTOR = 1.5


def _position_bins(n_ctx: int) -> list[tuple[int, int]]:
    """Ranges of context position t: up to 4, up to 16, up to n_ctx / 2, the rest."""
    edges = sorted({e for e in (4, 16, n_ctx // 2) if 1 <= e < n_ctx}) + [n_ctx]
    return list(zip([1] + [e + 1 for e in edges[:-1]], edges))


def _scored_on(runs: pd.DataFrame) -> dict[str, tuple]:
    """Each run's final evaluation, as what decides its sequences: prepared data and tokens scored."""
    out = {}
    for r in runs.itertuples():
        try:
            spec = json.loads(r.spec_json)
            out[str(r.run_id)] = (str(r.data_dir), spec["final_eval_tokens"], spec["model"]["n_ctx"])
        except (AttributeError, TypeError, ValueError, KeyError):
            continue
    return out


def position_curves(pos: pd.DataFrame) -> dict[str, pd.Series]:
    """Each run's per-position loss (``frames.per_position`` rows), indexed by position t >= 1."""
    return {str(k): g.set_index("position")["loss"].sort_index()
            for k, g in pos[pos["position"] > 0].groupby("run_id")}


def position_gaps(frames: StudyFrames) -> dict | None:
    """[K] figure 7 (right): the largest LSTM's and Universal Transformer's loss against a
    Transformer's, position by position, over ranges of context position t.

    The Transformer is the one nearest in N (within :data:`PAIR_N_FACTOR`) among those trained
    alike (:func:`trained_alike`) whose final evaluation scored the same test sequences (same
    prepared data, tokens and context), the best of them where several are equally near; so the
    documents' own difficulty, which dominates each position's standard error, cancels in the
    ratio. ``gaps``: mean loss over the range / the Transformer's - 1 (negative: the other
    architecture is better there).
    """
    pos = finished_only(frames, frames.per_position)
    runs = frames.runs
    need = {"run_id", "spec_json", "data_dir", "non_embedding_params", "tokens", "status", "architecture"}
    if pos.empty or runs.empty or not need <= set(runs.columns):
        return None
    scored = _scored_on(runs)
    info = runs.drop_duplicates("run_id")
    info = info.set_index(info["run_id"].astype(str))
    arch = pos["architecture"].fillna("transformer") if "architecture" in pos else "transformer"
    curves = position_curves(pos)
    transformers = set(pos.loc[arch == "transformer", "run_id"].astype(str))
    pairs = []
    for run_id in position_runs(frames):
        if run_id in transformers or run_id not in scored or run_id not in info.index:
            continue
        me = info.loc[run_id]
        partners = []
        for other in transformers & set(scored):
            them = info.loc[other]
            ratio = float(them["non_embedding_params"]) / float(me["non_embedding_params"])
            alike = (trained_alike(float(me["tokens"]), float(them["tokens"]), me["status"] == "early_stopped")
                     and trained_alike(float(them["tokens"]), float(me["tokens"]),
                                       them["status"] == "early_stopped"))
            if scored[other] == scored[run_id] and 1 / PAIR_N_FACTOR <= ratio <= PAIR_N_FACTOR and alike:
                partners.append((round(abs(np.log(ratio)), 6), float(curves[other].mean()), other))
        if not partners:
            continue
        other = min(partners)[2]
        mine, theirs = curves[run_id], curves[other]
        gaps = [{"from": lo, "to": hi, "gap": float(mine.loc[lo:hi].mean() / theirs.loc[lo:hi].mean() - 1.0)}
                for lo, hi in _position_bins(int(scored[run_id][2]))]
        pairs.append({"run_id": run_id, "architecture": str(me["architecture"]),
                      "N": float(me["non_embedding_params"]), "transformer": other,
                      "transformer_N": float(info.loc[other, "non_embedding_params"]), "gaps": gaps})
    if not pairs:
        return None
    return {"pairs": pairs, "how": ("mean loss over each range of context position / that of the Transformer "
                                    "nearest in N trained alike and scored on the same test sequences, minus 1")}
