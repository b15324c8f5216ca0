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
from lmscale.files import write_text_atomic
from lmscale.laws.forms import LawForm, get_form
from lmscale.laws.intervals import central_band

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
        identification: whether the points identify the law, by the rule of
            :mod:`lmscale.laws.identification` (``identified``, ``failures``, ...).
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
    identification: dict[str, Any] | None = None

    @property
    def identified(self) -> bool | None:
        """The verdict of :mod:`lmscale.laws.identification` (None when not assessed)."""
        return None if not self.identification else bool(self.identification.get("identified"))

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
        return central_band(preds, level, nan=True)

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
        if self.identification:
            from lmscale.laws.identification import short

            lines.append(short(self.identification))
            lines += [f"  - {why}" for why in self.identification.get("failures", [])[3:]]
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
            "ci": {k: None if v is None else list(v) for k, v in self.ci.items()} if self.ci else None,
            "ci_level": self.ci_level,
            "stderr": self.stderr,
            "n_points": self.n_points,
            "stats": self.stats,
            "source": self.source,
            "notes": self.notes,
        }
        if self.identification is not None:
            data["identification"] = self.identification
        if include_bootstrap and self.bootstrap_params is not None:
            data["bootstrap_params"] = self.bootstrap_params.tolist()
        return _clean(data)

    def to_json(self, path: str | Path | None = None, include_bootstrap: bool = False) -> str:
        return dump_json(self.to_dict(include_bootstrap), path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "fit JSON") -> FitResult:
        """A fit from its JSON object; every bad key is an :class:`LmscaleError` naming it."""
        if not isinstance(data, Mapping):
            raise LmscaleError(f"{where}: expected a JSON object with law and params, got {_kind(data)}")
        for key in ("law", "params"):
            if key not in data:
                raise LmscaleError(f"{where}: missing key {key!r}")
        law = data["law"]
        if not isinstance(law, str):
            raise LmscaleError(f"{where}: law = {law!r}: expected the name of a law form")
        params = _numbers(data["params"], f"{where}: params")
        if any(v is None for v in params.values()):
            raise LmscaleError(f"{where}: params: every parameter needs a finite number "
                               f"({', '.join(k for k, v in params.items() if v is None)} has none)")
        ci = data.get("ci")
        if ci is not None:
            if not isinstance(ci, Mapping):
                raise LmscaleError(f"{where}: ci = {ci!r}: expected an object of [low, high] pairs")
            ci = {str(k): _pair(v, f"{where}: ci.{k}") for k, v in ci.items()}
        stderr = data.get("stderr")
        stderr = None if stderr is None else _numbers(stderr, f"{where}: stderr")
        n_points = data.get("n_points", 0)
        if isinstance(n_points, bool) or not isinstance(n_points, int | float) or not (
                math.isfinite(n_points) and n_points >= 0 and n_points == int(n_points)):
            raise LmscaleError(f"{where}: n_points = {n_points!r}: expected a whole number >= 0")
        ci_level = data.get("ci_level", 0.95)
        if isinstance(ci_level, bool) or not isinstance(ci_level, int | float) or not 0 < ci_level < 1:
            raise LmscaleError(f"{where}: ci_level = {ci_level!r}: expected a number in (0, 1)")
        source = _checked_objects_and_source(data, ("stats", "notes"), where)
        boot = data.get("bootstrap_params")
        if boot is not None:
            try:
                boot = np.asarray(boot, dtype=float)
            except (TypeError, ValueError, OverflowError):
                raise LmscaleError(f"{where}: bootstrap_params: expected rows of numbers") from None
            if boot.ndim != 2 or boot.shape[1] != len(params):
                raise LmscaleError(f"{where}: bootstrap_params: expected rows of {len(params)} numbers "
                                   f"(one per parameter), got shape {boot.shape}")
        identification = data.get("identification")
        if identification is not None and not isinstance(identification, Mapping):
            raise LmscaleError(f"{where}: identification = {identification!r}: expected an object")
        try:
            return cls(law=law, params=params, ci=ci, stderr=stderr, n_points=int(n_points),
                       stats=dict(data.get("stats") or {}), source=source,
                       notes=dict(data.get("notes") or {}), ci_level=float(ci_level), bootstrap_params=boot,
                       identification=identification)
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
        return dump_json(self.to_dict(), path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "law set JSON") -> LawSet:
        """A law set (or a single fit, as a set of one) from JSON; bad keys are named."""
        if not isinstance(data, Mapping):
            raise LmscaleError(f"{where}: expected a JSON object, got {_kind(data)}")
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise LmscaleError(f"{where}: name = {name!r}: expected a string")
        if data.get("kind") != "lawset":  # a single fit: a set of one
            fit = FitResult.from_dict(data, where)
            return cls(name=name or fit.law, laws={fit.law: fit}, source=fit.source)
        laws = data.get("laws") or {}
        if not isinstance(laws, Mapping):
            raise LmscaleError(f"{where}: laws = {laws!r}: expected an object of law name -> fit")
        fits = {str(key): FitResult.from_dict(value, f"{where}: laws.{key}") for key, value in laws.items()}
        source = _checked_objects_and_source(data, ("extras", "notes"), where)
        extras = dict(data.get("extras") or {})
        if "allocation" in extras:
            _check_allocation(extras["allocation"], f"{where}: extras.allocation")
        return cls(name=name or "laws", laws=fits, source=source, extras=extras,
                   notes=dict(data.get("notes") or {}))

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> LawSet:
        data, where = _load_json(text_or_path)
        return cls.from_dict(data, where)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "true/false"}.get(
        type(value), "a number")


