"""Tables in, proposals out: what ``lmscale next`` computes.

:func:`runs_frame` reads the runs a forecast starts from (a CSV, Parquet or
results store; only Transformer runs of a store, the law's family);
:func:`default_space` lays the candidate grid between the smallest run and
the largest run the budget affords; :func:`next_runs` makes the forecaster,
picks the target and returns the :class:`~lmscale.design.grow.Proposal`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from lmscale.design.forecaster import (
    AutoForecaster,
    BootstrapForecaster,
    Forecast,
    Forecaster,
    ValidatedForecaster,
    check_frame,
)
from lmscale.design.grow import Proposal, Target, fresh, propose
from lmscale.design.space import DesignSpace, compute_optimal, run_cost
from lmscale.errors import LmscaleError

#: ``--law`` value that selects the validated forecast (``ls.forecast``) instead of one law.
VALIDATED = "forecast"
#: ``--law`` value (``next``'s default): the validated forecast where the runs allow one, else chinchilla.
AUTO = "auto"


def default_forecaster(law: str = "chinchilla", n_boot: int = 64, level: float = 0.8, seed: int = 0,
                       at: Sequence[tuple[float, float]] | None = None, at_compute: float | None = None,
                       by: str | None = None) -> Forecaster:
    """The forecaster ``next`` and ``simulate`` use: ``law`` with bootstrap draws.

    ``law = "forecast"`` uses the validated forecast of :func:`lmscale.laws.forecast.forecast`
    (the law chosen by validation at scale, its draws widened by the calibrated
    extrapolation error); it needs runs at 4 or more model sizes. ``law =
    "auto"`` uses it where the runs allow, else chinchilla
    (:class:`~lmscale.design.forecaster.AutoForecaster`, whose ``choice``
    says which). ``at``: the (N, D) points the forecast is for, or
    ``at_compute``: the compute budget (FLOPs) whose compute-optimal point
    it is for; the validated forecast's cuts follow them, as ``lmscale
    predict``'s do, unless ``by`` (``"N"`` or ``"C"``) sets the axis.
    """
    if law in (VALIDATED, AUTO):
        from lmscale.laws.forecast import forecast

        points = pd.DataFrame(list(at), columns=["N", "D"]) if at else None
        if points is None and at_compute is not None:
            points = pd.DataFrame({"C": [float(at_compute)]})
        validated = ValidatedForecaster(make=forecast, n_boot=n_boot, level=level, seed=seed, at=points, by=by)
        if law == VALIDATED:
            return validated
        return AutoForecaster(validated, BootstrapForecaster(law="chinchilla", n_boot=n_boot, level=level, seed=seed))
    return BootstrapForecaster(law=law, n_boot=n_boot, level=level, seed=seed)


def runs_frame(data: pd.DataFrame, columns: Mapping[str, str] | None = None, where: str = "runs",
               store: bool = False, every_run: bool = False) -> pd.DataFrame:
    """The N, D, loss table of ``data`` (names mapped, D = C / (6 N) derived); a store's
    non-Transformer runs are left out and counted in ``frame.attrs["notes"]``.

    ``store``: ``data`` is a results store's final points: D is the tokens
    trained, and its batch-size sweep and runs that repeat their data are
    left out as a forecast from a store leaves them
    (:func:`lmscale.laws.forecast.store_runs`), with a note; ``every_run``
    keeps them.
    """
    from lmscale.laws.forecast import store_runs
    from lmscale.laws.io import derive_columns, rename_columns

    notes = list(data.attrs.get("notes", []))  # e.g. a table of several settings (the CLI's runs_table)
    frame = rename_columns(data, columns, where)
    frame, derived = derive_columns(frame, ("N", "D", "loss"))
    notes += derived
    if "architecture" in frame.columns:
        other = frame["architecture"].notna() & (frame["architecture"] != "transformer")
        if other.any():
            notes.append(f"left out {int(other.sum())} non-Transformer run(s) "
                         f"({', '.join(sorted(frame.loc[other, 'architecture'].astype(str).unique()))})")
            frame = frame[~other]
    if store:
        frame = store_runs(frame, every_run=every_run)
        notes += frame.attrs.get("notes", [])
    check_frame(frame, where)
    out = frame.reset_index(drop=True)
    out.attrs["notes"] = notes
    return out


def pool_frame(data: pd.DataFrame, columns: Mapping[str, str] | None = None, where: str = "pool") -> pd.DataFrame:
    """Existing runs to choose from: N and D (or C and N) per row, positive; other columns kept."""
    from lmscale.laws.io import derive_columns, rename_columns

    frame, _ = derive_columns(rename_columns(data, columns, where), ("N", "D"))
    if not {"N", "D"} <= set(frame.columns):
        raise LmscaleError(f"{where}: the pool needs columns N and D (or C and N); columns: "
                           f"{', '.join(map(str, frame.columns))}")
    values = frame[["N", "D"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = ~np.all(np.isfinite(values) & (values > 0), axis=1)
    if bad.any():
        raise LmscaleError(f"{where}: row {int(np.flatnonzero(bad)[0]) + 1} has a missing or non-positive N or D")
    return frame.reset_index(drop=True)


def default_space(frame: pd.DataFrame, budget: float, max_run: float | None = None,
                  sizes: tuple[float, float] | None = None, ratios: tuple[float, float] = (2.0, 200.0),
                  grid: tuple[int, int] = (14, 9), max_tokens: float | None = None) -> DesignSpace:
    """Candidates from the smallest run's N up to the largest N one run within the budget affords,
    with at least the smallest run's tokens and at most ``max_tokens`` (the data's training tokens)."""
    c_max = float(budget if max_run is None else min(budget, max_run))
    n_min = float(frame["N"].min()) if sizes is None else float(sizes[0])
    n_max = float(np.sqrt(c_max / (6.0 * ratios[0]))) if sizes is None else float(sizes[1])
    if n_max <= n_min:
        cheapest = 6.0 * n_min * n_min * ratios[0]
        raise LmscaleError(f"budget = {budget:.3g} FLOPs is below the cheapest possible run: N = {n_min:.3g} at "
                           f"{ratios[0]:g} tokens per parameter costs {cheapest:.3g} FLOPs (C = 6 N D)")
    return DesignSpace(n_min=n_min, n_max=n_max, ratio_min=ratios[0], ratio_max=ratios[1], c_max=c_max,
                       n_sizes=grid[0], n_ratios=grid[1], d_min=float(frame["D"].min()),
                       d_max=float("inf") if max_tokens is None else float(max_tokens))


def resolve_target(forecast: Forecast, target: Sequence[tuple[float, float]] | None = None,
                   target_compute: float | None = None) -> Target:
    """The target point(s): given, or the fit's compute-optimal point at ``target_compute``."""
    if (target is None) == (target_compute is None):
        raise LmscaleError("give the target as --target N,D or --target-compute C (one of them)")
    if target is not None:
        N, D = zip(*target)
        return Target(np.array(N, dtype=float), np.array(D, dtype=float), how="given")
    if not (isinstance(target_compute, int | float) and target_compute > 0):
        raise LmscaleError(f"--target-compute {target_compute!r}: expected a positive number of FLOPs")
    N, D = compute_optimal(forecast.form, forecast.fit.params, float(target_compute))
    return Target(N, D, how=f"the compute-optimal point of the fitted {forecast.fit.law} law at "
                            f"C = {target_compute:.3g} FLOPs")


