"""The one interface experiment design needs: fit a forecaster to runs, ask it about a point.

A *forecaster* is any callable ``frame -> Forecast``: it fits the runs of
``frame`` (columns ``N``, ``D``, ``loss``) and returns a :class:`Forecast`,
which gives, at any points (N, D),

* ``point``: the central prediction of log loss,
* ``draws``: predictive draws of log loss, one row per draw (B, n),
* ``interval``: the band those draws span at a coverage level,
* ``noise_sd``: the residual spread of one run about the law (log loss).

:class:`BootstrapForecaster` is the default: a law fitted by
:func:`lmscale.laws.api.fit` with a few bootstrap replicates (points
resampled), its draws the bootstrap refits. Everything in
:mod:`lmscale.design` goes through this interface only (``point``,
``draws``, ``interval``, ``width``, ``noise_sd``, ``fit``, ``form``,
``n_draws``), so a forecaster with calibrated intervals plugs in by passing
another callable: :class:`ValidatedForecaster` wraps a validated forecast
object (``.point``, ``.draws``, ``.predict`` with an interval, ``.fit``)
in :class:`ValidatedForecast`; :class:`AutoForecaster` takes the validated
one where the runs allow it and one law where they do not;
``lmscale.design.api.default_forecaster`` chooses which one ``next`` and
``simulate`` use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.fitting import FitOptions
from lmscale.laws.forms import LawForm, get_form
from lmscale.laws.intervals import central_band
from lmscale.laws.result import FitResult
from lmscale.tables import columns_hint

Array = np.ndarray

#: Columns a design frame must have.
COLUMNS = ("N", "D", "loss")

#: Floor on the residual spread used by the criterion (log loss): a fit that
#: passes through its points exactly would otherwise promise infinite gains.
MIN_NOISE_SD = 1e-3


@dataclass
class Forecast:
    """A fitted law and its predictive draws.

    Attributes:
        fit: the fitted law (central parameters, statistics).
        thetas: fitting parameters of each draw (B, k), in ``fit.form``'s theta.
        noise_sd: residual standard deviation of log loss (at least :data:`MIN_NOISE_SD`).
        level: default coverage of :meth:`interval`.
    """

    fit: FitResult
    thetas: Array
    noise_sd: float
    level: float = 0.8

    @property
    def form(self) -> LawForm:
        return self.fit.form

    @property
    def n_draws(self) -> int:
        return int(len(self.thetas))

    def point(self, N: Any, D: Any) -> Array:
        """Central prediction of log loss at (N, D)."""
        X = _inputs(N, D)
        with np.errstate(divide="ignore"):  # a scale fitted to 0 has log -inf, which the form handles
            theta = self.form.to_theta(self.fit.params)
        return np.asarray(self.form.log_predict(theta, X))

    def draws(self, N: Any, D: Any) -> Array:
        """Predictive draws of log loss (B, n); draws that overflow are dropped."""
        X = _inputs(N, D)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = self.form.log_predict(self.thetas, X)
        return out[np.all(np.isfinite(out), axis=1)]

    def interval(self, N: Any, D: Any, level: float | None = None) -> tuple[Array, Array]:
        """Percentile band of the loss (not log) over the draws, at ``level``."""
        level = self.level if level is None else level
        draws = self.draws(N, D)
        if len(draws) < 2:
            raise LmscaleError(f"law {self.fit.law}: fewer than 2 usable predictive draws; no interval")
        lo, hi = central_band(draws, level)
        return np.exp(lo), np.exp(hi)

    def width(self, N: Any, D: Any, level: float | None = None) -> Array:
        """Relative width of the interval: (hi - lo) / central prediction."""
        lo, hi = self.interval(N, D, level)
        return (hi - lo) / np.exp(self.point(N, D))


Forecaster = Callable[[pd.DataFrame], Forecast]


@dataclass
class BootstrapForecaster:
    """Fit ``law`` with ``n_boot`` bootstrap refits; the refits are the draws.

    Attributes:
        law: a law of ``lmscale.laws.FORMS`` with inputs N and D
            (``chinchilla``, ``kaplan_nd``, ...).
        n_boot: bootstrap replicates (the draws); a few dozen suffice for the
            criterion, and keep simulations of many seeds cheap.
        level: coverage of the intervals.
        seed: seed of the bootstrap.
        options: fitting options (``None``: a lighter search than ``ls.fit``'s
            default: 32 screened starts, 2 refined).
        warm: reuse the previous fit's parameters as an extra start (one
            forecaster object per growing study).
    """

    law: str = "chinchilla"
    n_boot: int = 32
    level: float = 0.8
    seed: int = 0
    options: FitOptions | None = None
    warm: bool = True
    _last: Array | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        form = get_form(self.law)
        if set(form.inputs) != {"N", "D"}:
            raise LmscaleError(f"law {self.law}: experiment design needs a law of N and D "
                               f"(e.g. chinchilla, kaplan_nd); {self.law} takes {', '.join(form.inputs)}")
        if self.n_boot < 2:
            raise LmscaleError(f"n_boot = {self.n_boot}: expected at least 2 bootstrap draws")

    def __call__(self, frame: pd.DataFrame) -> Forecast:
        from lmscale.laws.api import fit

        check_frame(frame)
        # the draws are the predictive sample the design's criterion compares across rounds and
        # candidates: the same number every time, not more where a verdict is at the rule's edge
        options = self.options or FitOptions(n_screen=32, n_refine=2, extend_at_edge=False)
        if self.warm and self._last is not None:
            grid = np.vstack([get_form(self.law).theta_grid(), self._last[None, :]])
            options = replace(options, grid=grid)
        with np.errstate(over="ignore", invalid="ignore"):  # replicates that run away are dropped below
            result = fit(frame[list(COLUMNS)], law=self.law, bootstrap=self.n_boot, seed=self.seed,
                         options=options, n_jobs=1, ci_level=self.level)
        form = result.form
        samples = result.bootstrap_params
        if samples is None or len(samples) < 2:
            raise LmscaleError(f"law {self.law}: the bootstrap gave fewer than 2 usable refits of "
                               f"{len(frame)} runs")
        with np.errstate(divide="ignore"):  # a scale fitted to 0 has log -inf, which the form handles
            self._last = form.to_theta(result.params)
            thetas = np.stack([form.to_theta(dict(zip(form.params, row, strict=True))) for row in samples])
        if not np.all(np.isfinite(self._last)):
            self._last = None
        return Forecast(fit=result, thetas=thetas, noise_sd=residual_sd(result, len(form.params)),
                        level=self.level)


def residual_sd(fit: FitResult, n_params: int) -> float:
    """Residual sd of log loss, corrected for the parameters fitted: rmse sqrt(n / (n - k))."""
    n = fit.n_points
    rmse = float(fit.stats.get("rmse_log", 0.0) or 0.0)
    dof = n / (n - n_params) if n > n_params else 4.0
    return max(rmse * float(np.sqrt(dof)), MIN_NOISE_SD)


def check_frame(frame: pd.DataFrame, where: str = "runs", minimum: int = 3) -> None:
    """Columns N, D, loss present, positive, and at least ``minimum`` runs."""
    if not isinstance(frame, pd.DataFrame):
        raise LmscaleError(f"{where}: expected a table of runs, got {type(frame).__name__}")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise LmscaleError(f"{where}: needs column(s) {', '.join(missing)} (or C and N, to derive D = C / (6 N)); "
                           f"columns: {', '.join(map(str, frame.columns))}" + columns_hint(frame, missing))
    values = frame[list(COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = ~np.all(np.isfinite(values) & (values > 0), axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LmscaleError(f"{where}: row {row + 1} has a missing, NaN or non-positive N, D or loss "
                           f"({dict(zip(COLUMNS, values[row]))})")
    if len(frame) < minimum:
        raise LmscaleError(f"{where}: {len(frame)} run(s); experiment design needs at least {minimum} "
                           "finished runs to start from")


def _inputs(N: Any, D: Any) -> dict[str, Array]:
    n, d = np.broadcast_arrays(np.atleast_1d(np.asarray(N, dtype=float)), np.atleast_1d(np.asarray(D, dtype=float)))
    return {"N": n.ravel(), "D": d.ravel()}


@dataclass
class ValidatedForecast:
    """:class:`Forecast`'s interface over a validated forecast object.

    ``source`` has ``point(N=, D=)`` (loss), ``draws(N=, D=, n_draws=, seed=)``
    (loss draws carrying parameter and extrapolation uncertainty), ``predict(N=,
    D=, level=)`` (with ``lo``, ``hi``), ``fit`` (the chosen law's FitResult)
    and ``error.s0`` (the scatter of one run about the law).
    """

    source: Any
    level: float = 0.8
    draws_per_call: int = 256
    seed: int = 0

    @property
    def fit(self) -> FitResult:
        return self.source.fit

    @property
    def form(self) -> LawForm:
        return self.fit.form

    @property
    def noise_sd(self) -> float:
        """The scatter of one run about the law: the chosen fit's residual sd (as
        :class:`BootstrapForecaster`'s), or the forecast's in-data scale ``s0`` where larger. A
        compute-weighted fit's ``s0`` alone is the scatter of the few largest runs that the fit passes
        through (0.05% on a store whose runs scatter by 3.1%): the criterion would take a new run for an
        exact measurement and promise narrowing no run can give."""
        s0 = float(getattr(self.source.error, "s0", 0.0))
        return max(residual_sd(self.fit, len(self.form.params)), s0, MIN_NOISE_SD)

    @property
    def n_draws(self) -> int:
        return self.draws_per_call

    def point(self, N: Any, D: Any) -> Array:
        X = _inputs(N, D)
        return np.log(np.asarray(self.source.point(N=X["N"], D=X["D"]), dtype=float))

    def draws(self, N: Any, D: Any) -> Array:
        X = _inputs(N, D)
        out = np.log(np.asarray(self.source.draws(N=X["N"], D=X["D"], n_draws=self.draws_per_call, seed=self.seed)))
        return out[np.all(np.isfinite(out), axis=1)]

    def interval(self, N: Any, D: Any, level: float | None = None) -> tuple[Array, Array]:
        X = _inputs(N, D)
        p = self.source.predict(N=X["N"], D=X["D"], level=self.level if level is None else level, seed=self.seed)
        return np.asarray(p.lo, dtype=float), np.asarray(p.hi, dtype=float)

    def width(self, N: Any, D: Any, level: float | None = None) -> Array:
        lo, hi = self.interval(N, D, level)
        return (hi - lo) / np.exp(self.point(N, D))


@dataclass
class ValidatedForecaster:
    """Fit with a validated forecast function (``forecast(frame, bootstrap=K, seed=S)``)."""

    make: Callable[..., Any]
    n_boot: int = 64
    level: float = 0.8
    seed: int = 0
    #: the points the forecast is for (N and D, or C alone: compute budgets): its validation cuts
    #: follow them, as ``lmscale predict``'s do
    at: pd.DataFrame | None = None
    #: the cut axis, ``"N"`` or ``"C"`` (None: as ``at`` asks, :func:`lmscale.laws.forecast.axis_for_points`)
    by: str | None = None

    def __call__(self, frame: pd.DataFrame) -> ValidatedForecast:
        check_frame(frame)
        extra = {"at": self.at} if self.at is not None else {}
        if self.by is not None:
            extra["by"] = self.by
        source = self.make(frame[list(COLUMNS)], bootstrap=self.n_boot, seed=self.seed, **extra)
        return ValidatedForecast(source=source, level=self.level, seed=self.seed)


@dataclass
class AutoForecaster:
    """The validated forecast where the runs allow one, else one law; ``choice`` says which and why.

    The validated forecast needs runs at enough model sizes to hold the
    largest out (validation by scale, :mod:`lmscale.laws.validation`);
    with fewer, ``fallback`` (one law with bootstrap draws) is fitted and
    ``choice`` names what stopped the validated one.
    """

    validated: ValidatedForecaster
    fallback: BootstrapForecaster
    choice: str = ""

    def __call__(self, frame: pd.DataFrame) -> Forecast | ValidatedForecast:
        check_frame(frame)
        try:
            out = self.validated(frame)
        except LmscaleError as exc:
            self.choice = (f"{self.fallback.law} with bootstrap draws: the validated forecast (what 'lmscale "
                           f"predict' gives) is not possible on these runs ({exc})")
            return self.fallback(frame)
        self.choice = f"the validated forecast, as 'lmscale predict' gives it: {out.source.law}, {out.source.reason}"
        return out
