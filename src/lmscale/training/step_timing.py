"""Timing a training step of a shape in several precisions, and the CPU thread count it runs best with.

:func:`best_step_times` times a bare step (forward, backward, AdamW) of a
model shape on one batch under several contexts (precisions), alternating
step by step; each keeps its fastest step (on a shared machine the fastest
tries are the ones the cores ran free): what ``precision = "auto"``
(:mod:`lmscale.training.precision`) measures. :func:`choose_threads` times
the trainer's own steps instead (below). :func:`step_key` names both
measurements in their caches.

Threads: a small model's step is short operations on small tensors, and
splitting them over cores can cost more than it gains, by how much depends
on the CPU and on how idle OpenMP threads wait. On a quiet 2-core Intel
Xeon (n_ctx 64, vocabulary 512, 2048-token batches) with OpenMP's default
spinning waits, as a lone ``lmscale train`` runs, 2 threads won at 2/12,
2/48 and 4/80 (trials 1.23x, 1.43x, 1.22x; a 2/48 run: 141k tokens/s
against 95k on 1); with
``OMP_WAIT_POLICY=PASSIVE``, as sweep workers run, every small operation
wakes a sleeping thread and 1 thread won at all three (trials 1.34x,
1.21x, 1.12x). So a run that does not set ``threads`` trains a few steps
of itself at each count once per machine (cached, per wait policy) and
uses the faster; models whose step is long enough to be matmul-bound
(:data:`MEASURE_BELOW_FLOPS`) use every CPU without measuring. The whole
step is timed, not a bare forward and backward: under PASSIVE at 4/80 a
bare step was 1.2x faster on 2 threads, the trainer's step (clipping, the
noise scale, the smoothed loss: more small operations) 1.1x faster on 1.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from lmscale.models.spec import ModelSpec

#: Timed steps per setting, after :data:`STEP_WARMUP` untimed ones.
STEP_TRIES, STEP_WARMUP = 5, 2
#: Each setting is timed for at least this many seconds in all (up to :data:`STEP_MAX_TRIES`
#: steps): a small model's step takes a millisecond, and the fastest of five such steps on a
#: busy machine said bf16 was 1.37x faster at 1/16 where a quiet trial measures 0.83-0.95x.
STEP_MIN_SECONDS, STEP_MAX_TRIES = 0.3, 400

#: Training FLOPs of a step (6 N tokens, with attention and logits) below which a
#: lone CPU run measures its thread count; above it, every CPU (matmul-bound).
MEASURE_BELOW_FLOPS = 2e10

#: Cache file (in :func:`lmscale.training.hardware.cache_dir`) of the measured thread counts.
THREADS_CACHE = "step_threads.json"
#: Marks the keys of the thread trial as it is now (warm-up steps untimed, each try at least
#: STEP_MIN_SECONDS): counts cached by the earlier, shorter trial are measured again.
THREADS_TRIAL = "warm"


#: The modules (under ``lmscale/``) whose code a training step runs. A cached step measurement
#: belongs to their code as well as to the machine: when attention on a CPU moved from the flash
#: kernel to materialised scores, a step at 2/12 became about 8% faster on 2 threads and 3% on 1,
#: which moves the line between thread counts and between precisions.
STEP_MODULES = ("models/transformer.py", "models/lstm.py", "training/loss.py", "training/runtime.py",
                "training/noise.py", "training/trainer.py", "training/precision.py")


@functools.lru_cache(maxsize=1)
def step_code() -> str:
    """A fingerprint of :data:`STEP_MODULES` (12 hex digits of their SHA-256; ``unknown``
    where the sources cannot be read)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    try:
        for name in STEP_MODULES:
            digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    except OSError:
        return "unknown"
    return digest.hexdigest()[:12]


def step_key(spec: ModelSpec, batch_tokens: int, threads: int, torch_version: str) -> str:
    """The cache key of a step measurement: CPU model, threads, torch, the step's code
    (:func:`step_code`), batch and shape."""
    from lmscale.training.hardware import cpu_model

    shape = json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))
    return (f"cpu:{cpu_model()}|threads={threads}|torch={torch_version}|code={step_code()}"
            f"|batch={batch_tokens}|{shape}")


