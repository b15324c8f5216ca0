"""How long a planned sweep will take on this machine: a throughput model.

time(run) = (C_train + C_eval) / (peak x MFU), where

- C_train = 3 x forward FLOPs per token (every term of [K] table 1:
  attention, logits, embedding) x D tokens;
- C_eval = forward FLOPs per token x the tokens of one evaluation
  (``eval_tokens`` on the training distribution, ``eval_other_tokens`` on
  each other one) x evaluations (the log-spaced curve points, the
  ``eval_every`` ones, 50 under early stopping, and the final one), plus
  the final per-position evaluation;
- peak = the matmul peak measured on this machine at the run's thread count
  in the run's precision (:func:`lmscale.training.hardware.matmul_peak`,
  cached per machine; ``auto`` as the sweep will resolve it for the study);
- MFU = the median MFU of finished lone runs of the same architecture in
  the store when one is given, else :data:`DEFAULT_MFU` (what small models
  reach on a CPU; a guess, said so in the output);
- or, measured (``sweep plan``'s default, :func:`measured_step_rates`): the
  FLOP rate of a training step of each distinct shape, batch and precision,
  timed here (cached per machine), in place of peak x MFU. On the shipped
  CPU study (AMD Zen 4) the default MFU put the groups that do not stop
  early at 0.5-1.05x their measured time: an MFU of tiny models is not one
  number.

plus :data:`RUN_OVERHEAD_S` per run (model set-up, final evaluations) and
:data:`STARTUP_S` once per worker process (importing torch). Runs that the
executor packs (:mod:`lmscale.sweeps.packing`) are one task whose compute
time is their sum divided by :data:`PACK_GAIN`. The sweep's wall time
places the tasks onto the workers largest-first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmscale.accounting import forward_flops_per_token, training_flops_per_token
from lmscale.sweeps.spec import PlannedRun
from lmscale.training.plan import log_spaced_steps

#: Seconds a worker process needs before its first run (imports), on a CPU.
STARTUP_S = 5.0

#: Fixed seconds per run besides its FLOPs (set-up, per-position evaluation, record).
RUN_OVERHEAD_S = 1.0

#: Expected model FLOPs utilisation without measurements (tiny models on CPU).
DEFAULT_MFU = {"transformer": 0.15, "universal": 0.15, "lstm": 0.10}

#: Throughput of a pack of runs over that of the same runs trained one by one,
#: where the executor packs (2+ threads per task, or a GPU): bench_small.py
#: measured 1.2-1.5x at 2 threads on the CPU study's shapes.
PACK_GAIN = 1.2

#: Expected speed of a bf16 run over an fp32 one where the store has no bf16
#: runs to measure it by (small models on a CPU with native bf16; the matmul
#: peaks differ far more, but the element-wise work does not shrink).
BF16_GAIN = 1.3


@dataclass
class Throughput:
    """The numbers behind an estimate.

    Attributes:
        peak_flops: measured matmul FLOP/s at ``threads`` threads.
        threads: torch threads per run.
        workers: runs in parallel.
        mfu: expected MFU per architecture (fp32, against the fp32 peak) and per
            ``architecture/bf16`` (against the bf16 peak; when missing, a bf16
            run takes the fp32 time over :data:`BF16_GAIN`).
        mfu_source: ``"store"`` or ``"default"`` per key of ``mfu``.
        distributions: test distributions evaluated per run.
        peaks: measured matmul peak per precision (``fp32``, ``bf16``); a
            precision missing here uses ``peak_flops``.
        precision: what ``precision = "auto"`` means for the study.
        pack_gain: see :data:`PACK_GAIN`.
    """

    peak_flops: float
    threads: int
    workers: int
    mfu: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MFU))
    mfu_source: dict[str, str] = field(default_factory=dict)
    distributions: int = 1
    peaks: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"
    pack_gain: float = PACK_GAIN
    bf16_gain: float = BF16_GAIN
    step_rates: dict[str, float] = field(default_factory=dict)

    def method(self) -> str:
        parts = ", ".join(f"{a} {m:.0%} ({self.mfu_source.get(a, 'default')})" for a, m in self.mfu.items())
        peaks = ", ".join(f"{k} {v:.3g}" for k, v in sorted(self.peaks.items())) or f"{self.peak_flops:.3g}"
        if self.step_rates:
            return (f"seconds = (3 x forward FLOPs/token x D + evaluation FLOPs) / the FLOP rate of a training "
                    f"step of the run's shape, batch and precision timed here at {self.threads} thread(s) "
                    f"({len(self.step_rates)} shape(s)); precision 'auto' = {self.precision}; packed runs "
                    f"{self.pack_gain:g}x faster together; + {RUN_OVERHEAD_S:g} s per run and {STARTUP_S:g} s "
                    f"per worker start; {self.workers} task(s) in parallel")
        return (f"seconds = (3 x forward FLOPs/token x D + evaluation FLOPs) / (peak x MFU); "
                f"peak FLOP/s {peaks} measured at {self.threads} thread(s); precision 'auto' = "
                f"{self.precision}; MFU {parts}; bf16 without a measured MFU {self.bf16_gain:g}x faster "
                f"than fp32; packed runs {self.pack_gain:g}x faster together; "
                f"+ {RUN_OVERHEAD_S:g} s per run and {STARTUP_S:g} s per worker start; "
                f"{self.workers} task(s) in parallel")


def run_flops(run: PlannedRun, distributions: int) -> tuple[float, float]:
    """(training FLOPs with every term, evaluation FLOPs) of one run."""
    cfg = run.config
    fwd = forward_flops_per_token(cfg.model)
    train = training_flops_per_token(cfg.model, exact=True) * run.D
    steps = max(1, int(run.D // cfg.batch_tokens))
    evaluations = len(log_spaced_steps(steps, cfg.curve_points_per_decade)) + 1
    every = cfg.eval_every or (max(1, steps // 50) if cfg.early_stopping else 0)
    if every:
        evaluations += steps // every
    other = cfg.eval_tokens if cfg.eval_other_tokens is None else cfg.eval_other_tokens
    per_eval = cfg.eval_tokens + other * max(0, distributions - 1)
    return float(train), fwd * (per_eval * evaluations + cfg.final_eval_budget())


def run_precision(run: PlannedRun, tp: Throughput) -> str:
    return tp.precision if run.config.precision == "auto" else run.config.precision


def rate_key(run: PlannedRun, precision: str, threads: int) -> str:
    """The key of a run's measured step rate: its shape, batch, threads, torch and precision."""
    from lmscale.training.hardware import installed_torch_version
    from lmscale.training.step_timing import step_key

    cfg = run.config
    return f"{step_key(cfg.model, cfg.batch_tokens, threads, installed_torch_version() or '')}|precision={precision}"


