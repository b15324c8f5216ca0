"""The catalog of published laws: each a :class:`LawSet` exactly like a user's fit.

Entries (``names()``): ``kaplan2020`` ([K] sections 2-5 and table 6),
``hoffmann2022`` ([H] approach 3, unrounded), ``hoffmann2022-rounded``
([H] eq. 10 as printed), ``besiroglu2024`` (the Epoch AI refit, with its
standard errors and bootstrap intervals) and ``muennighoff2023`` (the
data-constrained form). The constants live in ``published_laws.json``
beside this module, as printed, each with the equation or table it comes
from; constants per PF-day are converted to FLOPs here, so every law takes
C in FLOPs.

``resolve("kaplan2020")`` gives a catalog entry, ``resolve("fit.json")``
a user's fit (a FitResult or LawSet JSON, or a saved forecast), so the
planner treats them alike.
"""

from __future__ import annotations

import copy
import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from lmscale.accounting import PF_DAY
from lmscale.errors import LmscaleError
from lmscale.laws import data_constrained as _data_constrained  # noqa: F401  (registers its form)
from lmscale.laws.result import FitResult, LawSet

DATA_FILE = "published_laws.json"


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    text = resources.files("lmscale.laws").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def names() -> list[str]:
    """Names of the published law sets, in catalog order."""
    return list(_raw())


def _fit(law: str, entry: dict[str, Any], source: str) -> FitResult:
    params = {k: math.exp(v) for k, v in entry.get("log_params", {}).items()}
    params.update(entry.get("params", {}))
    published = {k: f"{params[k]:g} PF-days" for k in entry.get("pf_day_params", [])}
    for k in published:
        params[k] = params[k] * PF_DAY
    notes: dict[str, Any] = {"where": entry["where"]}
    if published:
        notes["published_in_pf_days"] = published
        notes["converted"] = "x 8.64e19 FLOPs per PF-day: C in FLOPs"
    if entry.get("log_params"):
        notes["published_as_logs"] = dict(entry["log_params"])
    if entry.get("ci_method"):
        notes["ci_method"] = entry["ci_method"]
    ci = {k: tuple(v) for k, v in entry["ci"].items()} if entry.get("ci") else None
    return FitResult(
        law=law, params=params, ci=ci, stderr=entry.get("stderr"),
        n_points=int(entry.get("n_points", 0)), source=source, notes=notes,
    )


def load(name: str) -> LawSet:
    """The published law set ``name`` (a fresh copy); the error lists the known ones."""
    raw = _raw()
    if name not in raw:
        raise LmscaleError(f"unknown law set {name!r}; known: {', '.join(raw)} (or a fit JSON file)")
    entry = raw[name]
    laws = {law: _fit(law, spec, entry["source"]) for law, spec in entry["laws"].items()}
    extras: dict[str, Any] = {}
    if "allocation" in entry:
        allocation = copy.deepcopy(entry["allocation"])
        allocation["C_unit_flops"] = PF_DAY if allocation.get("C_unit") == "PF-day" else 1.0
        extras["allocation"] = allocation
    if "published" in entry:
        extras["published"] = copy.deepcopy(entry["published"])
    return LawSet(
        name=name, laws=laws, source=entry["source"], extras=extras,
        notes={"title": entry["title"], "url": entry["url"], "catalog": "lmscale.laws.catalog"},
    )


def resolve(spec: str | Path | LawSet | FitResult) -> LawSet:
    """A catalog name, a fit JSON path (FitResult or LawSet), or a fit object -> LawSet."""
    if isinstance(spec, LawSet):
        return spec
    if isinstance(spec, FitResult):
        return LawSet(name=spec.law, laws={spec.law: spec}, source=spec.source)
    text = str(spec).strip()
    if text in _raw():
        return load(text)
    if "\x00" in text:
        raise LmscaleError(f"unknown law {text!r}: neither a catalog name nor a file name")
    path = Path(text)
    if path.suffix.lower() == ".json" or path.exists():
        if path.exists() and _kind(path) == "forecast":  # a saved forecast: its chosen law and error model
            from lmscale.laws.forecast import Forecast

            return Forecast.from_json(path).to_lawset()
        laws = LawSet.from_json(path)
        if json.loads(path.read_text(encoding="utf-8")).get("kind") != "lawset" or not laws.name:
            laws.name = path.stem  # a single fit is named after its file
        return laws
    raise LmscaleError(f"unknown law {text!r}; known: {', '.join(_raw())} (or a fit JSON file)")


def _kind(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # LawSet.from_json gives the clear error
    return data.get("kind") if isinstance(data, dict) else None


def describe() -> list[dict[str, Any]]:
    """One row per catalog entry: name, title, source, laws and extras it holds."""
    rows = []
    for name, entry in _raw().items():
        rows.append({
            "name": name, "title": entry["title"], "source": entry["source"], "url": entry["url"],
            "laws": list(entry["laws"]),
            "extras": [k for k in ("allocation", "published") if k in entry],
        })
    return rows


__all__ = ["DATA_FILE", "describe", "load", "names", "resolve"]
