"""The model family of [K]: Transformer, LSTM and Universal Transformer.

``ModelSpec`` (pure) describes a shape; ``build_model(spec)`` (torch) makes
the module. Importing this package does not import torch.
"""

from __future__ import annotations

from typing import Any

from lmscale.models.spec import ARCHITECTURES, ModelSpec

__all__ = ["ARCHITECTURES", "ModelSpec", "build_model"]


def build_model(spec: ModelSpec) -> Any:
    """Instantiate the torch module for ``spec`` (imports torch)."""
    from lmscale.models.factory import build_model as _build

    return _build(spec)
