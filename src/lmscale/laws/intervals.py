"""Prediction intervals that say how far off a forecast may be.

A forecast's error has two parts, and the intervals combine both:

1. **Parameter uncertainty**: the spread of the law refitted to bootstrap
   resamples of the runs (:mod:`lmscale.laws.bootstrap`); each replicate
   gives its own log-prediction at the point asked for.
2. **Extrapolation error**: how much the law itself misses runs beyond the
   data it was fitted on, measured on the validation cuts
   (:mod:`lmscale.laws.validation`): every held-out run of every cut gives a
   log residual r = log(measured / predicted) at a distance d decades beyond
   that cut's data: d = max(0, log10(N / N_max), log10(C / C_max)) with
   C = 6 N D (:func:`beyond`; model size counts
   because cuts by size hold out large models trained briefly, inside the
   compute range of the smaller ones). The model is r ~ Normal(0, s(d)^2) with
   s(d)^2 = s_0^2 + (k d)^2 (:meth:`ExtrapolationError.calibrate`): k^2 is
   the variance the held-out residuals have beyond s_0^2 and beyond what the
   cut fit's own parameter uncertainty explains (Gauss-Newton, since the
   final fit's is in the bootstrap), per squared decade (robust scales,
   1.4826 x the median |r|, so a few wild runs do not set it); s_0 is at
   least the scatter of
   the runs about the full fit (1.4826 x the median |log residual|, robust
   to the outlying runs a Huber fit ignores), so a point inside the data
   still gets the noise of one run.

3. **Model uncertainty**: the candidates whose validated error is within 2x
   of the lowest are plausible too; each draw is re-centred on one of them
   (weights error^-2), so where they disagree the interval widens.

A predictive draw is a bootstrap log-prediction plus a Normal draw of
scale s(d) at the point's own distance; the interval at level q is the
(1 - q)/2 and (1 + q)/2 quantiles of the draws (:func:`predictive_quantiles`).
Honesty check: the coverage of held-out runs is measured, never assumed:
``benchmarks/bench_forecast.py`` counts the share of the largest runs of
public ladders inside the 80% intervals of forecasts fitted without them, and
the tests do the same on synthetic runs with known laws. Caveats: the
residuals of one cut are correlated (one fit makes them), so with few cuts k
is uncertain; the cut fits have fewer runs than the final fit, which makes
the calibrated s(d) slightly conservative.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lmscale.errors import LmscaleError

Array = np.ndarray

#: Interval levels reported by default.
LEVELS = (0.8, 0.95)
#: Held-out runs nearer than this (decades) to their cut's data calibrate s_0, the others k.
MIN_DISTANCE = 0.02


@dataclass(frozen=True)
class ExtrapolationError:
    """s(d)^2 = s_0^2 + (k d)^2: the scale of log residuals d decades beyond the data.

    Attributes:
        s0: log-residual scale inside the data (at d = 0).
        k: growth of the scale per decade beyond the data (in N or compute).
        floor: the in-sample RMSE s0 was bounded below by.
        n_residuals: held-out residuals it was calibrated on; ``n_cuts`` cuts.
        max_distance: the farthest distance seen in the cuts (decades); beyond
            it the growth k is extrapolated itself.
    """

    s0: float
    k: float
    floor: float = 0.0
    n_residuals: int = 0
    n_cuts: int = 0
    max_distance: float = 0.0

    def scale(self, distance: Array | float) -> Array:
        """s(d) for distances in decades (negative: inside the data, d = 0)."""
        d = np.maximum(np.asarray(distance, dtype=float), 0.0)
        return np.sqrt(self.s0**2 + (self.k * d) ** 2)

    @classmethod
    def calibrate(cls, residuals: Array, distances: Array, floor: float = 0.0, n_cuts: int = 0,
                  param_var: Array | None = None) -> ExtrapolationError:
        """s_0 and k from held-out log residuals and their distances (see the module docstring).

        s_0 is the scatter ``floor`` of the runs about the full fit, or the
        robust scale (1.4826 x median |r|) of the residuals nearer than
        :data:`MIN_DISTANCE` to their cut's data, whichever is larger. k
        carries what the residuals farther out add: k^2 = (scale(r)^2 - s_0^2
        - median(param_var)) / median(d^2) over those residuals (0 when they
        scatter no more than that), where ``param_var`` is each residual's
        variance from its cut fit's parameter uncertainty (the bootstrap
        adds the final fit's own at prediction time).
        """
        r = np.asarray(residuals, dtype=float)
        d = np.asarray(distances, dtype=float)
        v = np.zeros_like(r) if param_var is None else np.asarray(param_var, dtype=float)
        ok = np.isfinite(r) & np.isfinite(d) & np.isfinite(v)
        r, d, v = r[ok], d[ok], v[ok]
        if len(r) == 0:
            raise LmscaleError("prediction intervals: no finite held-out residuals to calibrate on")
        far = d >= MIN_DISTANCE
        near = ~far
        s0 = max(float(floor), _robust_scale(r[near]) if near.any() else 0.0, 1e-6)
        k = 0.0
        if far.any():  # what the residuals beyond the data add to the scatter, per decade
            excess = _robust_scale(r[far]) ** 2 - s0**2 - float(np.median(v[far]))
            k = float(np.sqrt(max(excess, 0.0) / np.median(d[far] ** 2)))
        return cls(s0=s0, k=k, floor=float(floor), n_residuals=int(len(r)), n_cuts=int(n_cuts),
                   max_distance=float(max(d.max(), 0.0)))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model": "log(measured / predicted) ~ Normal(0, s0^2 + (k d)^2), "
                                         "d = decades beyond the fitted data in N or in compute 6ND"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "forecast JSON") -> ExtrapolationError:
        if not isinstance(data, Mapping):
            raise LmscaleError(f"{where}: extrapolation_error = {data!r}: expected an object with s0 and k")
        for key in ("s0", "k", "floor", "n_residuals", "n_cuts", "max_distance"):
            v = data.get(key)
            if v is None and key not in ("s0", "k"):
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not (np.isfinite(v) and v >= 0):
                raise LmscaleError(f"{where}: extrapolation_error.{key} = {v!r}: expected a number >= 0")
        return cls(s0=float(data["s0"]), k=float(data["k"]),
                   **{k: data[k] for k in ("floor", "n_residuals", "n_cuts", "max_distance")
                      if data.get(k) is not None})


def _robust_scale(x: Array) -> float:
    """A Normal's sd from the median |x| (1.4826 x median |x|): a few wild runs do not set it."""
    return float(1.4826 * np.median(np.abs(x)))


