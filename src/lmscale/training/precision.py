"""Which precision a run trains in: ``fp32``, or ``bf16`` autocast with fp32 master weights.

``precision = "auto"`` asks the machine. bf16 is chosen where

1. the device has native bf16 matmuls (CUDA compute capability >= 8.0; on a
   CPU the ``avx512_bf16`` or ``amx_bf16`` instruction flags), and
2. the bf16 matmul peak measured here is at least :data:`BF16_MIN_SPEEDUP`
   times the fp32 one (both cached once per machine by
   :func:`lmscale.training.hardware.matmul_peak`), and
3. on a CPU, the model is at least :data:`CPU_BF16_MIN_D_MODEL` wide: below
   that the step is element-wise work, not matmuls, and the casts autocast
   adds make it slower.

Measured on a 2-core AMD EPYC (Zen 5, ``avx512_bf16``), torch 2.13, one
thread, with attention in fp32 (see
:func:`lmscale.models.transformer.causal_attention`): bf16 matmul peak
4.6x fp32 (403 against 88 GFLOP/s; at the small models' shapes, [2048,
48-128] x [48-128, 192-512], about 200 against 40). CPU time of one
training step (2048 tokens, n_ctx 64, vocabulary 512), fp32 over bf16:
1.24x at 2/6, 1.08x at 2/12, 1.33x at 2/32, 1.48x at 2/48, 1.88x at 4/80;
2.47x in tokens/s at 6/384 (n_ctx 256, vocabulary 4096, 2 threads,
bench_training.py). Below d_model 32 the wall-clock gain on a busy
machine was not reliably above 1 (0.8-1.04x), hence the threshold. On CPUs
without native bf16 (emulated in fp32 arithmetic) bf16 is many times slower.

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

#: Measured bf16/fp32 matmul peak ratio above which ``auto`` may choose bf16.
BF16_MIN_SPEEDUP = 1.5

#: Narrowest model (d_model) that ``auto`` trains in bf16 on a CPU.
CPU_BF16_MIN_D_MODEL = 32

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
        if spec.d_model < CPU_BF16_MIN_D_MODEL:
            return "fp32", (f"auto: d_model {spec.d_model} < {CPU_BF16_MIN_D_MODEL}, too narrow for bf16 "
                            "to pay on a CPU")
    return None


def resolve_precision(requested: str, device: Any, spec: ModelSpec) -> tuple[str, str]:
    """``(precision, why)`` for a run: ``fp32`` or ``bf16``, and the reason in words."""
    from lmscale.training.hardware import matmul_peak

    known = decide_without_measuring(requested, device.type, spec)
    if known is not None:
        return known
    if not native_bf16(device):
        return "fp32", "auto: no native bf16 on this GPU (compute capability < 8.0)"
    return _by_peaks(matmul_peak(device, dtype="fp32"), matmul_peak(device, dtype="bf16"))


def _by_peaks(fp32: float, bf16: float) -> tuple[str, str]:
    ratio = bf16 / fp32 if fp32 > 0 else 0.0
    if ratio < BF16_MIN_SPEEDUP:
        return "fp32", f"auto: bf16 matmul peak only {ratio:.2f}x fp32 here"
    return "bf16", f"auto: native bf16, matmul peak {ratio:.2f}x fp32 here"


def resolve_elsewhere(device_type: str, spec: ModelSpec, threads: int | None = None) -> tuple[str, str]:
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
            return _by_peaks(fp32, bf16)
    arg = json.dumps({"device": device_type, "model": spec.to_dict(), "threads": threads})
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
                                          ModelSpec.from_dict(spec["model"]))
    print(json.dumps({"precision": precision, "reason": reason}))


if __name__ == "__main__":
    _main(sys.argv[1])
