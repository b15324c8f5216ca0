"""The options of a compute plan and the device presets it prices time on.

Kept apart from :mod:`lmscale.laws.planner` (which needs scipy) so that a
command line can offer the choices and defaults without importing the
planner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lmscale.errors import LmscaleError

__all__ = ["DEVICES", "REQUIRABLE", "Device", "PlanOptions", "positive"]


# ---------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """An accelerator preset: dense (no sparsity) peak FLOP/s at its training precision."""

    name: str
    peak_flops: float
    precision: str
    note: str = ""


#: Datasheet dense peaks; real runs reach a fraction of it (the MFU).
DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("h100", 989e12, "bf16", "H100 SXM, dense tensor cores"),
    Device("h200", 989e12, "bf16", "H200 SXM: H100 compute, more memory"),
    Device("b200", 2250e12, "bf16", "B200, dense"),
    Device("a100", 312e12, "bf16", "A100 SXM/PCIe, dense tensor cores"),
    Device("v100", 125e12, "fp16", "V100 SXM2 tensor cores"),
    Device("mi300x", 1307e12, "bf16", "AMD MI300X, dense"),
    Device("tpu-v4", 275e12, "bf16", "TPU v4 chip"),
    Device("tpu-v5e", 197e12, "bf16", "TPU v5e chip"),
    Device("tpu-v5p", 459e12, "bf16", "TPU v5p chip"),
    Device("cpu", 1e12, "fp32", "nominal many-core server CPU; measure yours and pass --peak-flops"),
)}


# ---------------------------------------------------------------------------
# Options and result
# ---------------------------------------------------------------------------


@dataclass
class PlanOptions:
    """Every knob of :func:`plan`.

    Attributes:
        device: preset of :data:`DEVICES` for the wall time.
        peak_flops: peak FLOP/s of one device; overrides the preset's.
        mfu: model FLOPs utilisation, the fraction of the peak a run sustains
            (0.4 is typical of a well-tuned large run).
        n_devices: devices training in parallel.
        overhead: extra compute allowed for the band of model sizes (0.2: 20%, [K] figure 12).
        unique_tokens: unique tokens available (U); switches to the
            data-constrained law ([M]) and reports the epochs.
        n_ctx, n_vocab: context and vocabulary of the suggested shape
            (they do not change N; [K] uses 1024 and 50257).
        require: items that must be computed, else an error: ``loss``,
            ``bcrit``, ``s_min``, ``batch``, ``delta_l``, ``band``, ``shape``.
        intervals: ``None``: intervals when the fit has bootstrap draws;
            ``True``: required (an error without draws); ``False``: none.
        levels: coverages of the intervals.
    """

    device: str = "h100"
    peak_flops: float | None = None
    mfu: float = 0.4
    n_devices: int = 1
    overhead: float = 0.2
    unique_tokens: float | None = None
    n_ctx: int = 1024
    n_vocab: int = 50257
    require: tuple[str, ...] = ()
    intervals: bool | None = None
    levels: tuple[float, ...] = (0.8, 0.95)

    def validate(self) -> None:
        if self.device not in DEVICES:
            raise LmscaleError(f"device = {self.device!r}: expected one of {', '.join(DEVICES)}")
        positive("peak_flops", self.peak_flops, allow_none=True)
        if not (isinstance(self.mfu, int | float) and 0 < self.mfu <= 1):
            raise LmscaleError(f"mfu = {self.mfu!r}: expected a fraction in (0, 1]")
        if isinstance(self.n_devices, bool) or not isinstance(self.n_devices, int) or self.n_devices < 1:
            raise LmscaleError(f"n_devices = {self.n_devices!r}: expected a positive integer")
        positive("overhead", self.overhead)
        positive("unique_tokens", self.unique_tokens, allow_none=True)
        for level in self.levels:
            if not (isinstance(level, int | float) and 0 < level < 1):
                raise LmscaleError(f"levels: {level!r} is not a coverage in (0, 1)")
        unknown = [r for r in self.require if r not in REQUIRABLE]
        if unknown:
            raise LmscaleError(f"require: unknown item(s) {', '.join(unknown)}; known: {', '.join(REQUIRABLE)}")


REQUIRABLE = ("loss", "bcrit", "s_min", "batch", "delta_l", "band", "shape")


def positive(name: str, value: Any, allow_none: bool = False) -> None:
    """Raise unless ``value`` is a positive finite number (or ``None`` where allowed)."""
    if value is None and allow_none:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise LmscaleError(f"{name} = {value!r}: expected a positive finite number")
