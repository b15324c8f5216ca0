"""Training engine: the recipe of [K] section 7, measured at every step that matters.

``TrainConfig`` and ``RunRecord`` are pure; ``train(config)`` imports torch.
"""

from __future__ import annotations

from typing import Any

from lmscale.training.config import TrainConfig
from lmscale.training.record import CurvePoint, RunRecord

__all__ = ["CurvePoint", "RunRecord", "TrainConfig", "train"]


def train(config: TrainConfig, **kwargs: Any) -> RunRecord:
    """Train one run and return its record (see ``lmscale.training.trainer``)."""
    from lmscale.extras import TRAIN_MODULES, require

    require(*TRAIN_MODULES, what="training")
    from lmscale.training.trainer import train as _train

    return _train(config, **kwargs)
