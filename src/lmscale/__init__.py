"""lmscale: scaling laws for neural language models, as software.

Train families of language models across size, data and compute; measure
their loss the way Kaplan et al. 2020 [K] do; fit the power laws (and the
Chinchilla refinement of Hoffmann et al. 2022 [H]) with honest uncertainty;
and use the fitted laws to predict loss and plan compute.

``import lmscale as ls`` is cheap: sub-packages load on first use, and
``ls.laws`` / ``ls.accounting`` never import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "accounting", "data", "laws", "models", "training", "sweeps", "store", "report",
    "errors", "datasets",
}
# Names re-exported lazily from sub-packages: name -> "module:attribute".
_EXPORTS = {
    "fit": "lmscale.laws:fit",
    "forecast": "lmscale.laws.forecast:forecast",
    "Forecast": "lmscale.laws.forecast:Forecast",
    "FitResult": "lmscale.laws:FitResult",
    "ModelSpec": "lmscale.models.spec:ModelSpec",
    "LmscaleError": "lmscale.errors:LmscaleError",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name].split(":")
        return getattr(importlib.import_module(module), attr)
    if name == "datasets":
        return importlib.import_module("lmscale.laws.datasets")
    if name in _SUBMODULES:
        return importlib.import_module(f"lmscale.{name}")
    raise AttributeError(f"module 'lmscale' has no attribute {name!r}")


__all__ = ["__version__", *sorted(_EXPORTS)]
