"""Which points a law is fitted to: [K]'s selection rules, explicit and overridable.

Each rule takes a DataFrame and returns the rows to fit, with a record of what
it did appended to ``frame.attrs["selection"]`` (``lmscale.laws.fit`` copies
that list into ``FitResult.notes["selection"]``). Rules compose: apply one to
the output of another.

Column conventions (as the results store gives them):

* runs, one row per run: ``run_id, N, D, C, loss, status, architecture,
  batch_tokens, group, rule``;
* learning curves, one row per evaluation: ``run_id, N, step, tokens`` (= D so
  far; ``D`` is accepted too), ``C`` (6 N D), ``loss`` (test loss),
  ``batch_tokens``, ``noise_scale`` (B_simple, tokens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.forms import critical_batch, min_compute, overfitting_data_rule

#: [K] table 5 / eq. 5.3 (science.md section 4): B_crit(L) = B_* / L^(1/alpha_B).
KAPLAN_BCRIT = {"B_star": 2e8, "alpha_B": 0.21}


def record(frame: pd.DataFrame, rule: str, **details: Any) -> pd.DataFrame:
    """Append ``{"rule": rule, **details}`` to the frame's selection record (in place)."""
    history = list(frame.attrs.get("selection", []) or [])
    history.append({"rule": rule, **details})
    frame.attrs["selection"] = history
    return frame


