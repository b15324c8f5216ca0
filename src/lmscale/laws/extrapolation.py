"""Extrapolation: fit the smaller runs, predict the largest; choose a law by it.

:func:`extrapolation_check` fits a law without the largest runs (by compute)
and reports its relative error on them; :func:`select_law` scores every
candidate law and fitting variant that way (``lmscale fit --select
extrapolation``) and refits the winner on all the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.estimate import fit_points
from lmscale.laws.fitting import FitOptions, minimise
from lmscale.laws.forms import FORMS, LawForm, get_form
from lmscale.laws.io import Points, derive_columns, prepare_points, rename_columns

Array = np.ndarray


def split_largest(points: Points, holdout: float) -> tuple[Array, Array]:
    """Boolean masks (train, held_out): the largest runs by ``points.size``.

    ``holdout`` >= 1 is a count of runs (rows, when no run ids), < 1 a fraction.
    """
    labels = points.groups if points.groups is not None else np.arange(len(points))
    uniq, inverse = np.unique(labels, return_inverse=True)
    run_size = np.zeros(len(uniq))
    np.maximum.at(run_size, inverse, points.size)
    m = len(uniq)
    if holdout <= 0:
        raise LmscaleError(f"holdout = {holdout!r}: expected a count >= 1 or a fraction in (0, 1)")
    k = int(holdout) if holdout >= 1 else int(np.ceil(holdout * m))
    if not 1 <= k < m:
        raise LmscaleError(f"holdout = {holdout!r}: leaves {m - k} of {m} runs to fit; hold out fewer")
    held_runs = np.argsort(run_size, kind="stable")[m - k:]
    held = np.isin(inverse, held_runs)
    return ~held, held


def extrapolation_check(form: LawForm, points: Points, options: FitOptions, holdout: float,
                        drop_smallest: float = 0.0) -> dict[str, Any]:
    """Fit on all but the largest runs, report the relative error on those held out.

    ``drop_smallest`` (a fraction of the remaining runs) also leaves out the
    smallest training runs, a variant used by model selection.
    """
    train, held = split_largest(points, holdout)
    if drop_smallest:
        # keep the largest (1 - drop_smallest) of the training runs
        _, big = split_largest(points.subset(train), 1.0 - drop_smallest)
        kept = np.flatnonzero(train)[big]
        train = np.zeros(len(points), dtype=bool)
        train[kept] = True
    n_params = len(form.params)
    if train.sum() < n_params:
        raise LmscaleError(f"law {form.name}: {int(train.sum())} rows left to fit after holding out the "
                           f"largest runs; it has {n_params} parameters")
    sub = points.subset(train)
    best = minimise(form, sub.X, np.log(sub.y), options)
    pred = np.exp(form.log_predict(best.theta, {k: v[held] for k, v in points.X.items()}))
    rel = pred / points.y[held] - 1.0
    return {
        "held_out_rows": int(held.sum()), "train_rows": int(train.sum()), "by": points.size_by,
        "threshold": float(points.size[held].min()), "mean_abs_rel_error": float(np.mean(np.abs(rel))),
        "max_abs_rel_error": float(np.max(np.abs(rel))), "mean_rel_error": float(np.mean(rel)),
        "params": form.from_theta(best.theta),
    }



#: Variants tried for every candidate law by :func:`select_law`.
DEFAULT_DELTAS = (1e-3, 1e-2)
DEFAULT_DROP_SMALLEST = (0.0, 0.25)


def supported_laws(frame: pd.DataFrame, columns: Mapping[str, str] | None = None) -> list[str]:
    """Fittable laws whose columns the frame has (directly or derivable)."""
    frame = rename_columns(frame, columns)
    out = []
    for name, form in FORMS.items():
        if not form.fittable:
            continue
        derived, _ = derive_columns(frame, (*form.inputs, form.output))
        if all(c in derived.columns for c in (*form.inputs, form.output)):
            out.append(name)
    return out


def select_law(
    frame: pd.DataFrame, candidates: Sequence[str] | None = None, holdout: float = 0.2,
    columns: Mapping[str, str] | None = None, drop_highest_loss: int = 0, base: Any = None,
    deltas: Sequence[float] = DEFAULT_DELTAS, drop_smallest: Sequence[float] = DEFAULT_DROP_SMALLEST,
    bootstrap: int = 0, seed: int = 0, ci_level: float = 0.95, n_jobs: int | None = None,
    progress: bool = False,
):
    """Choose the law (and variant) whose fit on the smaller runs best predicts the largest.

    Candidates: ``candidates`` or every law the columns support. Variants: each
    Huber delta in ``deltas`` times each fraction in ``drop_smallest`` of the
    smallest training runs left out. Score: mean |predicted / actual - 1| on the
    ``holdout`` largest runs by compute (see ``fitting.split_largest``). The
    chosen variant is refitted on all the data (less its smallest runs, if that
    variant won) and returned; ``stats["selection"]`` lists every score.
    """
    base = base or FitOptions()
    names = list(candidates) if candidates else supported_laws(frame, columns)
    if not names:
        raise LmscaleError("select: no law fits these columns; columns: " + ", ".join(map(str, frame.columns)))
    table, skipped = [], {}
    for name in names:
        form = get_form(name)
        try:
            points = prepare_points(frame, form, columns, drop_highest_loss)
        except LmscaleError as exc:
            skipped[name] = str(exc)
            continue
        for delta in deltas:
            for drop in drop_smallest:
                options = replace(base, huber_delta=float(delta))
                try:
                    check = extrapolation_check(form, points, options, holdout, drop_smallest=drop)
                except LmscaleError as exc:
                    skipped[f"{name} delta={delta:g} drop_smallest={drop:g}"] = str(exc)
                    continue
                table.append({"law": name, "huber_delta": float(delta), "drop_smallest": float(drop),
                              "error": check["mean_abs_rel_error"], "max_error": check["max_abs_rel_error"],
                              "held_out_rows": check["held_out_rows"], "train_rows": check["train_rows"]})
    if not table:
        raise LmscaleError("select: no candidate could be scored: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    best = min(table, key=lambda row: row["error"])
    form = get_form(best["law"])
    points = prepare_points(frame, form, columns, drop_highest_loss)
    if best["drop_smallest"]:
        _, keep = split_largest(points, 1.0 - best["drop_smallest"])
        points = points.subset(keep)
        points.notes["dropped_smallest"] = {
            "fraction": best["drop_smallest"], "rows": int((~keep).sum()), "by": points.size_by,
            "reason": "the chosen variant leaves out the smallest runs"}
    options = replace(base, huber_delta=best["huber_delta"])
    result = fit_points(form, points, options, bootstrap, seed, ci_level, n_jobs, progress)
    result.stats["selection"] = {
        "criterion": "mean |predicted / actual - 1| on the largest runs held out, fit on the rest",
        "holdout": holdout, "chosen": best, "error": best["error"],
        "candidates": sorted(table, key=lambda row: row["error"]), "skipped": skipped,
    }
    return result
