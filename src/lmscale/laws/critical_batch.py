"""The empirical critical batch size from runs at several batch sizes ([K] 5.1, McCandlish et al. 2018).

Runs of one model at batch sizes B_i reach a loss L after S_i steps and
E_i = B_i S_i tokens. The trade-off (S / S_min - 1)(E / E_min - 1) = 1
([K] eq. 5.4 and 5.5 together) is, with E = B S, the straight line

    S = S_min + E_min / B

so at each loss level a weighted least-squares line of S against 1 / B
gives S_min (intercept) and E_min (slope), and B_crit(L) = E_min / S_min,
the batch at which a run needs twice the fewest steps and twice the fewest
tokens. The residuals are relative (weights 1 / S_i^2). Standard errors
come from the regression's covariance (needs 3 or more batch sizes) by the
delta method. Pure numpy.

The relation says more than the line: the tokens E = E_min + S_min B rise
with B and the steps S fall with it. A level where a smaller batch needs
more tokens than a larger one (or a larger batch more steps) is outside
the relation, whatever line fits it: the smaller batch is limited by
something else there, typically the noise floor of a constant learning
rate late in its run, which inflates its steps and so B_crit. Such a level
keeps its numbers and gets a status that says why (:func:`trade_off_violation`);
only levels with status ``ok`` are fitted.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError


def steps_to_loss(steps, loss, level: float) -> float:
    """Steps a run needs to reach ``level``: the first crossing of its running-best loss.

    Interpolated linearly in log steps against log loss between the two curve
    points around the crossing; NaN if the run never reaches ``level``.
    """
    s = np.asarray(steps, dtype=float)
    best = np.minimum.accumulate(np.asarray(loss, dtype=float))
    below = np.flatnonzero(best <= level)
    if len(below) == 0:
        return math.nan
    i = int(below[0])
    if i == 0 or best[i - 1] == best[i]:
        return float(s[i])
    frac = (math.log(best[i - 1]) - math.log(level)) / (math.log(best[i - 1]) - math.log(best[i]))
    return float(math.exp(math.log(s[i - 1]) + frac * (math.log(s[i]) - math.log(s[i - 1]))))


def fit_min_steps(S, B) -> dict[str, float]:
    """S_min, E_min and B_crit = E_min / S_min from S = S_min + E_min / B, with standard errors.

    Raises :class:`LmscaleError` for fewer than 2 batch sizes or a line that
    gives a non-positive S_min or E_min (the runs do not show the trade-off).
    """
    S, B = np.asarray(S, dtype=float), np.asarray(B, dtype=float)
    if len(np.unique(B)) < 2:
        raise LmscaleError(f"the critical batch needs runs at 2 or more batch sizes; got {len(np.unique(B))}")
    X = np.stack([np.ones_like(B), 1.0 / B], axis=1)
    w = 1.0 / S**2
    XtW = X.T * w
    cov_unscaled = np.linalg.inv(XtW @ X)
    s_min, e_min = cov_unscaled @ (XtW @ S)
    if not (s_min > 0 and e_min > 0):
        raise LmscaleError(f"S = S_min + E_min / B gives S_min = {s_min:.3g}, E_min = {e_min:.3g}: the runs "
                           "do not show a steps/tokens trade-off at this loss")
    out = {"S_min": float(s_min), "E_min": float(e_min), "B_crit": float(e_min / s_min),
           "se": math.nan, "se_log": math.nan, "n_batches": int(len(np.unique(B)))}
    dof = len(S) - 2
    if dof > 0:
        resid = S - X @ np.array([s_min, e_min])
        cov = cov_unscaled * float(np.sum(w * resid**2)) / dof
        # d log B_crit = d log E_min - d log S_min
        g = np.array([-1.0 / s_min, 1.0 / e_min])
        se_log = math.sqrt(max(float(g @ cov @ g), 0.0))
        out.update(se_log=se_log, se=out["B_crit"] * se_log)
    return out


def trade_off_violation(S, B) -> str | None:
    """Why steps ``S`` at batch sizes ``B`` (one loss level) contradict S = S_min + E_min / B, or None:
    the tokens E = B S must rise with B and the steps S must fall with it."""
    S, B = np.asarray(S, dtype=float), np.asarray(B, dtype=float)
    order = np.argsort(B)
    S, B = S[order], B[order]
    E = B * S
    for i in range(len(B) - 1):
        if B[i + 1] <= B[i]:  # the same batch twice: no order to contradict
            continue
        if E[i] > E[i + 1]:
            return (f"outside the relation: B = {B[i]:.0f} needs more tokens than B = {B[i + 1]:.0f} "
                    f"({E[i]:.3g} > {E[i + 1]:.3g}; E = E_min + S_min B rises with B)")
        if S[i + 1] > S[i]:
            return (f"outside the relation: B = {B[i + 1]:.0f} needs more steps than B = {B[i]:.0f} "
                    f"({S[i + 1]:.3g} > {S[i]:.3g}; S = S_min + E_min / B falls with B)")
    return None


def critical_batch_levels(curves: pd.DataFrame, n_levels: int = 6) -> pd.DataFrame:
    """B_crit at several loss levels from the learning curves of one model at several batch sizes.

    ``curves``: ``step``, ``loss``, ``batch_tokens``, ``run_id``, after each
    run's warm-up (steps still counted from the start). The levels are
    log-spaced between the loss every run reaches (a little above the
    highest best loss) and the lowest first loss after warm-up, so each
    level is reached past every run's warm-up. For the steps to compare,
    the runs should share their learning-rate schedule in steps (a constant
    rate after the same warm-up). Columns: L, B (= B_crit), se, se_log,
    S_min, E_min, n_batches, status (``ok``, or why the level is not fitted:
    no trade-off, or one outside the relation, :func:`trade_off_violation`).
    """
    need = [c for c in ("step", "loss", "batch_tokens", "run_id") if c not in curves]
    if need:
        raise LmscaleError(f"critical batch: needs column(s) {', '.join(need)}")
    runs = [g.sort_values("step") for _, g in curves.groupby("run_id")]
    if len({int(g["batch_tokens"].iloc[0]) for g in runs}) < 2:
        raise LmscaleError("critical batch: needs runs at 2 or more batch sizes")
    floor = max(float(g["loss"].min()) for g in runs) * 1.005
    ceiling = min(float(g["loss"].iloc[0]) for g in runs)
    if not ceiling > floor:
        raise LmscaleError(f"critical batch: the runs share no range of loss after warm-up (every run reaches "
                           f"{floor:.4g}, but one starts below {ceiling:.4g})")
    rows = []
    for level in np.geomspace(ceiling, floor, n_levels + 1)[1:]:
        S = np.array([steps_to_loss(g["step"], g["loss"], level) for g in runs])
        B = np.array([float(g["batch_tokens"].iloc[0]) for g in runs])
        ok = np.isfinite(S)
        row = {"L": float(level), "B": math.nan, "se": math.nan, "se_log": math.nan, "S_min": math.nan,
               "E_min": math.nan, "n_batches": int(len(np.unique(B[ok]))), "status": "ok"}
        try:
            row.update(fit_min_steps(S[ok], B[ok]))
            row["B"] = row.pop("B_crit")
            row["status"] = trade_off_violation(S[ok], B[ok]) or "ok"
        except LmscaleError as exc:
            row["status"] = str(exc)
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["critical_batch_levels", "fit_min_steps", "steps_to_loss", "trade_off_violation"]