def run_seconds(run: PlannedRun, tp: Throughput) -> float:
    flops = sum(run_flops(run, tp.distributions))
    arch, precision = run.config.model.architecture, run_precision(run, tp)
    if tp.step_rates:
        rate = tp.step_rates.get(rate_key(run, precision, tp.threads))
        if rate:
            return flops / rate + RUN_OVERHEAD_S
    if precision == "bf16" and f"{arch}/bf16" in tp.mfu:
        return flops / (tp.peaks.get("bf16", tp.peak_flops) * tp.mfu[f"{arch}/bf16"]) + RUN_OVERHEAD_S
    seconds = flops / (tp.peaks.get("fp32", tp.peak_flops) * tp.mfu.get(arch, 0.1))
    return seconds / (tp.bf16_gain if precision == "bf16" else 1.0) + RUN_OVERHEAD_S


def task_seconds(pack: list[PlannedRun], tp: Throughput) -> float:
    """Seconds of one executor task: a run, or a pack of runs trained together."""
    compute = sum(run_seconds(r, tp) - RUN_OVERHEAD_S for r in pack)
    return compute / (tp.pack_gain if len(pack) > 1 else 1.0) + RUN_OVERHEAD_S * len(pack)


def wall_seconds(seconds: list[float], workers: int, startup: float = 0.0) -> float:
    """Makespan of largest-first packing onto ``workers`` slots, each starting after ``startup`` s."""
    slots = [startup] * max(1, workers)
    for s in sorted(seconds, reverse=True):
        slots[slots.index(min(slots))] += s
    return max(slots)


