"""Pool mode: replay a design rule on runs that exist, revealing their measured losses one at a time.

How a design rule is checked on real data: start from the runs of the
``start_sizes`` smallest model sizes, hold out every run of the largest
size (the target: never fitted, only scored), and add the other runs one
at a time, in the order the rule chooses, refitting after each:

* ``next``: the run with the largest expected variance reduction at the
  held-out points per FLOP (:mod:`lmscale.design.criterion`, one pick per step);
* ``smallest``: the cheapest run first (how a ladder is usually grown).

After every step the table records the compute spent (every run used so
far, C = 6 N D or the table's own C), the forecast error on the held-out
runs (mean |predicted / measured - 1|) and the interval width there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lmscale.design.forecaster import Forecaster, check_frame
from lmscale.design.grow import Target, propose
from lmscale.errors import LmscaleError

ORDERS = ("next", "smallest")


@dataclass
class Replay:
    """The steps of every order and the reference: every run but the largest size fitted at once.

    Attributes:
        steps: one row per (order, step): order, step, run added, compute, error, width.
        reference_error: the error of the fit on the start and the whole pool.
        reference_compute: the compute of the start and the whole pool.
        start, pool, held_out: the rows of each part.
    """

    steps: pd.DataFrame
    reference_error: float
    reference_compute: float
    start: pd.DataFrame
    pool: pd.DataFrame
    held_out: pd.DataFrame

    def first_reaching(self, order: str, error: float | None = None) -> dict[str, Any] | None:
        """The first step of ``order`` whose error is at most ``error`` (default: the reference's)."""
        error = self.reference_error if error is None else error
        rows = self.steps[(self.steps["order"] == order) & (self.steps["error"] <= error * (1 + 1e-9))]
        if rows.empty:
            return None
        row = rows.iloc[0].to_dict()
        row["fraction_of_compute"] = row["compute"] / self.reference_compute
        return row


def split_ladder(frame: pd.DataFrame, start_sizes: int = 3, per_size: int | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(start, pool, held out): the runs of the ``start_sizes`` smallest model sizes (only the
    ``per_size`` cheapest of each, if given), the other runs below the largest size, the largest size."""
    sizes = np.sort(frame["N"].unique())
    if len(sizes) < start_sizes + 2:
        raise LmscaleError(f"pool: {len(sizes)} distinct model size(s); starting from the {start_sizes} smallest "
                           f"and holding out the largest needs at least {start_sizes + 2}")
    small = frame["N"] <= sizes[start_sizes - 1]
    if per_size is not None:
        if per_size < 1:
            raise LmscaleError(f"pool: per_size = {per_size}: expected at least 1 run per size")
        rank = frame.groupby("N")["C"].rank(method="first")
        small &= rank <= per_size
    start = frame[small]
    held = frame[frame["N"] == sizes[-1]]
    pool = frame[~small & (frame["N"] < sizes[-1])]
    return start.reset_index(drop=True), pool.reset_index(drop=True), held.reset_index(drop=True)


def replay(frame: pd.DataFrame, forecaster_factory: Callable[[], Forecaster], start_sizes: int = 3,
           orders: tuple[str, ...] = ORDERS, per_size: int | None = None) -> Replay:
    """Replay each order over the pool (see the module docstring)."""
    unknown = set(orders) - set(ORDERS)
    if unknown:
        raise LmscaleError(f"pool: unknown order(s) {', '.join(sorted(unknown))}; known: {', '.join(ORDERS)}")
    check_frame(frame, "pool")
    frame = frame.copy()
    if "C" not in frame.columns:
        frame["C"] = 6.0 * frame["N"] * frame["D"]
    start, pool, held = split_ladder(frame, start_sizes, per_size)
    check_frame(start, "pool: the start")
    target = Target(held["N"].to_numpy(float), held["D"].to_numpy(float), how="the runs of the largest size")
    truth = held["loss"].to_numpy(float)
    rows = []
    for order in orders:
        rows += _replay_one(order, start, pool, target, truth, forecaster_factory())
    reference = forecaster_factory()(pd.concat([start, pool], ignore_index=True))
    ref_error = _error(reference, target, truth)
    return Replay(steps=pd.DataFrame(rows), reference_error=ref_error,
                  reference_compute=float(start["C"].sum() + pool["C"].sum()), start=start, pool=pool, held_out=held)


def _replay_one(order: str, start: pd.DataFrame, pool: pd.DataFrame, target: Target, truth: np.ndarray,
                forecaster: Forecaster) -> list[dict[str, Any]]:
    data, left = start.copy(), pool.copy()
    forecast = forecaster(data)
    rows = [_row(order, 0, None, data, forecast, target, truth)]
    step = 0
    while len(left):
        step += 1
        if order == "smallest":
            pick = int(np.argmin(left["C"].to_numpy(float)))
        else:
            prop = propose(data, target, left, float("inf"), forecaster, k=1, forecast=forecast, rule="per_flop")
            pick = int(prop.runs["candidate"].iloc[0]) if len(prop.runs) else int(np.argmin(left["C"].to_numpy()))
        added = left.iloc[[pick]]
        data = pd.concat([data, added], ignore_index=True)
        left = left.drop(index=left.index[pick]).reset_index(drop=True)
        forecast = forecaster(data)
        rows.append(_row(order, step, added.iloc[0], data, forecast, target, truth))
    return rows


def _error(forecast: Any, target: Target, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(np.exp(forecast.point(target.N, target.D)) / truth - 1.0)))


def _row(order: str, step: int, added: pd.Series | None, data: pd.DataFrame, forecast: Any, target: Target,
         truth: np.ndarray) -> dict[str, Any]:
    label = "start"
    if added is not None:
        label = str(added["run"]) if "run" in added.index else f"N={added['N']:.3g} D={added['D']:.3g}"
    return {"order": order, "step": step, "added": label, "runs": len(data), "compute": float(data["C"].sum()),
            "error": _error(forecast, target, truth),
            "width": float(np.mean(forecast.width(target.N, target.D)))}