def predictive_draws(log_pred: Array, scale: Array, n_draws: int, seed: int = 0) -> Array:
    """Draws of log loss: a bootstrap log-prediction plus Normal noise of ``scale``.

    ``log_pred`` (B, m): B bootstrap log-predictions at m points (B = 1 with no
    bootstrap); ``scale`` (m,): s(d) at each point. Returns (n_draws, m).
    """
    log_pred = np.atleast_2d(np.asarray(log_pred, dtype=float))
    scale = np.broadcast_to(np.asarray(scale, dtype=float), log_pred.shape[1:])
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(log_pred), size=n_draws)
    return log_pred[rows] + rng.standard_normal((n_draws, log_pred.shape[1])) * scale


def central_band(values: Array, level: float, axis: int | None = 0, nan: bool = False) -> tuple[Array, Array]:
    """(lo, hi): the central ``level`` percentile band of ``values`` along ``axis`` (draws or replicates);
    ``nan``: ignoring NaN (replicates that failed)."""
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = (np.nanpercentile if nan else np.percentile)(values, [tail, 100.0 - tail], axis=axis)
    return lo, hi


def predictive_quantiles(draws: Array, level: float) -> tuple[Array, Array]:
    """(lo, hi) of log-loss draws at ``level`` (central interval), per point; in nats."""
    check_level(level)
    lo, hi = central_band(draws, level)
    return np.exp(lo), np.exp(hi)


def beyond(N: Array | None, C: Array, N_max: float | None, C_max: float) -> Array:
    """Decades beyond the fitted data: max(log10(N / N_max), log10(C / C_max)) (compute alone without N).

    Negative inside the data. Model size counts as well as compute because a cut
    by size holds out large models trained briefly, which lie inside the compute range.
    """
    d = np.log10(np.asarray(C, dtype=float) / C_max)
    if N is not None and N_max is not None:
        d = np.maximum(d, np.log10(np.asarray(N, dtype=float) / N_max))
    return d


def check_level(level: float) -> float:
    if not (isinstance(level, int | float) and 0.0 < float(level) < 1.0):
        raise LmscaleError(f"level = {level!r}: expected a coverage in (0, 1), e.g. 0.8")
    return float(level)


def coverage(measured: Array, lo: Array, hi: Array) -> float:
    """Share of measured values inside [lo, hi]."""
    measured, lo, hi = (np.asarray(x, dtype=float) for x in (measured, lo, hi))
    return float(np.mean((measured >= lo) & (measured <= hi)))


__all__ = ["LEVELS", "ExtrapolationError", "beyond", "central_band", "check_level", "coverage", "predictive_draws",
           "predictive_quantiles"]
