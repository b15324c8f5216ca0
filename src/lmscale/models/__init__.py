"""The model family of [K]: Transformer, LSTM and Universal Transformer.

``ModelSpec`` (pure) describes a shape; ``build_model(spec)`` (torch) makes
the module; ``shape_for_params`` and ``paper_learning_rate`` (pure, in
``lmscale.models.shapes``) pick a shape and its [K] learning rate.
Importing this package does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from lmscale.models.spec import ARCHITECTURES, ModelSpec

__all__ = ["ARCHITECTURES", "ModelSpec", "build_model", "paper_learning_rate", "shape_for_params"]

# Loaded on first use: lmscale.models.shapes imports lmscale.accounting, which imports this package.
_LAZY = {"shape_for_params", "paper_learning_rate"}


def build_model(spec: ModelSpec) -> Any:
    """Instantiate the torch module for ``spec`` (imports torch)."""
    from lmscale.models.factory import build_model as _build

    return _build(spec)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("lmscale.models.shapes"), name)
    raise AttributeError(f"module 'lmscale.models' has no attribute {name!r}")
