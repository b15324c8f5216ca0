"""A study grown by ``lmscale next``, round by round: forecast, interval and error against compute.

The groups that ``next --write-study`` writes are named ``next-R@N=..,D=..``
(round R and its target). :func:`study_rounds` refits the forecaster on the
runs of rounds 0..R for every R (round 0: every other group) and reports,
against the compute spent so far, the forecast at the last round's target
with its interval, and the error of that forecast on the runs the later
rounds added (measured runs it had not seen: the only error a real study
can score; none for the last round).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from lmscale.design.api import AUTO, default_forecaster
from lmscale.design.forecaster import Forecaster
from lmscale.design.space import run_cost
from lmscale.design.study_file import round_of, target_of
from lmscale.errors import LmscaleError


def study_rounds(final_points: pd.DataFrame,
                 make_forecaster: Callable[[], Forecaster] | None = None) -> pd.DataFrame:
    """One row per round: round, runs, compute, target N and D, forecast, lo, hi, width, later_error.

    Each round is fitted by a fresh forecaster (default: the one ``lmscale next``
    uses: the validated forecast where the runs allow one, else chinchilla;
    ``law`` names it), so round R shows what ``next`` reported after round R.
    """
    if final_points.empty or "group" not in final_points.columns:
        raise LmscaleError("no runs with groups: the store was not grown by lmscale next")
    frame = final_points
    if "architecture" in frame.columns:
        frame = frame[frame["architecture"].fillna("transformer") == "transformer"]
    rounds = frame["group"].map(lambda g: round_of(g) or 0)
    grown = sorted(r for r in rounds.unique() if r > 0)
    if not grown:
        raise LmscaleError("no group named next-R@...: the store was not grown by lmscale next")
    last = frame[rounds == grown[-1]]["group"].iloc[0]
    points = target_of(last)
    if not points:
        raise LmscaleError(f"group {last!r}: no target point in its name")
    tN, tD = (np.array(v, dtype=float) for v in zip(*points))
    make_forecaster = make_forecaster or (lambda: default_forecaster(AUTO, at=points))
    rows = []
    for r in [0, *grown]:
        seen = frame[rounds <= r][["N", "D", "loss"]].astype(float)
        later = frame[rounds > r][["N", "D", "loss"]].astype(float)
        forecast = make_forecaster()(seen)
        point = np.exp(forecast.point(tN, tD))
        lo, hi = forecast.interval(tN, tD)
        error = float("nan")
        if len(later):
            pred = np.exp(forecast.point(later["N"], later["D"]))
            error = float(np.mean(np.abs(pred / later["loss"].to_numpy() - 1.0)))
        rows.append({"round": r, "runs": len(seen), "compute": float(run_cost(seen["N"], seen["D"]).sum()),
                     "target_N": float(tN[0]), "target_D": float(tD[0]), "forecast": float(point[0]),
                     "lo": float(lo[0]), "hi": float(hi[0]), "width": float((hi[0] - lo[0]) / point[0]),
                     "later_error": error, "law": forecast.fit.law})
    return pd.DataFrame(rows)
