"""Callbacks for the trainers people already run: their runs land in an lmscale store as they train.

- :class:`lmscale.integrations.hf.LmscaleTrainerCallback`: ``transformers.Trainer``
  (``pip install 'lmscale[hf]'``).
- :class:`lmscale.integrations.lightning.LmscaleLightningCallback`: PyTorch
  Lightning (``pip install 'lmscale[lightning]'``).

Both count N on the model with :mod:`lmscale.accounting`, count tokens from
the batches, and measure the loss at the log-spaced steps lmscale's own
trainer uses (:class:`lmscale.integrations.recorder.CurveRecorder`).
Importing this package imports neither framework.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LmscaleTrainerCallback": "lmscale.integrations.hf",
    "LmscaleLightningCallback": "lmscale.integrations.lightning",
    "CurveRecorder": "lmscale.integrations.recorder",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lmscale.integrations' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
