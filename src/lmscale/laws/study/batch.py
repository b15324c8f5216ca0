"""Which points identify B_crit(L) and L(N, S_min) ([K] section 5)."""

from __future__ import annotations

import pandas as pd

from lmscale.laws.study.frames import (
    StudyFrames,
    after_warmup,
    count_distinct,
    finished_only,
    transformer_curves,
)
from lmscale.laws.study.results import NotEnough, StudyFits, enough

#: Share of a run's steps whose noise-scale estimates are left out (warm-up, EMA start).
WARMUP_SHARE = 0.1


def select_critical_batch(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """B_crit(L) ([K] eq. 5.3): gradient-noise-scale estimates B_simple ~ B_crit ([K] 5.1).

    Every Transformer curve point past the first ``WARMUP_SHARE`` of its run
    with a positive estimate; the bootstrap resamples whole runs.
    """
    noise = finished_only(frames, frames.noise_scale)
    if noise.empty or "noise_scale" not in noise:
        raise NotEnough("needs gradient-noise-scale estimates (runs with noise_scale = true)")
    arch = noise["architecture"].fillna("transformer") if "architecture" in noise else "transformer"
    late = noise["step"] >= WARMUP_SHARE * noise.groupby("run_id")["step"].transform("max")
    ok = (arch == "transformer") & late & (noise["noise_scale"] > 0) & (noise["loss"] > 0)
    pts = noise[ok].rename(columns={"loss": "L", "noise_scale": "B"})
    if pts["run_id"].nunique() < 2 or len(pts) < 6:
        raise NotEnough(f"needs noise-scale estimates along 2 or more Transformer runs (the study has "
                        f"{pts['run_id'].nunique()} runs with {len(pts)} usable estimates)")
    return pts, (f"B_crit = B_simple = tr(Sigma)/|G|^2, the gradient noise scale ([K] 5.1), at every "
                 f"Transformer curve point past the first {WARMUP_SHARE:.0%} of its steps "
                 f"({pts['run_id'].nunique()} runs, {len(pts)} points)")


def select_steps(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(N, S_min) ([K] eq. 1.6): curve points after warm-up, steps converted to S_min (eq. 5.4)."""
    from lmscale.laws.forms import critical_batch, min_steps

    curves = transformer_curves(frames)
    if "bcrit" not in fits.laws:
        raise NotEnough("needs the fitted B_crit(L) to convert steps to S_min ([K] eq. 5.4): "
                        + fits.missing.get("bcrit", "not fitted"))
    if curves.empty or count_distinct(curves.groupby("run_id")["N"].first()) < 2:
        raise NotEnough("needs learning curves of Transformers at 2 or more sizes")
    after = after_warmup(curves)
    b_crit = critical_batch(fits.laws.laws["bcrit"].params, after["loss"].to_numpy(dtype=float))
    pts = after.assign(S=min_steps(after["step"].to_numpy(dtype=float),
                                   after["batch_tokens"].to_numpy(dtype=float), b_crit))
    enough(pts, "kaplan_ns", 8, "curve points after warm-up")
    return pts, ("every Transformer curve point after warm-up (after the learning-rate peak), "
                 "S_min = S / (1 + B_crit(L)/B) with the fitted B_crit(L) ([K] eq. 5.4)")
