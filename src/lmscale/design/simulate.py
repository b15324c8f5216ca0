"""Synthetic studies from a known law: score designs by forecast error and coverage at a target.

A :class:`Truth` is a law (a catalog entry such as ``besiroglu2024``, or a
fit JSON) and the residual noise of real runs about a law: the log
residuals of a real fit (:func:`residuals_of`, e.g. the Epoch AI
Chinchilla points about their fit), drawn with replacement for every
synthetic run. :func:`simulate` then, for each seed, measures every design
at equal total compute:

* ``next``: a small seed grid, grown in ``rounds`` rounds by
  :func:`lmscale.design.grow.grow` (propose, observe, refit);
* ``loguniform`` and ``isoflop``: the reference designs of
  :mod:`lmscale.design.space` with the compute ``next`` spent (seed grid
  included) in that seed;
* any fixed design given (a table of N and D), as it is.

Each is fitted by the same forecaster and scored at the target: the
absolute relative error of the forecast and whether the interval covers
the true loss. :func:`summarise` reduces the seeds to one row per design.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from lmscale.design.forecaster import BootstrapForecaster, Forecaster
from lmscale.design.grow import Round, Target, grow, rounds_table
from lmscale.design.space import (
    DesignSpace,
    compute_optimal,
    isoflop_design,
    loguniform_design,
    run_cost,
    seed_grid,
)
from lmscale.errors import LmscaleError
from lmscale.laws.result import FitResult

Array = np.ndarray


@dataclass
class Truth:
    """The law synthetic runs are drawn from, and their noise.

    Attributes:
        law: the true law (a law of N and D).
        residuals: log-loss residuals of real runs about a fit, resampled for
            every synthetic run (their spread is the noise).
        name: how the truth is called in tables.
        noise_source: where the residuals come from, in words.
    """

    law: FitResult
    residuals: Array
    name: str = "truth"
    noise_source: str = ""

    def __post_init__(self) -> None:
        if set(self.law.form.inputs) != {"N", "D"}:
            raise LmscaleError(f"truth: law {self.law.law} is not a law of N and D "
                               "(use e.g. a chinchilla or kaplan_nd law)")
        self.residuals = np.asarray(self.residuals, dtype=float)
        if self.residuals.ndim != 1 or len(self.residuals) < 2 or not np.all(np.isfinite(self.residuals)):
            raise LmscaleError("truth: expected at least 2 finite residuals to draw the noise from")

    @property
    def noise_sd(self) -> float:
        return float(np.std(self.residuals, ddof=1))

    def loss(self, N: Any, D: Any) -> Array:
        """The noise-free loss."""
        return np.asarray(self.law.predict(N=np.asarray(N, dtype=float), D=np.asarray(D, dtype=float)), dtype=float)

    def observe(self, N: Any, D: Any, rng: np.random.Generator) -> Array:
        """Loss of runs at (N, D): the law times exp(a residual drawn with replacement)."""
        clean = np.atleast_1d(self.loss(N, D))
        return clean * np.exp(rng.choice(self.residuals, size=clean.shape))


def residuals_of(frame: pd.DataFrame, law: str = "chinchilla", **fit_kwargs: Any) -> tuple[Array, FitResult]:
    """Log residuals (measured / fitted) of ``law`` fitted to real runs, and the fit."""
    from lmscale.laws.api import fit
    from lmscale.laws.io import prepare_points

    result = fit(frame, law=law, **fit_kwargs)
    points = prepare_points(frame, result.form, fit_kwargs.get("columns"), fit_kwargs.get("drop_highest_loss", 0))
    pred = result.form.log_predict(result.form.to_theta(result.params), points.X)
    return np.log(points.y) - pred, result


@dataclass(frozen=True)
class SimulationConfig:
    """A simulated comparison of designs.

    Attributes:
        space: where runs may go (its ``c_max`` is the largest run).
        budget: total FLOPs of every design (seed grid included).
        target_factor: the target is the true law's compute-optimal point at
            ``target_factor x c_max`` FLOPs (100: two decades beyond the largest run).
        rounds: rounds of ``next``.
        per_round: at most this many runs bought per round (None: as many as the round's budget affords).
        seeds: synthetic studies per design.
        level: coverage of the forecast intervals.
        n_boot: bootstrap draws of the forecaster.
        law: the law the forecaster fits (None: the truth's form).
        seed_sizes, seed_ratios: the seed grid ``next`` starts from.
        baselines: reference designs to compare (``loguniform``, ``isoflop``).
    """

    space: DesignSpace
    budget: float
    target_factor: float = 100.0
    rounds: int = 3
    per_round: int | None = None
    seeds: int = 50
    level: float = 0.8
    n_boot: int = 32
    law: str | None = None
    seed_sizes: int = 3
    seed_ratios: tuple[float, ...] = (5.0, 20.0, 80.0)
    baselines: tuple[str, ...] = ("loguniform", "isoflop")

    def __post_init__(self) -> None:
        if not np.isfinite(self.space.c_max):
            raise LmscaleError("simulate: the design space needs a finite c_max (the largest run)")
        if not self.budget > 0 or self.rounds < 1 or self.seeds < 1 or not self.target_factor > 1:
            raise LmscaleError("simulate: budget > 0, rounds >= 1, seeds >= 1 and target_factor > 1 expected")
        unknown = set(self.baselines) - set(BASELINES)
        if unknown:
            raise LmscaleError(f"simulate: unknown baseline(s) {', '.join(sorted(unknown))}; known: "
                               f"{', '.join(BASELINES)}")


BASELINES: dict[str, Callable[[DesignSpace, float], pd.DataFrame]] = {
    "loguniform": loguniform_design,
    "isoflop": isoflop_design,
}


@dataclass
class SimulationResult:
    """Every (design, seed) score and the ``next`` rounds of every seed."""

    truth: Truth
    config: SimulationConfig
    target: Target
    scores: pd.DataFrame
    rounds: pd.DataFrame
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        return summarise(self.scores)


def true_target(truth: Truth, config: SimulationConfig) -> Target:
    C = config.target_factor * config.space.c_max
    N, D = compute_optimal(truth.law.form, truth.law.params, C)
    return Target(N, D, how=f"compute-optimal point of the true law at {config.target_factor:g} x the "
                            f"largest run ({C:.3g} FLOPs)")


def score(frame: pd.DataFrame, target: Target, truth_value: Array, forecaster: Forecaster) -> dict[str, Any]:
    """Fit ``frame`` (N, D, loss) and score the forecast at the target."""
    forecast = forecaster(frame)
    point = np.exp(forecast.point(target.N, target.D))
    lo, hi = forecast.interval(target.N, target.D)
    return {
        "error": float(np.mean(np.abs(point / truth_value - 1.0))),
        "signed_error": float(np.mean(point / truth_value - 1.0)),
        "covered": bool(np.all((lo <= truth_value) & (truth_value <= hi))),
        "width": float(np.mean((hi - lo) / point)),
        "runs": len(frame), "compute": float(run_cost(frame["N"], frame["D"]).sum()),
        "largest_run": float(run_cost(frame["N"], frame["D"]).max()),
    }


def simulate(
    truth: Truth, config: SimulationConfig, designs: Mapping[str, pd.DataFrame] | None = None,
    forecaster_factory: Callable[[int], Forecaster] | None = None, progress: bool = False,
) -> SimulationResult:
    """Score ``next``, the baselines and ``designs`` (name -> N, D table) over ``config.seeds`` seeds."""
    law = config.law or truth.law.law
    factory = forecaster_factory or (lambda seed: BootstrapForecaster(law=law, n_boot=config.n_boot,
                                                                      level=config.level, seed=seed))
    target = true_target(truth, config)
    truth_value = truth.loss(target.N, target.D)
    candidates = config.space.candidates()
    start = seed_grid(config.space, config.seed_sizes, config.seed_ratios)
    if start["C"].sum() >= config.budget:
        raise LmscaleError(f"simulate: the seed grid alone costs {start['C'].sum():.3g} FLOPs, the budget "
                           f"{config.budget:.3g}")
    designs = dict(designs or {})
    for name, frame in designs.items():
        if not {"N", "D"} <= set(frame.columns):
            raise LmscaleError(f"design {name}: needs columns N and D")
    rows, round_rows = [], []
    bar = tqdm(total=config.seeds, desc="simulate", unit="seed", disable=not progress)
    for seed in range(config.seeds):
        scores, history = _one_seed(seed, truth, config, target, truth_value, start, candidates, designs, factory)
        rows += scores
        round_rows += [{"seed": seed, **r} for r in rounds_table(history, truth_value)]
        bar.update(1)
    bar.close()
    notes = {"target": target.how, "truth": truth.name, "noise": truth.noise_source,
             "noise_sd": truth.noise_sd, "forecaster_law": law, "seed_grid_compute": float(start["C"].sum())}
    return SimulationResult(truth=truth, config=config, target=target, scores=pd.DataFrame(rows),
                            rounds=pd.DataFrame(round_rows), notes=notes)


def _one_seed(seed: int, truth: Truth, config: SimulationConfig, target: Target, truth_value: Array,
              start: pd.DataFrame, candidates: pd.DataFrame, designs: Mapping[str, pd.DataFrame],
              factory: Callable[[int], Forecaster]) -> tuple[list[dict[str, Any]], list[Round]]:
    """One synthetic study: ``next`` grown from the seed grid, then every fixed design at its compute."""
    rng = np.random.default_rng([seed, 16, 0])
    seeded = start[["N", "D"]].copy()
    seeded["loss"] = truth.observe(seeded["N"], seeded["D"], rng)
    grown, history = grow(seeded, target, candidates, config.budget - float(start["C"].sum()), config.rounds,
                          factory(seed), lambda runs: truth.observe(runs["N"], runs["D"], rng), k=config.per_round)
    rows = [{"design": "next", "seed": seed, **_score_round(history[-1], grown, truth_value)}]
    spent = float(run_cost(grown["N"], grown["D"]).sum())
    fixed = {**{name: BASELINES[name](config.space, spent) for name in config.baselines}, **designs}
    for i, (name, frame) in enumerate(fixed.items()):
        noise = np.random.default_rng([seed, 16, i + 1])  # each design its own noise stream
        rows.append({"design": name, "seed": seed,
                     **_score_fixed(frame, truth, noise, target, truth_value, factory(seed))})
    return rows, history


def _score_round(state: Round, frame: pd.DataFrame, truth_value: Array) -> dict[str, Any]:
    """The score of the last round's forecast (the one :func:`score` would refit)."""
    cost = run_cost(frame["N"], frame["D"])
    return {
        "error": float(np.mean(np.abs(state.point / truth_value - 1.0))),
        "signed_error": float(np.mean(state.point / truth_value - 1.0)),
        "covered": bool(np.all((state.lo <= truth_value) & (truth_value <= state.hi))),
        "width": float(np.mean((state.hi - state.lo) / state.point)),
        "runs": len(frame), "compute": float(cost.sum()), "largest_run": float(cost.max()),
    }


def _score_fixed(design: pd.DataFrame, truth: Truth, rng: np.random.Generator, target: Target,
                 truth_value: Array, forecaster: Forecaster) -> dict[str, Any]:
    frame = design[["N", "D"]].astype(float).copy()
    frame["loss"] = truth.observe(frame["N"], frame["D"], rng)
    return score(frame, target, truth_value, forecaster)


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per design: mean and median |error|, coverage, mean width, mean compute, seeds."""
    out = scores.groupby("design", sort=False).agg(
        mean_abs_error=("error", "mean"), median_abs_error=("error", "median"),
        mean_signed_error=("signed_error", "mean"), coverage=("covered", "mean"), width=("width", "mean"),
        runs=("runs", "mean"), compute=("compute", "mean"), largest_run=("largest_run", "max"),
        seeds=("seed", "nunique"))
    base = out.loc["next", "mean_abs_error"] if "next" in out.index else np.nan
    out["error_vs_next"] = out["mean_abs_error"] / base
    return out.reset_index()


__all__ = ["BASELINES", "Round", "SimulationConfig", "SimulationResult", "Truth", "residuals_of", "simulate",
           "summarise", "true_target"]
