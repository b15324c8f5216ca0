"""How long a planned sweep will take on this machine: a throughput model.

time(run) = (C_train + C_eval) / (peak x MFU), where

- C_train = 3 x forward FLOPs per token (every term of [K] table 1:
  attention, logits, embedding) x D tokens;
- C_eval = forward FLOPs per token x eval_tokens x distributions x
  evaluations, with evaluations ~ curve_points_per_decade x log10(steps) + 2;
- peak = the matmul peak measured on this machine at the run's thread count
  (:func:`lmscale.training.hardware.matmul_peak`, cached per machine);
- MFU = the median MFU of finished runs of the same architecture in the
  store when one is given, else :data:`DEFAULT_MFU` (what small models
  reach on a CPU; a guess, said so in the output).

plus :data:`RUN_OVERHEAD_S` per run (model set-up, final evaluations) and
:data:`STARTUP_S` once per worker process (importing torch). The sweep's
wall time packs the runs onto the workers largest-first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lmscale.accounting import forward_flops_per_token
from lmscale.sweeps.spec import PlannedRun

#: Seconds a worker process needs before its first run (imports), on a CPU.
STARTUP_S = 5.0

#: Fixed seconds per run besides its FLOPs (set-up, per-position evaluation, record).
RUN_OVERHEAD_S = 1.0

#: Expected model FLOPs utilisation without measurements (tiny models on CPU).
DEFAULT_MFU = {"transformer": 0.15, "universal": 0.15, "lstm": 0.10}


@dataclass
class Throughput:
    """The numbers behind an estimate.

    Attributes:
        peak_flops: measured matmul FLOP/s at ``threads`` threads.
        threads: torch threads per run.
        workers: runs in parallel.
        mfu: expected MFU per architecture.
        mfu_source: ``"store"`` or ``"default"`` per architecture.
        distributions: test distributions evaluated per run.
    """

    peak_flops: float
    threads: int
    workers: int
    mfu: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MFU))
    mfu_source: dict[str, str] = field(default_factory=dict)
    distributions: int = 1

    def method(self) -> str:
        parts = ", ".join(f"{a} {m:.0%} ({self.mfu_source.get(a, 'default')})" for a, m in self.mfu.items())
        return (f"seconds = (3 x forward FLOPs/token x D + evaluation FLOPs) / (peak x MFU); "
                f"peak {self.peak_flops:.3g} FLOP/s measured at {self.threads} thread(s); MFU {parts}; "
                f"+ {RUN_OVERHEAD_S:g} s per run and {STARTUP_S:g} s per worker start; "
                f"{self.workers} run(s) in parallel")


def run_flops(run: PlannedRun, distributions: int) -> tuple[float, float]:
    """(training FLOPs with every term, evaluation FLOPs) of one run."""
    fwd = forward_flops_per_token(run.config.model)
    steps = max(1.0, run.D / run.config.batch_tokens)
    evaluations = run.config.curve_points_per_decade * math.log10(steps) + 2
    return 3.0 * fwd * run.D, fwd * run.config.eval_tokens * distributions * evaluations


def run_seconds(run: PlannedRun, tp: Throughput) -> float:
    train, evaluation = run_flops(run, tp.distributions)
    mfu = tp.mfu.get(run.config.model.architecture, 0.1)
    return (train + evaluation) / (tp.peak_flops * mfu) + RUN_OVERHEAD_S


def wall_seconds(seconds: list[float], workers: int, startup: float = 0.0) -> float:
    """Makespan of largest-first packing onto ``workers`` slots, each starting after ``startup`` s."""
    slots = [startup] * max(1, workers)
    for s in sorted(seconds, reverse=True):
        slots[slots.index(min(slots))] += s
    return max(slots)


def measured_peak(threads: int, device: str = "cpu") -> float:
    """This machine's matmul peak at ``threads`` threads (imports torch; cached on disk)."""
    from lmscale.training.hardware import configure_threads, matmul_peak, resolve_device

    configure_threads(threads)
    return matmul_peak(resolve_device(device))


def store_mfu(store_path: str | None) -> dict[str, float]:
    """Median MFU of finished runs per architecture in a store (empty if none)."""
    if not store_path:
        return {}
    from lmscale.store import Store

    frame = Store(store_path, create=False).final_points()
    frame = frame[frame["mfu"].notna() & (frame["mfu"] > 0)]
    return {str(a): float(g["mfu"].median()) for a, g in frame.groupby("architecture")}
