"""Proposals and growth: the next runs to buy for a target, and a study grown round by round.

:func:`propose` asks a forecaster about the runs of a study, scores every
candidate run by the expected narrowing of the forecast interval at the
target per FLOP (:mod:`lmscale.design.criterion`) and returns the runs to
buy within a budget. :func:`grow` repeats it: ``rounds`` times, propose,
observe the proposed runs (train them, or draw them from a known law),
refit; it records the forecast at the target after every round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmscale.design.criterion import Selection, greedy_select
from lmscale.design.forecaster import Forecast, Forecaster, check_frame
from lmscale.design.space import run_cost
from lmscale.errors import LmscaleError

Array = np.ndarray


@dataclass
class Target:
    """The point(s) the forecast is for.

    Attributes:
        N, D: target model size(s) and token count(s) (arrays of equal length).
        how: how the target was chosen, in words.
    """

    N: Array
    D: Array
    how: str = "given"

    def __post_init__(self) -> None:
        self.N = np.atleast_1d(np.asarray(self.N, dtype=float))
        self.D = np.atleast_1d(np.asarray(self.D, dtype=float))
        if self.N.shape != self.D.shape or not np.all((self.N > 0) & (self.D > 0)):
            raise LmscaleError(f"target: expected positive N and D of equal length (got N = {self.N}, D = {self.D})")

    @property
    def C(self) -> Array:
        return run_cost(self.N, self.D)


@dataclass
class Proposal:
    """What :func:`propose` returns.

    Attributes:
        runs: the proposed runs in the order bought: N, D, C, gain (variance
            removed), narrowing (cumulative expected narrowing of the interval).
        selection: the criterion's record.
        forecast: the forecast the proposal was computed from.
        target: the target point(s).
        width: relative width of the current interval at the target (per target point).
        interval: (lo, hi) of the current interval at the target (loss).
        notes: where the candidates came from, in words.
    """

    runs: pd.DataFrame
    selection: Selection
    forecast: Forecast
    target: Target
    width: Array
    interval: tuple[Array, Array]
    notes: list[str] = field(default_factory=list)

    @property
    def narrowing(self) -> float:
        """Expected narrowing of the interval after all proposed runs."""
        return float(self.runs["narrowing"].iloc[-1]) if len(self.runs) else 0.0


def check_target(frame: pd.DataFrame, target: Target) -> None:
    """The target must lie beyond the runs: no run has both at least its N and at least its D."""
    N, D = frame["N"].to_numpy(float), frame["D"].to_numpy(float)
    for n_t, d_t in zip(target.N, target.D):
        inside = (N >= n_t * (1 - 1e-9)) & (D >= d_t * (1 - 1e-9))
        if inside.any():
            i = int(np.flatnonzero(inside)[0])
            raise LmscaleError(
                f"target N = {n_t:.3g}, D = {d_t:.3g} lies inside the fitted data (the run N = {N[i]:.3g}, "
                f"D = {D[i]:.3g} is at least as large in both): a design buys certainty about an extrapolation; "
                "give a target beyond the runs (a larger N or D)")


def propose(
    frame: pd.DataFrame, target: Target, candidates: pd.DataFrame, budget: float,
    forecaster: Forecaster, k: int | None = None, forecast: Forecast | None = None, rule: str = "auto",
) -> Proposal:
    """The runs among ``candidates`` (N, D) to buy with ``budget`` FLOPs for the forecast at ``target``.

    ``candidates`` should hold only runs not in ``frame`` (see :func:`fresh`);
    ``runs["candidate"]`` is the row of ``candidates`` each pick came from;
    ``rule``: see :func:`lmscale.design.criterion.greedy_select`.
    """
    check_frame(frame)
    check_target(frame, target)
    if not budget > 0:
        raise LmscaleError(f"budget = {budget!r}: expected a positive number of FLOPs")
    cand = candidates.reset_index(drop=True)
    costs = run_cost(cand["N"], cand["D"])
    if cand.empty or not (costs <= budget * (1 + 1e-9)).any():
        what = f"(the cheapest candidate costs C = 6 N D = {float(costs.min()):.3g} FLOPs)" if len(cand) else \
            "(no candidate runs are left)"
        raise LmscaleError(f"budget = {budget:.3g} FLOPs is below the cheapest possible run {what}")
    forecast = forecast or forecaster(frame)
    target_draws, cand_draws = _common_rows(forecast, target, cand)
    sel = greedy_select(target_draws, cand_draws, costs, forecast.noise_sd, budget, k, rule)
    runs = cand.iloc[sel.picks][["N", "D"]].reset_index(drop=True)
    runs["C"] = sel.costs
    runs["gain"] = sel.gains
    runs["narrowing"] = sel.narrowing
    runs["candidate"] = sel.picks
    lo, hi = forecast.interval(target.N, target.D)
    width = (hi - lo) / np.exp(forecast.point(target.N, target.D))
    return Proposal(runs=runs, selection=sel, forecast=forecast, target=target, width=width, interval=(lo, hi))


def _common_rows(forecast: Forecast, target: Target, cand: pd.DataFrame) -> tuple[Array, Array]:
    """Target and candidate draws over the draws finite at both."""
    N = np.concatenate([target.N, cand["N"].to_numpy(float)])
    D = np.concatenate([target.D, cand["D"].to_numpy(float)])
    both = forecast.draws(N, D)
    if len(both) < 2:
        raise LmscaleError("fewer than 2 predictive draws are finite at the target and the candidates")
    T = len(target.N)
    return both[:, :T], both[:, T:]


def fresh(candidates: pd.DataFrame, frame: pd.DataFrame, by: tuple[str, ...] = ("N", "D")) -> pd.DataFrame:
    """Candidates that are not already runs of ``frame``: no row equal (to 0.1%) in every ``by`` column."""
    cand = candidates.reset_index(drop=True)
    if frame.empty:
        return cand
    have = np.log(frame[list(by)].to_numpy(float))
    mine = np.log(cand[list(by)].to_numpy(float))
    dist = np.abs(mine[:, None, :] - have[None, :, :]).max(axis=2).min(axis=1)
    return cand[dist > 1e-3].reset_index(drop=True)


@dataclass
class Round:
    """The state after one round: runs so far, compute spent, the forecast at the target."""

    round: int
    n_runs: int
    compute: float
    point: Array
    lo: Array
    hi: Array
    added: pd.DataFrame = field(default_factory=pd.DataFrame)
    expected_narrowing: float = 0.0


def grow(
    frame: pd.DataFrame, target: Target, candidates: pd.DataFrame, budget: float, rounds: int,
    forecaster: Forecaster, observe: Callable[[pd.DataFrame], Array], k: int | None = None,
) -> tuple[pd.DataFrame, list[Round]]:
    """Spend ``budget`` FLOPs in ``rounds`` rounds of :func:`propose`, observing each round's runs.

    ``observe(runs)`` returns the measured loss of each proposed run (N, D). Each
    round spends an equal share of what is left. Returns the grown frame (column
    ``round``: 0 for the starting runs) and one :class:`Round` per state (round 0
    = the start).
    """
    if rounds < 1:
        raise LmscaleError(f"rounds = {rounds}: expected at least 1")
    data = frame[["N", "D", "loss"]].copy()
    data["round"] = 0
    history = []
    left = float(budget)
    forecast = forecaster(data)
    history.append(_state(0, data, forecast, target))
    for r in range(1, rounds + 1):
        share = left / (rounds - r + 1)
        try:
            prop = propose(data, target, fresh(candidates, data), share, forecaster, k=k, forecast=forecast)
        except LmscaleError:
            break  # nothing affordable is left
        added = prop.runs[["N", "D"]].copy()
        added["loss"] = np.asarray(observe(added), dtype=float)
        added["round"] = r
        data = pd.concat([data, added], ignore_index=True)
        left -= float(prop.runs["C"].sum())
        forecast = forecaster(data)
        history.append(_state(r, data, forecast, target, added, prop.narrowing))
    return data, history


def _state(r: int, data: pd.DataFrame, forecast: Forecast, target: Target,
           added: pd.DataFrame | None = None, narrowing: float = 0.0) -> Round:
    lo, hi = forecast.interval(target.N, target.D)
    return Round(round=r, n_runs=len(data), compute=float(run_cost(data["N"], data["D"]).sum()),
                 point=np.exp(forecast.point(target.N, target.D)), lo=lo, hi=hi,
                 added=added if added is not None else pd.DataFrame(), expected_narrowing=narrowing)


def rounds_table(history: Sequence[Round], truth: Array | None = None) -> list[dict[str, Any]]:
    """One row per round: runs, compute, forecast, interval width (relative), error (given the truth)."""
    rows = []
    for h in history:
        row: dict[str, Any] = {
            "round": h.round, "runs": h.n_runs, "compute": h.compute,
            "forecast": float(np.mean(h.point)), "width": float(np.mean((h.hi - h.lo) / h.point)),
            "expected_narrowing": h.expected_narrowing,
        }
        if truth is not None:
            row["error"] = float(np.mean(np.abs(h.point / truth - 1.0)))
            row["covered"] = bool(np.all((h.lo <= truth) & (truth <= h.hi)))
        rows.append(row)
    return rows
