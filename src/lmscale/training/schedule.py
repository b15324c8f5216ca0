"""Learning-rate schedules ([K] section 7 and appendix D).

Pure Python. Step ``s`` (0-based) is the update about to be applied; its
learning rate is ``learning_rate(s, ...)``. With warm-up ``W``, total steps
``S``, peak ``p`` and floor ``m = min_lr_ratio * p``:

- warm-up (every schedule): ``lr(s) = p * (s + 1) / W`` for ``s < W``;
- ``cosine`` ([K]): ``lr(s) = m + (p - m) * (1 + cos(pi * (s - W) / (S - W))) / 2``;
- ``wsd`` (warm-up, stable, decay): ``p`` until ``S_d = S - round(f * S)``
  (``f`` = decay fraction), then ``lr(s) = p - (p - m) * (s - S_d) / (S - S_d)``;
- ``constant``: ``p``.

Both decays reach ``m`` at ``s = S`` (the step after the last one).
"""

from __future__ import annotations

import math

from lmscale.errors import LmscaleError


def default_warmup_steps(total_steps: int) -> int:
    """[K]'s 3000 warm-up steps, capped at 5% of a short run (at least 1)."""
    return max(1, min(3000, int(0.05 * total_steps)))


def learning_rate(
    step: int,
    total_steps: int,
    peak: float,
    *,
    schedule: str = "cosine",
    warmup_steps: int = 0,
    decay_fraction: float = 0.2,
    min_lr_ratio: float = 0.0,
) -> float:
    """Learning rate of update ``step`` (0-based) out of ``total_steps``."""
    if total_steps < 1:
        raise LmscaleError(f"total_steps = {total_steps}: expected at least one step")
    warmup = min(max(0, warmup_steps), total_steps)
    floor = min_lr_ratio * peak
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        span = total_steps - warmup
        progress = min(1.0, (step - warmup) / span) if span > 0 else 1.0
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay_start = max(warmup, total_steps - int(round(decay_fraction * total_steps)))
        if step < decay_start:
            return peak
        span = total_steps - decay_start
        progress = min(1.0, (step - decay_start) / span) if span > 0 else 1.0
        return peak - (peak - floor) * progress
    raise LmscaleError(f"schedule = {schedule!r}: expected cosine, wsd or constant")