def next_runs(
    frame: pd.DataFrame, budget: float, target: Sequence[tuple[float, float]] | None = None,
    target_compute: float | None = None, k: int | None = None, pool: pd.DataFrame | None = None,
    space: DesignSpace | None = None, forecaster: Forecaster | None = None,
    trainable: Callable[[float], float | None] | None = None,
    batch_tokens: int | None = None,
) -> Proposal:
    """The runs to buy with ``budget`` FLOPs for the forecast at the target.

    Candidates: the rows of ``pool`` (runs that exist), or the grid of
    ``space`` (default :func:`default_space`); ``trainable(N)`` gives the N of
    the model the study would build for a target N (None: none), so every
    candidate's cost is that of a model that can be trained; ``batch_tokens``
    (the study's batch) rounds each D down to whole batches, as training does,
    so a candidate is the run that would be trained and one already trained is
    recognised as such.
    """
    if not (isinstance(budget, int | float) and budget > 0):
        raise LmscaleError(f"--budget {budget!r}: expected a positive number of FLOPs")
    check_frame(frame)
    forecaster = forecaster or default_forecaster(AUTO, at=target, at_compute=target_compute)
    forecast = forecaster(frame)
    goal = resolve_target(forecast, target, target_compute)
    if pool is not None:
        candidates = pool.reset_index(drop=True)
        if "loss" in candidates.columns:  # a pool row that is one of the runs is not a candidate
            candidates = fresh(candidates, frame, by=("N", "D", "loss"))
    else:
        space = space or default_space(frame, budget)
        candidates = fresh(space.candidates(), frame)
        if trainable is not None:  # snap each size to a model the study can build, drop the others
            built = np.array([trainable(n) or np.nan for n in candidates["N"]], dtype=float)
            candidates = candidates.assign(N=built)[np.isfinite(built)]
            candidates = fresh(candidates.drop_duplicates(["N", "D"]), frame)
        if batch_tokens:
            whole = np.maximum(np.floor(candidates["D"].to_numpy(float) / batch_tokens), 1.0) * batch_tokens
            candidates = fresh(candidates.assign(D=whole).drop_duplicates(["N", "D"]), frame)
    candidates = candidates.assign(C=run_cost(candidates["N"], candidates["D"]))
    prop = propose(frame, goal, candidates, float(budget), forecaster, k=k, forecast=forecast)
    where = "the pool's runs not in RUNS" if pool is not None else (
        f"a {space.n_sizes} x {space.n_ratios} grid of N in [{space.n_min:.3g}, {space.n_max:.3g}] x D/N in "
        f"[{space.ratio_min:g}, {space.ratio_max:g}], D >= {space.d_min:.3g}"
        + (f" and <= {space.d_max:.3g} (the data's training tokens)" if np.isfinite(space.d_max) else "")
        + (", sizes the study can build" if trainable is not None else ""))
    prop.notes.append(f"candidates: {len(candidates)} runs: {where}")
    if pool is not None:  # carry the pool's own columns (run names, measured loss) beside each pick
        extra = [c for c in candidates.columns if c not in prop.runs.columns]
        picked = candidates.iloc[prop.runs["candidate"].to_numpy()][extra].reset_index(drop=True)
        prop.runs = pd.concat([prop.runs, picked], axis=1)
    return prop
