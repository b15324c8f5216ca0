"""Fit objects: a user's fit and a published law share one type and one JSON.

:class:`FitResult` is one law with its parameters (and, when fitted, the
intervals, standard errors and goodness of fit). :class:`LawSet` is a named
collection of them: a catalog entry such as ``kaplan2020`` or the laws fitted
to one study. Both round-trip through JSON (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmscale.errors import LmscaleError
from lmscale.laws.forms import LawForm, get_form

JSON_VERSION = 1


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class FitResult:
    """One law with its parameters, as fitted or as published.

    Attributes:
        law: name of the law form (see ``lmscale.laws.FORMS``).
        params: natural parameters, e.g. ``{"E": 1.69, "A": 406.4, ...}``.
        ci: 95% (or ``ci_level``) intervals per parameter, when known.
        stderr: standard errors per parameter, when known.
        n_points: number of data points fitted (0 for published laws).
        stats: goodness of fit and settings: ``rmse_log``, ``r2``,
            ``objective``, ``huber_delta``, ``n_bootstrap``, ...
        source: ``"fit"`` or the citation of a published law.
        notes: how the inputs were counted and selected (accounting,
            selection rule, derived columns), units, equation.
        ci_level: coverage of ``ci``.
        bootstrap_params: parameter samples from the bootstrap (n, k), kept
            in memory for uncertainty propagation; not written to JSON unless
            asked.
    """

    law: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]] | None = None
    stderr: dict[str, float] | None = None
    n_points: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    source: str = "fit"
    notes: dict[str, Any] = field(default_factory=dict)
    ci_level: float = 0.95
    bootstrap_params: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.form.check_params(self.params)
        self.params = {k: float(v) for k, v in self.params.items()}

    @property
    def form(self) -> LawForm:
        return get_form(self.law)

    def predict(self, **inputs: Any) -> np.ndarray | float:
        """Evaluate the law, e.g. ``fit.predict(N=1e9, D=2e10)``."""
        return self.form.predict(self.params, **inputs)

    def predict_interval(self, level: float | None = None, **inputs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Percentile band of the prediction over the bootstrap samples."""
        if self.bootstrap_params is None or len(self.bootstrap_params) == 0:
            raise LmscaleError(f"law {self.law}: no bootstrap samples (fit with bootstrap > 0)")
        level = self.ci_level if level is None else level
        form = self.form
        preds = np.array([
            np.asarray(form.predict(dict(zip(form.params, row, strict=True)), **inputs))
            for row in self.bootstrap_params
        ])
        tail = (1.0 - level) / 2.0 * 100.0
        return np.nanpercentile(preds, tail, axis=0), np.nanpercentile(preds, 100.0 - tail, axis=0)

    # -- display ------------------------------------------------------------------
    def summary(self) -> str:
        form = self.form
        lines = [f"{form.title}  [{form.name}]  {form.formula}   ({form.equation})", f"source: {self.source}"]
        if self.n_points:
            lines.append(f"points: {self.n_points}")
        width = max(len(p) for p in form.params)
        pct = int(round(self.ci_level * 100))
        for name in form.params:
            row = f"  {name:<{width}} = {self.params[name]:.6g}"
            if self.stderr and name in self.stderr and self.stderr[name] is not None:
                row += f"  (se {self.stderr[name]:.3g})"
            if self.ci and name in self.ci and self.ci[name] is not None:
                lo, hi = self.ci[name]
                row += f"  {pct}% CI [{lo:.6g}, {hi:.6g}]"
            lines.append(row)
        shown = {k: v for k, v in self.stats.items() if isinstance(v, int | float | str)}
        if shown:
            lines.append("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
        return "\n".join(lines)

    __str__ = summary

    # -- JSON -----------------------------------------------------------------------
    def to_dict(self, include_bootstrap: bool = False) -> dict[str, Any]:
        form = self.form
        data: dict[str, Any] = {
            "kind": "fit",
            "version": JSON_VERSION,
            "law": self.law,
            "title": form.title,
            "equation": form.equation,
            "formula": form.formula,
            "units": dict(form.units),
            "params": dict(self.params),
            "ci": {k: list(v) for k, v in self.ci.items()} if self.ci else None,
            "ci_level": self.ci_level,
            "stderr": self.stderr,
            "n_points": self.n_points,
            "stats": self.stats,
            "source": self.source,
            "notes": self.notes,
        }
        if include_bootstrap and self.bootstrap_params is not None:
            data["bootstrap_params"] = self.bootstrap_params.tolist()
        return _clean(data)

    def to_json(self, path: str | Path | None = None, include_bootstrap: bool = False) -> str:
        text = json.dumps(self.to_dict(include_bootstrap), indent=2)
        if path is not None:
            _atomic_write(Path(path), text)
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "fit JSON") -> FitResult:
        for key in ("law", "params"):
            if key not in data:
                raise LmscaleError(f"{where}: missing key {key!r}")
        ci = data.get("ci")
        boot = data.get("bootstrap_params")
        try:
            return cls(
                law=data["law"],
                params=dict(data["params"]),
                ci={k: (tuple(v) if v is not None else None) for k, v in ci.items()} if ci else None,
                stderr=data.get("stderr"),
                n_points=int(data.get("n_points", 0)),
                stats=dict(data.get("stats") or {}),
                source=data.get("source", "fit"),
                notes=dict(data.get("notes") or {}),
                ci_level=float(data.get("ci_level", 0.95)),
                bootstrap_params=np.asarray(boot, dtype=float) if boot is not None else None,
            )
        except LmscaleError as exc:
            raise LmscaleError(f"{where}: {exc}") from None

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> FitResult:
        data, where = _load_json(text_or_path)
        if data.get("kind") == "lawset":
            raise LmscaleError(f"{where}: holds a set of laws; use LawSet.from_json")
        return cls.from_dict(data, where)


