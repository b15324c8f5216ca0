"""The gradient noise scale B_simple (McCandlish et al. 2018; [K] section 5.1).

Without per-example gradients, two batch sizes ``B_small < B_big`` and the
squared norms of their mean gradients give unbiased estimates

    |G|^2     ~= (B_big |g_big|^2 - B_small |g_small|^2) / (B_big - B_small)
    tr(Sigma) ~= (|g_small|^2 - |g_big|^2) / (1 / B_small - 1 / B_big)

and ``B_simple = tr(Sigma) / |G|^2``. The trainer measures |g_small|^2 on
every part of a measuring step's batch (each pass's gradient, read by a hook
before it is accumulated) and averages them: with two parts g_0, g_1 and
B_big = 2 B_small the estimates become ``tr(Sigma) ~ B_small |g_0 - g_1|^2 / 2``
(never negative) and ``|G|^2 ~ <g_0, g_1>``, of lower variance than from
one part. Each squared norm is averaged with a
bias-corrected exponential moving average *before* the ratio is taken (the
ratio of noisy estimates is biased and often negative).

For a low-variance estimate the two norms are also averaged plainly over a
*window* of steps (the trainer closes one at every log-spaced curve point,
so a late window spans a third of the steps run so far), and the window's
per-step spread gives the estimate's standard error by the delta method
(:func:`noise_scale_se`, steps treated as independent draws of the two
mini-batch norms).

The estimator only uses ``+ - * /``, so its state may be Python floats or
0-d tensors: the trainer keeps it on the device and reads it only at curve
points (no host synchronisation per step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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


def noise_scale_se(mean_small: float, mean_big: float, cov: tuple[float, float, float], n: int,
                   b_small: float, b_big: float) -> float | None:
    """Standard error of B_simple from the means of n per-step norms (delta method).

    ``cov`` = (var |g_small|^2, var |g_big|^2, cov) of single steps; the means
    have covariance cov / n. None when undefined (n < 2, |G|^2 <= 0).
    """
    if n < 2:
        return None
    k = 1.0 / (1.0 / b_small - 1.0 / b_big)
    s = k * (mean_small - mean_big)
    g2 = (b_big * mean_big - b_small * mean_small) / (b_big - b_small)
    if not (g2 > 0 and s > 0):
        return None
    # B = s / g2; gradients with respect to the two means
    ds = (k, -k)
    dg = (-b_small / (b_big - b_small), b_big / (b_big - b_small))
    grad = tuple((ds[i] * g2 - s * dg[i]) / g2**2 for i in range(2))
    vx, vy, cxy = cov
    var = (grad[0] ** 2 * vx + grad[1] ** 2 * vy + 2 * grad[0] * grad[1] * cxy) / n
    return math.sqrt(var) if var >= 0 else None


_WINDOW_KEYS = ("w_small", "w_big", "w_small2", "w_big2", "w_cross")


@dataclass
class NoiseScaleEstimator:
    """EMA of |g_small|^2 and |g_big|^2 and the noise scale they imply, plus a
    window of plain sums for the low-variance estimate and its standard error.

    Attributes:
        b_small: the small batch size (tokens, or examples).
        b_big: the big batch size, > b_small.
        decay: EMA decay per update (0.9 averages over about 10 updates).
        ema_small, ema_big: raw (not bias-corrected) EMA sums.
        weight: 1 - decay^updates, the bias correction.
        w_small, w_big, w_small2, w_big2, w_cross: sums over the current
            window of x = |g_small|^2, y = |g_big|^2, x^2, y^2 and x y.
        w_steps: updates in the current window.
    """

    b_small: float
    b_big: float
    decay: float = 0.95
    ema_small: Any = 0.0
    ema_big: Any = 0.0
    weight: float = 0.0
    w_small: Any = None
    w_big: Any = None
    w_small2: Any = None
    w_big2: Any = None
    w_cross: Any = None
    w_steps: int = field(default=0)

    def __post_init__(self) -> None:
        if not 0 < self.b_small < self.b_big:
            raise ValueError(f"need 0 < b_small < b_big, got {self.b_small}, {self.b_big}")
        for key in _WINDOW_KEYS:
            if getattr(self, key) is None:
                setattr(self, key, self.ema_small * 0.0)  # same kind (float or tensor) as the EMA

    def update(self, g_small_sq: Any, g_big_sq: Any) -> None:
        """Add one measurement of the two squared mean-gradient norms."""
        self.ema_small = self.decay * self.ema_small + (1.0 - self.decay) * g_small_sq
        self.ema_big = self.decay * self.ema_big + (1.0 - self.decay) * g_big_sq
        self.weight = self.decay * self.weight + (1.0 - self.decay)
        self.w_small = self.w_small + g_small_sq
        self.w_big = self.w_big + g_big_sq
        self.w_small2 = self.w_small2 + g_small_sq * g_small_sq
        self.w_big2 = self.w_big2 + g_big_sq * g_big_sq
        self.w_cross = self.w_cross + g_small_sq * g_big_sq
        self.w_steps += 1

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

    def window(self) -> dict[str, Any]:
        """The current window: ``steps``, the mean norms, B_simple from them and its standard error."""
        n = self.w_steps
        if n == 0:
            return {"steps": 0, "grad_sq_small": None, "grad_sq_big": None, "noise_scale": None, "se": None}
        x, y = float(self.w_small) / n, float(self.w_big) / n
        out: dict[str, Any] = {"steps": n, "grad_sq_small": x, "grad_sq_big": y,
                               "noise_scale": simple_noise_scale(x, y, self.b_small, self.b_big), "se": None}
        if n >= 2 and out["noise_scale"] is not None:
            scale = n / (n - 1)
            vx = (float(self.w_small2) / n - x * x) * scale
            vy = (float(self.w_big2) / n - y * y) * scale
            cxy = (float(self.w_cross) / n - x * y) * scale
            out["se"] = noise_scale_se(x, y, (vx, vy, cxy), n, self.b_small, self.b_big)
        return out

    def reset_window(self) -> None:
        """Start a new window (the EMA goes on)."""
        for key in _WINDOW_KEYS:
            setattr(self, key, getattr(self, key) * 0.0)
        self.w_steps = 0

    def state_dict(self) -> dict[str, float]:
        state = {"ema_small": float(self.ema_small), "ema_big": float(self.ema_big),
                 "weight": float(self.weight), "w_steps": self.w_steps}
        state.update({key: float(getattr(self, key)) for key in _WINDOW_KEYS})
        return state

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore the sums, keeping their type (float or tensor); states without a window start one."""
        for key in ("ema_small", "ema_big", *_WINDOW_KEYS):
            current = getattr(self, key)
            value = float(state.get(key, 0.0))
            if hasattr(current, "fill_"):
                current.fill_(value)
            else:
                setattr(self, key, value)
        self.weight = float(state["weight"])
        self.w_steps = int(state.get("w_steps", 0))