def _need(frame: pd.DataFrame, columns: Sequence[str], rule: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LmscaleError(
            f"selection rule {rule}: needs column(s) {', '.join(missing)}; columns: {', '.join(map(str, frame.columns))}"
        )


def _tokens(frame: pd.DataFrame) -> pd.Series:
    return frame["D"] if "D" in frame.columns else frame["tokens"]


def final_points(frame: pd.DataFrame) -> pd.DataFrame:
    """The last point of each run (largest ``step``, else ``tokens``/``D``); runs pass through."""
    if "run_id" not in frame.columns or not frame["run_id"].duplicated().any():
        return frame
    key = "step" if "step" in frame.columns else ("tokens" if "tokens" in frame.columns else "D")
    _need(frame, [key], "final_points")
    last = frame.loc[frame.groupby("run_id", sort=False)[key].idxmax()]
    return last.copy()


def converged_runs(
    frame: pd.DataFrame, statuses: Sequence[str] = ("early_stopped",), coefficient: float = 5e3,
    exponent: float = 0.74, margin: float = 1.0,
) -> pd.DataFrame:
    """Points for L(N) ([K] eq. 1.1): runs trained close to convergence.

    A run qualifies if its ``status`` is in ``statuses`` (early stopped), or if
    its final point has D >= margin * coefficient * N^exponent, the data that
    keeps overfitting below ~2% ([K] eq. 4.4: D >= 5e3 N^0.74). Learning
    curves are reduced to each run's final point first.
    """
    rule = "converged_runs"
    runs = final_points(frame)
    _need(runs, ["N"], rule)
    if "D" not in runs.columns and "tokens" not in runs.columns:
        raise LmscaleError(f"selection rule {rule}: needs column D (or tokens)")
    threshold = margin * overfitting_data_rule(runs["N"].to_numpy(dtype=float), coefficient, exponent)
    by_data = _tokens(runs).to_numpy(dtype=float) >= threshold
    by_status = runs["status"].isin(list(statuses)).to_numpy() if "status" in runs.columns else np.zeros(len(runs), bool)
    keep = by_data | by_status
    out = runs.loc[keep].copy()
    out.attrs = dict(frame.attrs)
    return record(
        out, rule, criterion=f"status in {list(statuses)} or D >= {margin:g} * {coefficient:g} N^{exponent:g} "
        "([K] eq. 4.4)", kept=int(keep.sum()), dropped=int((~keep).sum()),
        kept_by_status=int(by_status.sum()), kept_by_data=int(by_data.sum()),
    )


def largest_model_per_data(frame: pd.DataFrame, rtol: float = 0.05) -> pd.DataFrame:
    """Points for L(D) ([K] eq. 1.2): at each data size D, the run with the largest N.

    Data sizes within a relative ``rtol`` of each other count as one.
    """
    rule = "largest_model_per_data"
    runs = final_points(frame)
    _need(runs, ["N"], rule)
    d = _tokens(runs).to_numpy(dtype=float)
    order = np.argsort(d, kind="stable")
    cluster = np.zeros(len(d), dtype=int)
    log_d = np.log(d[order])
    cluster[order] = np.concatenate([[0], np.cumsum(np.diff(log_d) > np.log1p(rtol))]) if len(d) else []
    runs = runs.assign(_cluster=cluster)
    keep_index = runs.groupby("_cluster", sort=True)["N"].idxmax()
    out = runs.loc[keep_index].drop(columns="_cluster")
    out.attrs = dict(frame.attrs)
    return record(out, rule, criterion=f"largest N at each D (D within {rtol:g} relative = same D)",
                  kept=int(len(out)), dropped=int(len(runs) - len(out)), data_sizes=int(cluster.max() + 1 if len(d) else 0))


def cmin_envelope(
    frame: pd.DataFrame, bcrit: Mapping[str, float] | str | None = None, envelope: bool = True,
) -> pd.DataFrame:
    """Points for L(C_min) ([K] eq. 1.3): the lower envelope of all learning curves in C_min.

    Every curve point's compute becomes C_min = C / (1 + B / B_crit(L))
    ([K] eq. 5.5) with B the run's ``batch_tokens`` and B_crit from ``bcrit``:
    ``"noise_scale"`` (the measured B_simple of the point, [K] section 5.1),
    a dict of ``bcrit`` law parameters, ``"kaplan"`` ([K]'s B_crit(L) =
    2e8 L^(-1/0.21)), or None (the noise scale where the column has values,
    [K]'s law elsewhere). The envelope keeps the points whose loss is below
    that of every point with a smaller C_min. Adds a ``C_min`` column
    (``envelope=False``: every point, converted, none dropped).
    """
    rule = "cmin_envelope"
    _need(frame, ["loss", "batch_tokens"], rule)
    pts = frame.copy()
    if "C" not in pts.columns:
        _need(pts, ["N"], rule)
        pts["C"] = 6.0 * pts["N"] * _tokens(pts)
    loss = pts["loss"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        law = np.asarray(critical_batch(KAPLAN_BCRIT if not isinstance(bcrit, Mapping) else bcrit,
                                        np.where(loss > 0, loss, np.nan)), dtype=float)
    if bcrit == "noise_scale" or bcrit is None:
        measured = pts["noise_scale"].to_numpy(dtype=float) if "noise_scale" in pts.columns else np.full(len(pts), np.nan)
        if bcrit == "noise_scale" and not np.isfinite(measured).any():
            raise LmscaleError(f"selection rule {rule}: bcrit='noise_scale' but column noise_scale has no values")
        use = np.isfinite(measured) & (measured > 0)
        b_crit = np.where(use, measured, law)
        source = f"noise_scale column for {int(use.sum())} points, [K] B_crit(L) for {int((~use).sum())}"
    elif bcrit == "kaplan" or isinstance(bcrit, Mapping):
        b_crit = law
        if bcrit == "kaplan":
            source = "[K] B_crit(L) = 2e8 L^(-1/0.21)"
        else:
            source = "B_crit(L) with " + ", ".join(f"{k} = {v:.4g}" for k, v in dict(bcrit).items())
    else:
        raise LmscaleError(f"selection rule {rule}: bcrit = {bcrit!r}: expected 'noise_scale', 'kaplan', "
                           "a dict of bcrit parameters, or None")
    pts["C_min"] = min_compute(pts["C"].to_numpy(dtype=float), pts["batch_tokens"].to_numpy(dtype=float), b_crit)
    ok = np.isfinite(pts["C_min"].to_numpy()) & np.isfinite(loss) & (loss > 0)
    if not envelope:
        out = pts.loc[ok].copy()
        out.attrs = dict(frame.attrs)
        return record(out, rule, criterion="C_min = C / (1 + B / B_crit(L)) ([K] eq. 5.5)", b_crit=source,
                      kept=int(ok.sum()), dropped=int((~ok).sum()))
    pts = pts.loc[ok].sort_values(["C_min", "loss"], kind="stable")
    running = np.minimum.accumulate(pts["loss"].to_numpy())
    prev = np.concatenate([[np.inf], running[:-1]])
    out = pts.loc[pts["loss"].to_numpy() < prev].copy()
    out.attrs = dict(frame.attrs)
    return record(out, rule, criterion="C_min = C / (1 + B / B_crit(L)) ([K] eq. 5.5), then the points "
                  "below every point of smaller C_min", b_crit=source, kept=int(len(out)),
                  dropped=int(len(frame) - len(out)))
