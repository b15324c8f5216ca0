"""Which points identify B_crit(L) and L(N, S_min) ([K] section 5), two ways for B_crit.

* the gradient noise scale B_simple ~ B_crit ([K] 5.1), measured along every
  run: :func:`select_critical_batch` keeps the low-variance estimates (a
  whole window of steps behind each, a relative standard error below
  ``MAX_REL_SE``);
* the empirical B_crit of a batch-size sweep: steps and tokens to reach a
  set of loss levels at each batch size, fitted to S = S_min + E_min / B
  ([K] eqs. 5.4-5.5, McCandlish et al. 2018; :mod:`lmscale.laws.critical_batch`):
  :func:`select_empirical_critical_batch`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.study.frames import (
    StudyFrames,
    after_warmup,
    count_distinct,
    finished_only,
    first_epoch,
    peak_learning_rates,
    transformer_curves,
)
from lmscale.laws.study.results import NotEnough, StudyFits, enough

#: Share of a run's steps whose noise-scale estimates are left out (warm-up, first windows).
WARMUP_SHARE = 0.1
#: Fewest steps in the window behind a noise-scale estimate.
MIN_NOISE_STEPS = 8
#: Largest relative standard error of a noise-scale estimate that is fitted.
MAX_REL_SE = 0.5
#: Windows are fitted while the learning rate is at least this fraction of its peak: at the
#: end of a decay the optimiser barely moves, and the estimates there scatter far from the rest.
MIN_LR_SHARE = 0.3
#: z of the 95% interval that decides whether a sweep level determines B_crit to a factor 2.
AGREEMENT_Z = 1.96


def closing_windows(noise: pd.DataFrame) -> pd.DataFrame:
    """The estimates at the end of each window of steps (the next point starts a new one), once each.

    A curve point between two noise measurements (a dense evaluation a step
    or two before the window closes) reports the same window as the point
    after it, the same estimate over the same steps: the window is kept at
    its last point only, not counted twice. Stores without window lengths
    (``noise_steps``) keep every point.
    """
    if "noise_steps" not in noise or not noise["noise_steps"].fillna(0).gt(0).any():
        return noise
    noise = noise.sort_values(["run_id", "step"])
    by_run = noise.groupby("run_id")
    nxt, nxt_value = by_run["noise_steps"].shift(-1), by_run["noise_scale"].shift(-1)
    same_window = (nxt == noise["noise_steps"]) & (nxt_value == noise["noise_scale"])
    closes = (nxt.isna() | (nxt <= noise["noise_steps"])) & ~same_window
    return noise[closes]


def select_critical_batch(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """B_crit(L) ([K] eq. 5.3) from gradient-noise-scale estimates B_simple ~ B_crit ([K] 5.1).

    Every Transformer window on fresh data (the first pass of a repeated
    dataset: past it, the gradients are those of text the model has seen,
    and [K] 5.1 measures B_crit where data is not repeated) of at least
    ``MIN_NOISE_STEPS`` steps past the first ``WARMUP_SHARE`` of its run,
    while the learning rate is at least ``MIN_LR_SHARE`` of its peak, whose
    estimate has a relative standard error below ``MAX_REL_SE``; the
    bootstrap resamples whole runs.
    """
    noise = finished_only(frames, frames.noise_scale)
    if noise.empty or "noise_scale" not in noise:
        raise NotEnough("needs gradient-noise-scale estimates (runs with noise_scale = true)")
    arch = noise["architecture"].fillna("transformer") if "architecture" in noise else "transformer"
    noise = noise[(arch == "transformer") & (noise["noise_scale"] > 0) & (noise["loss"] > 0)]
    fresh = first_epoch(frames, noise)
    repeated, noise = len(noise) - len(fresh), fresh
    late = noise["step"] >= WARMUP_SHARE * noise.groupby("run_id")["step"].transform("max")
    how = (f"on fresh data ({repeated} estimates past the first pass of a repeated dataset left out), "
           f"past the first {WARMUP_SHARE:.0%} of its steps")
    curves = frames.curves
    if not curves.empty and {"lr", "step", "run_id"} <= set(curves) and curves["lr"].notna().any():
        lr = curves.drop_duplicates(["run_id", "step"]).set_index(["run_id", "step"])["lr"]
        at = pd.Series(lr.reindex(pd.MultiIndex.from_frame(noise[["run_id", "step"]])).to_numpy(), index=noise.index)
        peak = noise["run_id"].map(peak_learning_rates(frames))
        late &= at.isna() | (at >= MIN_LR_SHARE * peak)
        how += f" with the learning rate at >= {MIN_LR_SHARE:.0%} of its peak"
    windows = closing_windows(noise[late])
    if "noise_scale_se" in windows and windows["noise_scale_se"].notna().any():
        rel = windows["noise_scale_se"] / windows["noise_scale"]
        long = windows["noise_steps"].fillna(0) >= MIN_NOISE_STEPS
        windows = windows[long & (rel < MAX_REL_SE)]
        how += (f", windows of >= {MIN_NOISE_STEPS} steps (one estimate per window) with a relative "
                f"standard error < {MAX_REL_SE:g}")
    pts = windows.rename(columns={"loss": "L", "noise_scale": "B"})
    if pts["run_id"].nunique() < 2 or len(pts) < 6:
        raise NotEnough(f"needs noise-scale estimates along 2 or more Transformer runs (the study has "
                        f"{pts['run_id'].nunique()} runs with {len(pts)} usable estimates: {how})")
    return pts, (f"B_crit = B_simple = tr(Sigma)/|G|^2, the gradient noise scale ([K] 5.1), at every "
                 f"Transformer curve point {how} ({pts['run_id'].nunique()} runs, {len(pts)} points)")


def select_empirical_critical_batch(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """B_crit(L) from the batch-size sweep: per group and model size with 3 or more batch sizes,
    S = S_min + E_min / B at several loss levels, B_crit = E_min / S_min."""
    from lmscale.laws.critical_batch import critical_batch_levels

    curves = after_warmup(first_epoch(frames, transformer_curves(frames)))
    if curves.empty or "batch_tokens" not in curves:
        raise NotEnough("needs a batch-size sweep: one Transformer at 3 or more batch sizes")
    keys = ["group", "N"] if "group" in curves else ["N"]
    parts, skipped = [], []
    for key, g in curves.groupby(keys):
        if g["batch_tokens"].nunique() < 3:
            continue
        try:
            levels = critical_batch_levels(g)
        except LmscaleError as exc:
            skipped.append(f"{key}: {exc}")
            continue
        n = float(g["N"].iloc[0])
        # no run_id: the bootstrap resamples the loss levels (there are only one or two sizes)
        parts.append(levels.assign(N=n, group=str(key[0]) if len(keys) > 1 else ""))
    if not parts:
        raise NotEnough("needs a batch-size sweep: one Transformer (same group and size) at 3 or more batch "
                        "sizes" + (f" ({'; '.join(skipped)})" if skipped else ""))
    pts = pd.concat(parts, ignore_index=True)
    used = pts[pts["status"] == "ok"].copy()
    outside = pts[pts["status"].str.startswith("outside the relation")]
    used.attrs["outside"] = [{"L": float(r.L), "N": float(r.N), "B": float(r.B), "why": str(r.status)}
                             for r in outside.itertuples()]  # B: what the line through them gives
    if len(used) < 4:
        raise NotEnough(f"needs the steps/tokens trade-off at 4 or more loss levels (the sweep gives "
                        f"{len(used)}: " + "; ".join(sorted(set(pts["status"]) - {"ok"}))[:300] + ")")
    sizes = ", ".join(f"{n:,.0f}" for n in sorted(used["N"].unique()))
    left = (f"; {len(outside)} level(s) outside the relation left out (a smaller batch needing more tokens, "
            "or a larger one more steps)" if len(outside) else "")
    return used, (f"the batch-size sweep at N = {sizes}: steps S and tokens E = B S to reach each of "
                  f"{len(used)} loss levels, S = S_min + E_min / B fitted per level ([K] eqs. 5.4-5.5), "
                  f"B_crit = E_min / S_min{left}")


def bcrit_agreement(fits: StudyFits) -> dict[str, Any] | None:
    """The empirical B_crit against the noise-scale law at the same loss: ratios and whether within 2x.

    The verdict counts the levels where the sweep determines B_crit to a
    factor 2 (1.96 se_log <= ln 2): where its own 95% interval is wider, a
    factor-2 comparison says nothing. The others are reported, not hidden,
    as are the levels outside the relation the sweep is fitted to
    (``outside``: :func:`lmscale.laws.critical_batch.trade_off_violation`).
    """
    if "bcrit" not in fits.laws or "bcrit_empirical" not in fits.points:
        return None
    pts = fits.points["bcrit_empirical"]
    law = np.asarray(fits.laws.laws["bcrit"].predict(L=pts["L"].to_numpy(dtype=float)), dtype=float)
    ratio = pts["B"].to_numpy(dtype=float) / law
    se_log = pts["se_log"].to_numpy(dtype=float) if "se_log" in pts else np.full(len(ratio), np.nan)
    determined = ~(AGREEMENT_Z * se_log > np.log(2.0))  # NaN (no error known) counts
    if not determined.any():
        determined = np.ones(len(ratio), dtype=bool)
    used = ratio[determined]
    return {"ratio_median": float(np.median(used)), "ratio_min": float(used.min()),
            "ratio_max": float(used.max()), "within_2x": bool(np.all((used >= 0.5) & (used <= 2.0))),
            "levels": int(len(used)),
            "left_out": [{"L": float(lv), "ratio": float(r), "se_log": float(s),
                          "factor": float(np.exp(AGREEMENT_Z * s))}
                         for lv, r, s, d in zip(pts["L"], ratio, se_log, determined) if not d],
            "outside": list(pts.attrs.get("outside", [])),
            "how": "empirical B_crit (batch sweep) / B_crit(L) fitted to the noise scale, at each level's L, "
                   "over the levels the sweep determines to a factor 2 (95%)"}


def bcrit_scatter(fits: StudyFits) -> dict[str, Any] | None:
    """How much of the scatter of B_simple about B_crit(L) the estimates' own errors explain.

    In ln B the squared residuals about the fit average the variance of each
    window's estimation error, (se / B)^2 by the delta method, plus whatever
    varies between windows that B_crit(L) has no term for (the run, its
    learning-rate schedule, the state of the optimiser). Their difference,
    ``excess``, bounds the R^2 that error-free estimates of the same windows
    could reach: ``r2_ceiling = 1 - excess / var(ln B)``. A low R^2 with a
    ceiling near 1 asks for longer windows or more measurements; a low
    ceiling says that at this scale B_simple is not a function of L alone.
    """
    if "bcrit" not in fits.laws or "bcrit" not in fits.points:
        return None
    pts = fits.points["bcrit"]
    if "noise_scale_se" not in pts:
        return None
    B = pts["B"].to_numpy(dtype=float)
    rel_se = pts["noise_scale_se"].to_numpy(dtype=float) / B
    law = np.asarray(fits.laws.laws["bcrit"].predict(L=pts["L"].to_numpy(dtype=float)), dtype=float)
    ok = np.isfinite(rel_se) & (law > 0) & (B > 0)
    if ok.sum() < 3:
        return None
    log_b = np.log(B[ok])
    residual = float(np.mean((log_b - np.log(law[ok])) ** 2))
    total = float(np.var(log_b))
    estimate = float(np.mean(rel_se[ok] ** 2))
    excess = max(residual - estimate, 0.0)
    return {"points": int(ok.sum()), "r2": 1.0 - residual / total, "residual_var": residual,
            "estimate_var": estimate, "excess_var": excess, "explained_share": min(estimate / residual, 1.0),
            "r2_ceiling": 1.0 - excess / total,
            "how": "in ln B: mean squared residual about the fit = mean (se/B)^2 of the estimates + excess; "
                   "r2_ceiling = 1 - excess / var(ln B)"}


def select_steps(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(N, S_min) ([K] eq. 1.6): curve points after warm-up, steps converted to S_min (eq. 5.4)."""
    from lmscale.laws.forms import critical_batch, min_steps

    curves = first_epoch(frames, transformer_curves(frames))
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
    return pts, ("every Transformer curve point after warm-up (after the learning-rate peak) on fresh data, "
                 "S_min = S / (1 + B_crit(L)/B) with the fitted B_crit(L) ([K] eq. 5.4)")