@dataclass
class LawSet:
    """A named set of laws: a published catalog entry or a study's fits.

    Attributes:
        name: e.g. ``kaplan2020`` or the study's name.
        laws: law name -> FitResult (``kaplan_n``, ``bcrit``, ...).
        source: citation or ``"fit"``.
        extras: other published relations that are not law forms, such as
            [K] table 6's compute-efficient allocation, with their units.
        notes: free-form provenance.
    """

    name: str
    laws: dict[str, FitResult] = field(default_factory=dict)
    source: str = "fit"
    extras: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def __contains__(self, law: str) -> bool:
        return law in self.laws

    def get(self, law: str, purpose: str | None = None) -> FitResult:
        """The fit of ``law``; a clear error when this set lacks it."""
        if law not in self.laws:
            need = f" (needed for {purpose})" if purpose else ""
            have = ", ".join(sorted(self.laws)) or "none"
            raise LmscaleError(f"law set {self.name!r} has no {law} law{need}; it has: {have}")
        return self.laws[law]

    def summary(self) -> str:
        parts = [f"{self.name}  ({self.source})"]
        parts += [fit.summary() for fit in self.laws.values()]
        for key, value in self.extras.items():
            parts.append(f"{key}: {json.dumps(_clean(value))}")
        return "\n\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return _clean({
            "kind": "lawset", "version": JSON_VERSION, "name": self.name, "source": self.source,
            "laws": {k: v.to_dict() for k, v in self.laws.items()},
            "extras": self.extras, "notes": self.notes,
        })

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            _atomic_write(Path(path), text)
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "law set JSON") -> LawSet:
        if data.get("kind") != "lawset":  # a single fit: a set of one
            fit = FitResult.from_dict(data, where)
            return cls(name=data.get("name", fit.law), laws={fit.law: fit}, source=fit.source)
        laws = {k: FitResult.from_dict(v, f"{where}: laws.{k}") for k, v in (data.get("laws") or {}).items()}
        return cls(
            name=data.get("name", "laws"), laws=laws, source=data.get("source", "fit"),
            extras=dict(data.get("extras") or {}), notes=dict(data.get("notes") or {}),
        )

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> LawSet:
        data, where = _load_json(text_or_path)
        return cls.from_dict(data, where)


def _load_json(text_or_path: str | Path) -> tuple[dict[str, Any], str]:
    text = str(text_or_path)
    if isinstance(text_or_path, Path) or not text.lstrip().startswith("{"):
        path = Path(text_or_path)
        if not path.exists():
            raise LmscaleError(f"{path}: no such file")
        where, text = str(path), path.read_text()
    else:
        where = "JSON text"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LmscaleError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise LmscaleError(f"{where}: expected a JSON object")
    return data, where


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
