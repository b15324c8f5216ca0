"""Which precision a run trains in: ``fp32``, or ``bf16`` autocast with fp32 master weights.

``precision = "auto"`` asks the machine. bf16 is chosen where

1. the device has native bf16 matmuls (CUDA compute capability >= 8.0; on a
   CPU the ``avx512_bf16`` or ``amx_bf16`` instruction flags), and
2. the bf16 matmul peak measured here is at least :data:`BF16_MIN_SPEEDUP`
   times the fp32 one (both cached once per machine by
   :func:`lmscale.training.hardware.matmul_peak`), and
3. on a CPU, a training step of the run's own shape and batch, timed here
   in both precisions (:func:`step_speedup`, cached once per machine,
   shape and batch), is at least :data:`CPU_BF16_MIN_STEP_SPEEDUP` times
   faster in bf16, in a trial that other processes left the CPUs to (on a
   busier machine ``auto`` keeps fp32 for now and caches nothing). Small
   models are element-wise work more than matmuls, and the casts autocast
   adds can make bf16 slower; where that line falls depends on the CPU, so
   it is measured, not assumed. A matmul-bound step (at least
   ``step_timing.MEASURE_BELOW_FLOPS`` FLOPs) is not timed: the peaks decide.

Measured with ``benchmarks/bench_small.py`` (n_ctx 64, vocabulary 512,
2048-token batches, 2 threads): on a 2-core Intel Xeon with AMX, fp32
93k tokens/s against bf16 82k at 2/48, 29k against 30k at 4/80 (bf16
matmul peak several times fp32's there); on a 2-core AMD EPYC (Zen 5,
``avx512_bf16``) the CPU time of a step, fp32 over bf16, was 1.08x at
2/12, 1.48x at 2/48, 1.88x at 4/80. At 6/384 (n_ctx 256, vocabulary
4096) bf16 is 2.5x fp32 in tokens/s on the latter (bench_training.py), and
1.75x on a 2-core AMD EPYC (Zen 4), whose bf16 matmul peak is 2.20x fp32's.
On CPUs without native bf16 (emulated in fp32 arithmetic) bf16 is many
times slower and is never chosen.

Under bf16 the softmax of the loss, the optimizer and the weights stay in
fp32 (autocast only lowers matmuls). The resolved precision is recorded in
the run record; a resumed run keeps it; a sweep keeps one per study.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from lmscale.errors import LmscaleError
from lmscale.models.spec import ModelSpec
from lmscale.training.step_timing import best_step_times, matmul_bound, step_key

#: Measured bf16/fp32 matmul peak ratio above which ``auto`` may choose bf16.
BF16_MIN_SPEEDUP = 1.5

#: Measured bf16/fp32 speed-up of a CPU training step above which ``auto`` chooses bf16.
CPU_BF16_MIN_STEP_SPEEDUP = 1.1


#: CPU instruction-set flags (``/proc/cpuinfo``) that mean native bf16 dot products.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The instruction-set flags of this CPU (Linux; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: Any) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware."""
    import torch

    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return major >= 8
    return bool(cpu_flags() & set(CPU_BF16_FLAGS))


def decide_without_measuring(requested: str, device_type: str, spec: ModelSpec) -> tuple[str, str] | None:
    """The answer of :func:`resolve_precision` where no measurement (and no torch) is needed."""
    if requested in ("fp32", "bf16"):
        return requested, "set in the run config"
    if requested != "auto":
        raise LmscaleError(f"precision = {requested!r}: expected auto, fp32 or bf16")
    if device_type == "cpu":
        if not cpu_flags() & set(CPU_BF16_FLAGS):
            return "fp32", f"auto: no native bf16 on this CPU (no {' or '.join(CPU_BF16_FLAGS)} flag)"
    return None


def resolve_precision(requested: str, device: Any, spec: ModelSpec,
                      batch_tokens: int = 2048) -> tuple[str, str]:
    """``(precision, why)`` for a run: ``fp32`` or ``bf16``, and the reason in words."""
    from lmscale.training.hardware import BusyTrial, matmul_peak

    known = decide_without_measuring(requested, device.type, spec)
    if known is not None:
        return known
    if not native_bf16(device):
        return "fp32", "auto: no native bf16 on this GPU (compute capability < 8.0)"
    by_peaks = _by_peaks(matmul_peak(device, dtype="fp32"), matmul_peak(device, dtype="bf16"))
    if by_peaks[0] == "fp32" or device.type != "cpu":
        return by_peaks
    if matmul_bound(spec, batch_tokens):
        return _matmul_bound(by_peaks, spec, batch_tokens)
    try:
        return _by_step(step_speedup(device, spec, batch_tokens), spec, batch_tokens)
    except BusyTrial as busy:
        return "fp32", (f"auto: {busy} of a bf16 step against fp32 at {spec.n_layer}/{spec.d_model}; fp32 "
                        "until a trial on a quieter machine")


def _matmul_bound(by_peaks: tuple[str, str], spec: ModelSpec, batch_tokens: int) -> tuple[str, str]:
    return by_peaks[0], (f"{by_peaks[1]}; a step of {spec.n_layer}/{spec.d_model} on {batch_tokens}-token "
                         "batches is matmul-bound, so the peaks decide")


def _by_peaks(fp32: float, bf16: float) -> tuple[str, str]:
    ratio = bf16 / fp32 if fp32 > 0 else 0.0
    if ratio < BF16_MIN_SPEEDUP:
        return "fp32", f"auto: bf16 matmul peak only {ratio:.2f}x fp32 here"
    return "bf16", f"auto: native bf16, matmul peak {ratio:.2f}x fp32 here"


