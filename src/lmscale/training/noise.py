"""The gradient noise scale B_simple (McCandlish et al. 2018; [K] section 5.1).

Without per-example gradients, two batch sizes ``B_small < B_big`` and the
squared norms of their mean gradients give unbiased estimates

    |G|^2     ~= (B_big |g_big|^2 - B_small |g_small|^2) / (B_big - B_small)
    tr(Sigma) ~= (|g_small|^2 - |g_big|^2) / (1 / B_small - 1 / B_big)

and ``B_simple = tr(Sigma) / |G|^2``. Each squared norm is averaged with a
bias-corrected exponential moving average *before* the ratio is taken (the
ratio of noisy estimates is biased and often negative).

The estimator only uses ``+ - * /``, so its state may be Python floats or
0-d tensors: the trainer keeps it on the device and reads it only at curve
points (no host synchronisation per step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def true_grad_sq(g_small_sq: Any, g_big_sq: Any, b_small: float, b_big: float) -> Any:
    """Unbiased |G|^2 from the squared mean-gradient norms at two batch sizes."""
    return (b_big * g_big_sq - b_small * g_small_sq) / (b_big - b_small)


def trace_sigma(g_small_sq: Any, g_big_sq: Any, b_small: float, b_big: float) -> Any:
    """Unbiased tr(Sigma), the per-example gradient variance summed over parameters."""
    return (g_small_sq - g_big_sq) / (1.0 / b_small - 1.0 / b_big)


def simple_noise_scale(g_small_sq: float, g_big_sq: float, b_small: float, b_big: float) -> float | None:
    """B_simple = tr(Sigma) / |G|^2 in the units of the batch sizes; ``None`` if undefined."""
    g2 = float(true_grad_sq(g_small_sq, g_big_sq, b_small, b_big))
    s = float(trace_sigma(g_small_sq, g_big_sq, b_small, b_big))
    if not (g2 > 0.0 and s == s) or s < 0.0:
        return None
    return s / g2


@dataclass
class NoiseScaleEstimator:
    """EMA of |g_small|^2 and |g_big|^2 and the noise scale they imply.

    Attributes:
        b_small: the small batch size (tokens, or examples).
        b_big: the big batch size, > b_small.
        decay: EMA decay per update (0.9 averages over about 10 updates).
        ema_small, ema_big: raw (not bias-corrected) EMA sums.
        weight: 1 - decay^updates, the bias correction.
    """

    b_small: float
    b_big: float
    decay: float = 0.95
    ema_small: Any = 0.0
    ema_big: Any = 0.0
    weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.b_small < self.b_big:
            raise ValueError(f"need 0 < b_small < b_big, got {self.b_small}, {self.b_big}")

    def update(self, g_small_sq: Any, g_big_sq: Any) -> None:
        """Add one measurement of the two squared mean-gradient norms."""
        self.ema_small = self.decay * self.ema_small + (1.0 - self.decay) * g_small_sq
        self.ema_big = self.decay * self.ema_big + (1.0 - self.decay) * g_big_sq
        self.weight = self.decay * self.weight + (1.0 - self.decay)

    @property
    def grad_sq_small(self) -> float | None:
        """Bias-corrected EMA of |g_small|^2."""
        return float(self.ema_small) / self.weight if self.weight > 0 else None

    @property
    def grad_sq_big(self) -> float | None:
        """Bias-corrected EMA of |g_big|^2."""
        return float(self.ema_big) / self.weight if self.weight > 0 else None

    def noise_scale(self) -> float | None:
        """B_simple from the averaged norms, or ``None`` before any update."""
        if self.weight <= 0:
            return None
        return simple_noise_scale(self.grad_sq_small, self.grad_sq_big, self.b_small, self.b_big)

    def state_dict(self) -> dict[str, float]:
        return {"ema_small": float(self.ema_small), "ema_big": float(self.ema_big),
                "weight": float(self.weight)}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore the EMA sums, keeping their type (float or tensor)."""
        for key in ("ema_small", "ema_big"):
            current = getattr(self, key)
            value = float(state[key])
            if hasattr(current, "fill_"):
                current.fill_(value)
            else:
                setattr(self, key, value)
        self.weight = float(state["weight"])