def _numbers(value: Any, where: str) -> dict[str, float | None]:
    """An object of name -> finite number (``None`` where the JSON has null, NaN or infinity)."""
    if not isinstance(value, Mapping):
        raise LmscaleError(f"{where}: expected an object of name -> number, got {_kind(value)}")
    out: dict[str, float | None] = {}
    for key, v in value.items():
        if v is None:
            out[str(key)] = None
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise LmscaleError(f"{where}.{key} = {v!r}: expected a number")
        out[str(key)] = float(v) if math.isfinite(v) else None
    return out


def _pair(value: Any, where: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if not (isinstance(value, list | tuple) and len(value) == 2 and all(
            x is None or (isinstance(x, int | float) and not isinstance(x, bool)) for x in value)):
        raise LmscaleError(f"{where} = {value!r}: expected [low, high]")
    lo, hi = (math.nan if x is None else float(x) for x in value)
    return lo, hi


def _check_allocation(alloc: Any, where: str) -> None:
    """``extras.allocation``: relations y = coef (C / C_unit)^exponent with finite numbers."""
    if not isinstance(alloc, Mapping):
        raise LmscaleError(f"{where}: expected an object with relations")
    unit = alloc.get("C_unit_flops", 1.0)
    if isinstance(unit, bool) or not isinstance(unit, int | float) or not (math.isfinite(unit) and unit > 0):
        raise LmscaleError(f"{where}.C_unit_flops = {unit!r}: expected FLOPs per unit, a positive number")
    relations = alloc.get("relations")
    if not isinstance(relations, Mapping):
        raise LmscaleError(f"{where}.relations = {relations!r}: expected an object of name -> {{coef, exponent}}")
    for key, rel in relations.items():
        if not isinstance(rel, Mapping):
            raise LmscaleError(f"{where}.relations.{key} = {rel!r}: expected an object with coef and exponent")
        nums = _numbers({k: rel.get(k) for k in ("coef", "exponent")}, f"{where}.relations.{key}")
        if nums["coef"] is None or nums["exponent"] is None:
            raise LmscaleError(f"{where}.relations.{key}: needs a finite coef and exponent")
    for key in ("where", "C_unit"):
        if key in alloc and not isinstance(alloc[key], str):
            raise LmscaleError(f"{where}.{key} = {alloc[key]!r}: expected a string")


def _load_json(text_or_path: str | Path) -> tuple[dict[str, Any], str]:
    text = str(text_or_path)
    if isinstance(text_or_path, Path) or not text.lstrip().startswith("{"):
        if "\x00" in text:
            raise LmscaleError(f"{text!r}: not a file name (it holds a NUL character)")
        path = Path(text_or_path)
        if not path.is_file():
            raise LmscaleError(f"{path}: no such file" + (" (a folder)" if path.is_dir() else ""))
        try:
            where, text = str(path), path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LmscaleError(f"{path}: not readable as UTF-8 JSON ({exc})") from None
    else:
        where = "JSON text"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LmscaleError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise LmscaleError(f"{where}: expected a JSON object")
    return data, where


def _checked_objects_and_source(data: Mapping[str, Any], objects: tuple[str, ...], where: str) -> str:
    """Check that each of ``objects`` is absent, null or a JSON object; return ``source``
    (default ``fit``), checked to be a string."""
    for key in objects:
        if data.get(key) is not None and not isinstance(data[key], Mapping):
            raise LmscaleError(f"{where}: {key} = {data[key]!r}: expected an object")
    source = data.get("source", "fit")
    if not isinstance(source, str):
        raise LmscaleError(f"{where}: source = {source!r}: expected a string")
    return source


def dump_json(data: Mapping[str, Any], path: str | Path | None = None) -> str:
    """``data`` as indented JSON text, also written atomically to ``path`` when given."""
    text = json.dumps(data, indent=2)
    if path is not None:
        write_text_atomic(path, text)
    return text