def _by_step(speedup: float, spec: ModelSpec, batch_tokens: int) -> tuple[str, str]:
    where = f"{spec.n_layer}/{spec.d_model}, {batch_tokens}-token batches"
    if speedup < CPU_BF16_MIN_STEP_SPEEDUP:
        return "fp32", f"auto: a bf16 training step is only {speedup:.2f}x fp32's here at {where}"
    return "bf16", f"auto: a bf16 training step is {speedup:.2f}x fp32's here at {where}"


def cached_step_speedup(spec: ModelSpec, batch_tokens: int, threads: int) -> float | None:
    """The cached bf16/fp32 step speed-up, read without importing torch; ``None`` if not measured."""
    from lmscale.training.hardware import cache_dir, cached_value, installed_torch_version

    version = installed_torch_version()
    if version is None:
        return None
    return cached_value(cache_dir() / STEP_CACHE, speedup_key(spec, batch_tokens, threads, version), "speedup")


#: Cache file (in :func:`lmscale.training.hardware.cache_dir`) of measured step speed-ups.
STEP_CACHE = "step_speedup.json"
#: Marks the keys of the trial as it is now (every setting timed for STEP_MIN_SECONDS, on a
#: machine other processes left alone): speed-ups cached by earlier trials are measured again.
SPEEDUP_TRIAL = "quiet"


def speedup_key(spec: ModelSpec, batch_tokens: int, threads: int, torch_version: str) -> str:
    """The cache key of a bf16/fp32 step speed-up (the step's key and the trial's)."""
    return f"{step_key(spec, batch_tokens, threads, torch_version)}|trial={SPEEDUP_TRIAL}"


def step_speedup(device: Any, spec: ModelSpec, batch_tokens: int) -> float:
    """fp32 step time over bf16 step time of a training step (forward, backward, AdamW) of
    ``spec`` on ``batch_tokens``-token batches, measured here once and cached.

    The two precisions alternate step by step and each keeps its fastest
    step. Raises :class:`~lmscale.training.hardware.BusyTrial`, caching nothing, when other
    processes used more than its ``BUSY_SHARE`` of the CPUs meanwhile: on 2 cores a
    competing process made a 1/16 step look 1.2x faster in bf16 (quiet:
    0.83-1.02x), and a cached answer outlives the load that made it.
    """
    import torch

    from lmscale.training.hardware import cache_dir, cached_trial

    key = speedup_key(spec, batch_tokens, torch.get_num_threads(), torch.__version__)
    speedup, busy = cached_trial(cache_dir() / STEP_CACHE, key, "speedup",
                                 lambda: _measure_step_speedup(device, spec, batch_tokens))
    if busy is not None:  # a busy trial decides nothing here: auto keeps fp32 (resolve_precision)
        raise busy
    return speedup


def _measure_step_speedup(device: Any, spec: ModelSpec, batch_tokens: int) -> float:
    times = best_step_times(device, spec, batch_tokens, {p: autocast(device, p) for p in ("fp32", "bf16")})
    return times["fp32"] / times["bf16"]


def resolve_elsewhere(device_type: str, spec: ModelSpec, threads: int | None = None,
                      batch_tokens: int = 2048) -> tuple[str, str]:
    """:func:`resolve_precision` of ``auto`` for a process that must not import torch
    (a sweep's parent): answered here when no measurement is needed or the
    peaks are cached, else by a short child process (the peaks it measures
    are cached for the runs)."""
    known = decide_without_measuring("auto", device_type, spec)
    if known is not None:
        return known
    if device_type == "cpu" and threads is not None:
        from lmscale.training.hardware import cached_cpu_peak

        fp32, bf16 = cached_cpu_peak(threads, "fp32"), cached_cpu_peak(threads, "bf16")
        if fp32 is not None and bf16 is not None:
            by_peaks = _by_peaks(fp32, bf16)
            if by_peaks[0] == "fp32":
                return by_peaks
            if matmul_bound(spec, batch_tokens):
                return _matmul_bound(by_peaks, spec, batch_tokens)
            speedup = cached_step_speedup(spec, batch_tokens, threads)
            if speedup is not None:
                return _by_step(speedup, spec, batch_tokens)
    arg = json.dumps({"device": device_type, "model": spec.to_dict(), "threads": threads,
                      "batch_tokens": batch_tokens})
    proc = subprocess.run([sys.executable, "-m", "lmscale.training.precision", arg],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise LmscaleError(f"could not measure this machine's bf16 and fp32 matmul peaks: "
                           f"{proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    out = json.loads(proc.stdout)
    return str(out["precision"]), str(out["reason"])


def autocast(device: Any, precision: str) -> Any:
    """A factory of the context the forward passes run in (``nullcontext`` for fp32)."""
    if precision == "fp32":
        return nullcontext
    import torch

    def context() -> AbstractContextManager:
        return torch.autocast(device.type, dtype=torch.bfloat16)

    return context


def _main(arg: str) -> None:
    """``python -m lmscale.training.precision JSON``: resolve ``auto``, print the answer as JSON."""
    from lmscale.training.hardware import configure_threads, resolve_device

    spec = json.loads(arg)
    configure_threads(spec.get("threads"))
    precision, reason = resolve_precision("auto", resolve_device(spec["device"]),
                                          ModelSpec.from_dict(spec["model"]), int(spec["batch_tokens"]))
    print(json.dumps({"precision": precision, "reason": reason}))


if __name__ == "__main__":
    _main(sys.argv[1])