def best_step_times(device: Any, spec: ModelSpec, batch_tokens: int,
                    contexts: dict[str, Callable[[], AbstractContextManager]]) -> dict[str, float]:
    """Fastest step time in seconds under each of ``contexts`` (name -> a factory of the
    context the forward pass runs in: a precision's autocast, ``contextlib.nullcontext``)."""
    import torch

    from lmscale.models import build_model
    from lmscale.training.evaluate import has_head, training_loss
    from lmscale.training.runtime import adamw

    gen = torch.Generator().manual_seed(0)
    rows = torch.randint(0, spec.n_vocab, (max(1, batch_tokens // spec.n_ctx), spec.n_ctx + 1), generator=gen)
    rows = rows.to(device)
    steps = {}
    for name, context in contexts.items():
        torch.manual_seed(0)
        model = build_model(spec).to(device)
        forward = model.hidden_states if has_head(model) else model  # as the trainer steps it
        optimizer = adamw([{"params": list(model.parameters())}], lr=1e-4)
        steps[name] = (model, forward, optimizer, context)
    best = dict.fromkeys(contexts, float("inf"))
    timed = dict.fromkeys(contexts, 0.0)
    for i in range(STEP_WARMUP + STEP_MAX_TRIES):
        if i >= STEP_WARMUP + STEP_TRIES and min(timed.values()) >= STEP_MIN_SECONDS:
            break
        for name, (model, forward, optimizer, context) in steps.items():
            t0 = time.perf_counter()
            with context():
                loss = training_loss(model, forward, rows[:, :-1], rows[:, 1:])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - t0
            if i >= STEP_WARMUP:
                best[name] = min(best[name], elapsed)
                timed[name] += elapsed
    return best


def matmul_bound(spec: ModelSpec, batch_tokens: int) -> bool:
    """Whether a training step of ``spec`` is matmul-bound: at least :data:`MEASURE_BELOW_FLOPS`
    FLOPs (every term of [K] table 1). Such a step is not timed: it uses every CPU, and the
    matmul peaks decide its precision (a 1e8-parameter step planned on a CPU takes minutes to time)."""
    from lmscale.accounting import training_flops_per_token

    return training_flops_per_token(spec, exact=True) * batch_tokens >= MEASURE_BELOW_FLOPS


def choose_threads(spec: ModelSpec, batch_tokens: int, available: int,
                   seconds_per_step: Callable[[int], float]) -> tuple[int, str]:
    """``(threads, why)`` for a lone CPU run that did not set its thread count.

    One thread or all ``available`` CPUs, whichever trains this shape
    faster here: ``seconds_per_step(threads)`` trains a few steps of the run
    itself at that count (the trainer's whole step, as the run will take it)
    and returns the seconds per step; each count is tried twice, alternately,
    and keeps its faster try. Measured once per machine, shape and batch,
    and cached, unless other processes shared the CPUs meanwhile (then the
    answer serves this run and the next measures again); every CPU without
    measuring when there is one or when the step is matmul-bound
    (:data:`MEASURE_BELOW_FLOPS`).
    """
    from lmscale.accounting import training_flops_per_token
    from lmscale.training.hardware import cache_dir, cached_trial, installed_torch_version

    if available <= 1:
        return available, "every CPU"
    if matmul_bound(spec, batch_tokens):
        flops = training_flops_per_token(spec, exact=True) * batch_tokens
        return available, f"every CPU ({flops:.2g} FLOPs a step: matmul-bound)"
    # how idle OpenMP threads wait changes the answer (a sleeping thread is slow to wake)
    policy = os.environ.get("OMP_WAIT_POLICY", "default").lower()
    key = (f"{step_key(spec, batch_tokens, available, installed_torch_version() or '')}|omp_wait={policy}"
           f"|trial={THREADS_TRIAL}")

    def measure() -> float:
        best = {1: float("inf"), available: float("inf")}
        for _ in range(2):
            for threads in best:
                best[threads] = min(best[threads], seconds_per_step(threads))
        return best[1] / best[available]

    ratio, trial = cached_trial(cache_dir() / THREADS_CACHE, key, "one_over_all", measure)
    busy = f" ({trial}: not cached)" if trial else ""
    if ratio <= 1.0:
        return 1, f"1 thread: this shape trains {1.0 / ratio:.2f}x faster than on {available} here{busy}"
    return available, f"{available} threads: this shape trains {ratio:.2f}x faster than on 1 here{busy}"
