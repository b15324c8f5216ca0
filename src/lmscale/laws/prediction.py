"""A validated forecast as an object: predictions, predictive draws, intervals, JSON.

:class:`Forecast` is what :func:`lmscale.laws.forecast.forecast` returns and
``lmscale predict --save`` writes: the chosen law's fit with bootstrap draws,
the plausible alternative laws, the extrapolation error calibrated on the
validation cuts (:mod:`lmscale.laws.intervals`) and the audit. It predicts
(``.predict(N=, D=, level=0.8)``), draws (``.draws``; experiment design builds
on them), prints ``.summary()``, saves ``.to_json()`` and reads back with
:meth:`Forecast.from_json`; :meth:`Forecast.to_lawset` hands the chosen law to
the planner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.allocation_check import allocation_text
from lmscale.laws.identification import not_identified
from lmscale.laws.intervals import (
    LEVELS,
    ExtrapolationError,
    beyond,
    check_level,
    predictive_draws,
    predictive_quantiles,
)
from lmscale.laws.result import FitResult, LawSet, _clean, _load_json, dump_json

JSON_KIND = "forecast"
JSON_VERSION = 1
#: Draws per point for the intervals.
N_DRAWS = 4000


@dataclass
class Prediction:
    """Predicted loss (nats/token) at points, with the central interval at ``level``.

    ``distance``: decades beyond the fitted data in N or compute (<= 0: inside it).
    """

    N: np.ndarray | float
    D: np.ndarray | float
    loss: np.ndarray | float
    lo: np.ndarray | float | None
    hi: np.ndarray | float | None
    level: float | None
    distance: np.ndarray | float

    def to_dict(self) -> dict[str, Any]:
        return _clean({"N": self.N, "D": self.D, "loss": self.loss, "lo": self.lo, "hi": self.hi,
                       "level": self.level, "distance_decades": self.distance})


@dataclass
class Forecast:
    """A validated forecast of L(N, D).

    Attributes:
        law: the chosen candidate (``"chinchilla_tied"``, ``"chinchilla+compute_weighted"``);
            for an average, the heaviest member.
        members: candidate name -> (weight, the fit on every run, with bootstrap draws).
        error: the extrapolation error model calibrated on the cuts.
        audit: every candidate at every cut (``Audit.to_dict()`` form), with the choice.
        reason: why this law (or average).
        data: the fitted data's extent: ``C_max`` (6 N D, FLOPs), ``N_max``, ``D_max``, ``n_points``.
        combine: ``"select"`` or ``"average"``.
        alternatives: candidate name -> (weight, fit): the candidates whose validated
            error is within ``lmscale.laws.forecast.ALTERNATIVES_WITHIN`` of the lowest
            (the forecast's own included); their disagreement widens the intervals.
    """

    law: str
    members: dict[str, tuple[float, FitResult]]
    error: ExtrapolationError
    audit: dict[str, Any]
    reason: str
    data: dict[str, Any]
    combine: str = "select"
    alternatives: dict[str, tuple[float, FitResult]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    # -- predictions ----------------------------------------------------------------
    @property
    def fit(self) -> FitResult:
        """The fit of the chosen (or heaviest) candidate."""
        return self.members[self.law][1]

    @property
    def warnings(self) -> list[str]:
        """What a reader must know about the law's refit on all runs: it did not converge, or the
        runs do not identify its parameters (its predictions and their intervals stand; the
        bootstrap's spread is in them)."""
        fit = self.fit
        out = self._not_converged()
        line = not_identified(self.law, fit.identification)
        if line:
            out.append(line + ": read the predictions with their intervals, not the parameters")
        return out

    def _not_converged(self) -> list[str]:
        stats = self.fit.stats
        if stats.get("converged") is not False:
            return []
        message = str(stats.get("optimizer_message", "")).strip(" :") or "no message"
        return [f"the refit of {self.law} on all runs did not converge (L-BFGS-B: {message})"]

    @property
    def validation(self) -> list[dict[str, Any]]:
        """The audit rows of the candidate(s) forecast with: one per cut."""
        return [row for row in self.audit["table"] if row["candidate"] in self.members]

    @property
    def has_draws(self) -> bool:
        return all(f.bootstrap_params is not None and len(f.bootstrap_params) > 0 for _, f in self.members.values())

    def _inputs(self, N, D, U=None, C=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return point_inputs(N, D, U, C)

    def _member_log(self, fit: FitResult, N, D, U, draws: bool) -> np.ndarray:
        """(B, m) log-predictions of one member: bootstrap rows, or the point fit (B = 1)."""
        form = fit.form
        X = {"N": N, "D": D}
        if "U" in form.inputs:
            X["U"] = D if U is None else U  # no unique-token count: fresh data, no repetition
        rows = fit.bootstrap_params if draws else np.array([[fit.params[p] for p in form.params]])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            thetas = np.stack([form.to_theta(dict(zip(form.params, row))) for row in rows])
            logs = form.log_predict(thetas, X)
        if draws:  # a replicate outside the form's domain (e.g. E collapsed to 0) predicts nothing
            logs = logs[np.all(np.isfinite(logs), axis=1)]
            if len(logs) == 0:
                raise LmscaleError(f"law {fit.law}: no bootstrap draw gives a finite prediction at these points")
        return logs

    def distance(self, N, D) -> np.ndarray:
        """Decades beyond the fitted data, in model size or compute 6 N D (negative: inside it)."""
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return beyond(N, 6.0 * N * D, self.data.get("N_max"), self.data["C_max"])

    def point(self, N=None, D=None, U=None, C=None) -> np.ndarray:
        """The forecast loss: the (weighted) log-mean of the members' fits."""
        N, D, U = self._inputs(N, D, U, C)
        logs = [w * self._member_log(f, N, D, U, draws=False)[0] for w, f in self.members.values()]
        return np.exp(np.sum(logs, axis=0))

    def draws(self, N=None, D=None, U=None, C=None, n_draws: int = N_DRAWS, seed: int = 0) -> np.ndarray:
        """Predictive draws of the loss (n_draws, m): parameter and extrapolation uncertainty."""
        N, D, U = self._inputs(N, D, U, C)
        self._need_draws()
        scale = self.error.scale(self.distance(N, D))
        rng = np.random.default_rng(seed)
        names = list(self.members)
        weights = np.array([self.members[n][0] for n in names])
        counts = rng.multinomial(n_draws, weights / weights.sum())
        parts = []
        for i, (name, count) in enumerate(zip(names, counts)):
            if count:
                logs = self._member_log(self.members[name][1], N, D, U, draws=True)
                parts.append(predictive_draws(logs, scale, int(count), seed=seed + 1 + i))
        out = np.concatenate(parts, axis=0)
        rng.shuffle(out, axis=0)
        if self.alternatives:  # model uncertainty: each draw re-centred on a plausible alternative law
            alt = list(self.alternatives.values())
            w = np.array([a[0] for a in alt])
            logs = np.stack([self._member_log(f, N, D, U, draws=False)[0] for _, f in alt])
            w = np.where(np.all(np.isfinite(logs), axis=1), w, 0.0)  # no say where a law cannot predict
            pick = rng.choice(len(alt), size=n_draws, p=w / w.sum())
            out = out + logs[pick] - np.log(self.point(N, D, U))
        return np.exp(out)

    def predict(self, N=None, D=None, U=None, C=None, level: float | None = 0.8, seed: int = 0) -> Prediction:
        """Loss at (N, D) with the central interval at ``level`` (None: the point alone).

        Scalars in, floats out; arrays broadcast.
        """
        scalar = all(np.ndim(x) == 0 for x in (N, D, C, U) if x is not None)
        N, D, U = self._inputs(N, D, U, C)
        loss = self.point(N, D, U)
        lo = hi = None
        if level is not None:
            check_level(level)
            lo, hi = predictive_quantiles(np.log(self.draws(N, D, U, seed=seed)), level)
        out = Prediction(N=N, D=D, loss=loss, lo=lo, hi=hi, level=level, distance=self.distance(N, D))
        if scalar:
            for name in ("N", "D", "loss", "lo", "hi", "distance"):
                value = getattr(out, name)
                setattr(out, name, None if value is None else float(value[0]))
        return out

    def interval_width(self, N=None, D=None, U=None, C=None, level: float = 0.8) -> np.ndarray:
        """Width hi - lo of the interval at ``level`` (nats/token), per point."""
        p = self.predict(N, D, U, C, level=level)
        return p.hi - p.lo

    def table(self, points: pd.DataFrame, levels: Sequence[float] = LEVELS, seed: int = 0) -> pd.DataFrame:
        """One row per point: N, D, loss and lo/hi at each level (``lo80``, ``hi80``, ...)."""
        N, D, U = points_frame(points)
        out = pd.DataFrame({"N": N, "D": D, "loss": self.point(N, D, U)})
        if levels:
            logs = np.log(self.draws(N, D, U, seed=seed))
            for level in levels:
                lo, hi = predictive_quantiles(logs, level)
                tag = f"{round(level * 100):d}"
                out[f"lo{tag}"], out[f"hi{tag}"] = lo, hi
        out["distance_decades"] = self.distance(N, D)
        return out

    def _need_draws(self) -> None:
        if not self.has_draws:
            where = self.notes.get("path", "this forecast")
            raise LmscaleError(f"{where} has no bootstrap draws (fitted or saved with bootstrap = 0): "
                               "intervals need them; refit with bootstrap > 0 (lmscale predict/fit --bootstrap K)")

    # -- display ----------------------------------------------------------------------
    def summary(self) -> str:
        lines = [f"forecast: {self.law}" + (f" (average of {len(self.members)})" if len(self.members) > 1 else ""),
                 f"why: {self.reason}"]
        if len(self.members) > 1:
            lines += [f"  {name}: weight {w:.3f}" for name, (w, _) in self.members.items()]
        lines += [f"note: {n}" for n in self.notes.get("runs", [])]
        lines.append(self.fit.summary())
        e = self.error
        lines.append(f"intervals: bootstrap over runs ({self.fit.stats.get('n_bootstrap', 0)} draws) plus "
                     f"extrapolation error s(d) = sqrt({e.s0:.4f}^2 + ({e.k:.4f} d)^2) in log loss, d = decades "
                     f"beyond the data in N (N_max = {self.data['N_max']:.3g}) or compute (C_max = "
                     f"{self.data['C_max']:.3g} FLOPs), calibrated on "
                     f"{e.n_residuals} held-out runs of {e.n_cuts} cut(s)")
        front = self.data.get("isoflop_frontier")
        if front:
            ci = front.get("ci_a")
            lines.append(f"allocation from the runs' {front['budgets_used']} budget minima ([H] approach 2): N_opt = "
                         f"{front['k_N']:.3g} C^{front['a']:.3f}" + (f", a in [{ci[0]:.3f}, {ci[1]:.3f}] (95%)" if ci
                                                                     else "")
                         + ("" if self.data.get("allocation_check") else
                            "; plans from this forecast set it beside the laws' own N_opt"))
        if self.data.get("allocation_check"):
            lines.append(allocation_text(self.data["allocation_check"]))
        lines += [f"warning: {w}" for w in self._not_converged()]  # the fit's summary gives its verdict
        lines.append("validation (the forecast's law):")
        for row in self.validation:
            lines.append(f"  {row['candidate']} cut {row['cut']}: held out {row['held_out_rows']} run(s) at "
                         f"{self.audit['by']} >= {row['threshold']:.3g}: mean |error| "
                         f"{row['mean_abs_rel_error']:.3%}, worst {row['max_abs_rel_error']:.3%}")
        return "\n".join(lines)

    __str__ = summary

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _clean({
            "kind": JSON_KIND, "version": JSON_VERSION, "law": self.law, "combine": self.combine,
            "reason": self.reason, "data": self.data, "extrapolation_error": self.error.to_dict(),
            "members": {name: {"weight": w, "fit": f.to_dict(include_bootstrap=True)}
                        for name, (w, f) in self.members.items()},
            "alternatives": {name: {"weight": w, "fit": f.to_dict()} for name, (w, f) in self.alternatives.items()},
            "validation": self.validation, "audit": self.audit, "notes": self.notes,
        })

    def to_json(self, path: str | Path | None = None) -> str:
        return dump_json(self.to_dict(), path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "forecast JSON") -> Forecast:
        """A saved forecast; every key of the wrong type is an :class:`LmscaleError` naming it."""
        if not isinstance(data, Mapping) or data.get("kind") != JSON_KIND:
            kind = data.get("kind") if isinstance(data, Mapping) else None
            raise LmscaleError(f"{where}: not a forecast (kind = {kind!r}; expected {JSON_KIND!r})")
        for key in ("law", "members", "extrapolation_error", "data", "audit"):
            if key not in data:
                raise LmscaleError(f"{where}: missing key {key!r}")
        members = _weighted_fits(data["members"], f"{where}: members")
        alternatives = _weighted_fits(data.get("alternatives") or {}, f"{where}: alternatives")
        if not isinstance(data["law"], str) or data["law"] not in members:
            raise LmscaleError(f"{where}: law {data['law']!r} is not among its members")
        extent = data["data"]
        if not isinstance(extent, Mapping):
            raise LmscaleError(f"{where}: data = {extent!r}: expected an object with C_max (and N_max)")
        for key, required in (("C_max", True), ("N_max", False)):
            v = extent.get(key)
            if v is None and not required:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not (np.isfinite(v) and v > 0):
                raise LmscaleError(f"{where}: data.{key} = {v!r}: expected the fitted data's largest "
                                   f"{'compute' if key == 'C_max' else 'N'}, a positive number")
        for key in ("audit", "notes"):
            if data.get(key) is not None and not isinstance(data[key], Mapping):
                raise LmscaleError(f"{where}: {key} = {data[key]!r}: expected an object")
        audit = dict(data["audit"] or {})
        table = audit.get("table", [])
        if not (isinstance(table, list) and all(isinstance(row, Mapping) for row in table)):
            raise LmscaleError(f"{where}: audit.table: expected a list of rows (objects)")
        return cls(law=data["law"], members=members,
                   error=ExtrapolationError.from_dict(data["extrapolation_error"], where),
                   audit=audit, reason=str(data.get("reason", "")), data=dict(extent),
                   combine=str(data.get("combine", "select")), alternatives=alternatives,
                   notes=dict(data.get("notes") or {}))

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Forecast:
        data, where = _load_json(text_or_path)
        out = cls.from_dict(data, where)
        if where != "JSON text":
            out.notes["path"] = where
        return out

    def to_lawset(self) -> LawSet:
        """The chosen law as a law set for the planner, with the forecast's extent and error model."""
        fit = self.fit
        return LawSet(name=f"forecast:{self.law}", laws={fit.law: fit}, source="forecast",
                      extras={"forecast": {"law": self.law, "data": self.data,
                                           "extrapolation_error": self.error.to_dict(),
                                           "members": list(self.members),
                                           "alternatives": {name: {"weight": w, "law": f.law, "params": f.params}
                                                            for name, (w, f) in self.alternatives.items()}}})


def _weighted_fits(value: Any, where: str) -> dict[str, tuple[float, FitResult]]:
    """``{name: {"weight": w, "fit": {...}}}`` -> ``{name: (w, FitResult)}``, checked."""
    if not isinstance(value, Mapping):
        raise LmscaleError(f"{where}: expected an object of name -> {{weight, fit}}")
    out = {}
    for name, m in value.items():
        if not isinstance(m, Mapping) or "fit" not in m:
            raise LmscaleError(f"{where}.{name} needs a fit")
        w = m.get("weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, int | float) or not (np.isfinite(w) and w >= 0):
            raise LmscaleError(f"{where}.{name}.weight = {w!r}: expected a number >= 0")
        out[str(name)] = (float(w), FitResult.from_dict(m["fit"], f"{where}.{name}"))
    return out


def point_inputs(N, D=None, U=None, C=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """N, D (D = C / (6 N) where C is given) and U as arrays, checked: positive and finite."""
    if N is None:
        raise LmscaleError("predict: give N (parameters) and D (tokens) or C (FLOPs)")
    if D is None and C is None:
        raise LmscaleError("predict: give D (tokens) or C (FLOPs, D = C / (6 N))")
    N = np.atleast_1d(np.asarray(N, dtype=float))
    D = np.atleast_1d(np.asarray(D, dtype=float)) if D is not None else \
        np.atleast_1d(np.asarray(C, dtype=float)) / (6.0 * N)
    N, D = np.broadcast_arrays(N, D)
    for name, v in (("N", N), ("D", D)):
        bad = np.flatnonzero(~(np.isfinite(v) & (v > 0)))
        if len(bad):
            rows = ", ".join(str(i + 1) for i in bad[:5])
            raise LmscaleError(f"predict: {name} must be positive and finite; point(s) {rows} have "
                               f"{name} = {', '.join(f'{v[i]:g}' for i in bad[:5])}")
    if U is not None:
        U = np.broadcast_to(np.atleast_1d(np.asarray(U, dtype=float)), N.shape)
        if not np.all(np.isfinite(U) & (U > 0)):
            raise LmscaleError("predict: U (unique tokens) must be positive and finite")
    return N, D, U


def points_frame(points: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """N, D, U of a points table (columns N and D or C, optional U), checked."""
    return point_inputs(*_point_columns(points))


def _point_columns(points: pd.DataFrame) -> tuple[Any, Any, Any]:
    if not isinstance(points, pd.DataFrame):
        raise LmscaleError(f"points: expected a DataFrame with N and D (or C), got {type(points).__name__}")
    if "N" not in points.columns or not ({"D", "C"} & set(points.columns)):
        only_c = "C" in points.columns and "N" not in points.columns
        raise LmscaleError("points: need columns N and D, or N and C (then D = C / 6N); columns: "
                           f"{', '.join(map(str, points.columns))}"
                           + ("; for a compute budget alone, 'lmscale plan --compute C --law FORECAST.json' "
                              "gives the compute-optimal N, D and their loss" if only_c else ""))
    N = pd.to_numeric(points["N"], errors="coerce").to_numpy(dtype=float)
    D = pd.to_numeric(points["D"], errors="coerce").to_numpy(dtype=float) if "D" in points.columns \
        else np.full(len(N), np.nan)
    if "C" in points.columns:  # D = C / (6 N) where a point gives C instead of D
        with np.errstate(divide="ignore", invalid="ignore"):  # N <= 0: point_inputs names the row
            from_c = pd.to_numeric(points["C"], errors="coerce").to_numpy(dtype=float) / (6.0 * N)
        D = np.where(np.isnan(D), from_c, D)
    U = pd.to_numeric(points["U"], errors="coerce").to_numpy(dtype=float) if "U" in points.columns else None
    return N, D, U


__all__ = ["JSON_KIND", "N_DRAWS", "Forecast", "Prediction", "point_inputs", "points_frame"]