def measured_peak(threads: int, device: str = "cpu", dtype: str | None = None) -> float:
    """This machine's matmul peak at ``threads`` threads in ``dtype`` (imports torch; cached on disk)."""
    from lmscale.training.hardware import configure_threads, matmul_peak, resolve_device

    configure_threads(threads)
    return matmul_peak(resolve_device(device), dtype=dtype)


#: Shapes whose step would take longer than this at the matmul peak are not timed (their step is
#: matmul-bound, and timing several would take minutes): they keep the peak x MFU estimate.
MAX_TIMED_STEP_S = 0.25

#: Cache file (in :func:`lmscale.training.hardware.cache_dir`) of measured step rates.
STEP_RATES_CACHE = "step_rates.json"


def measured_step_rates(runs: list[PlannedRun], tp: Throughput, device: str = "cpu",
                        progress: bool = False) -> dict[str, float]:
    """Training FLOP/s (3 x forward FLOPs per token x batch tokens / step seconds) of each distinct
    shape, batch and precision of ``runs`` at ``tp.threads`` threads: the fastest bare step
    (forward, backward, AdamW) of :func:`lmscale.training.step_timing.best_step_times`, cached per
    machine unless other processes shared the CPUs meanwhile (then measured again next time).
    Shapes whose step at the matmul peak would take over :data:`MAX_TIMED_STEP_S` are left out
    (:func:`run_seconds` estimates them by peak x MFU)."""
    import sys

    from tqdm import tqdm

    from lmscale.training.hardware import cache_dir, cached_trial, configure_threads, resolve_device
    from lmscale.training.precision import autocast
    from lmscale.training.step_timing import best_step_times

    configure_threads(tp.threads)
    dev = resolve_device(device)
    def step_flops(run: PlannedRun) -> float:  # as run_flops counts a step's training FLOPs
        return float(training_flops_per_token(run.config.model, exact=True) * run.config.batch_tokens)

    todo: dict[str, PlannedRun] = {}
    for run in runs:
        precision = run_precision(run, tp)
        if step_flops(run) / tp.peaks.get(precision, tp.peak_flops) <= MAX_TIMED_STEP_S:  # else: peak x MFU
            todo.setdefault(rate_key(run, precision, tp.threads), run)
    rates = {}
    for key, run in tqdm(todo.items(), desc="timing a step of each shape", unit="shape", file=sys.stderr,
                         disable=not progress):
        cfg, precision = run.config, run_precision(run, tp)

        def measure(run=run, cfg=cfg, precision=precision) -> float:
            step = best_step_times(dev, cfg.model, cfg.batch_tokens, {precision: autocast(dev, precision)})
            return step_flops(run) / step[precision]

        rates[key], _ = cached_trial(cache_dir() / STEP_RATES_CACHE, key, "flops_per_s", measure)
    return rates


def store_mfu(store_path: str | None) -> dict[str, float]:
    """Median MFU of finished lone runs in a store per architecture (fp32) and per
    ``architecture/bf16`` (empty if none)."""
    if not store_path:
        return {}
    from lmscale.store import Store

    frame = Store(store_path, create=False).final_points()
    lone = frame["packed_with"].isna() | (frame["packed_with"] <= 1)  # a packed run's MFU is its share
    frame = frame[lone & frame["mfu"].notna() & (frame["mfu"] > 0)]
    key = frame["architecture"].astype(str) + frame["precision"].map(lambda p: "/bf16" if p == "bf16" else "")
    return {str(k): float(g["mfu"].median()) for k, g in frame.groupby(key)}
