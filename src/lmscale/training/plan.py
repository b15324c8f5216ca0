"""Everything about a run that is known before its first step.

:func:`make_plan` turns a :class:`TrainConfig` into concrete numbers (steps,
micro-batches, learning rate, curve points, data sizes) and rejects, with a
clear :class:`LmscaleError`, every run that cannot train: a budget below one
step, a batch that does not split over the data-parallel ranks, a model that
does not fit in memory. Pure Python (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass

from lmscale.accounting import (
    applied_non_embedding_params,
    embedding_params,
    non_embedding_params,
    training_flops_per_token,
)
from lmscale.errors import LmscaleError
from lmscale.models.shapes import recipe_learning_rate
from lmscale.models.spec import ModelSpec, materialises_scores
from lmscale.training.config import TrainConfig
from lmscale.training.schedule import default_warmup_steps

#: Largest micro-batch (tokens) chosen automatically, per device type: on a
#: CPU, bigger passes are no faster (the matmuls are already large) and only
#: add memory; on a GPU, memory decides.
AUTO_MICRO_TOKENS = {"cpu": 4096, "cuda": 1 << 20}

#: Fraction of the available memory an automatically chosen micro-batch may fill.
MEMORY_FRACTION = 0.8

#: Bytes of the torch runtime itself (allocator pools, kernels, the data views).
RUNTIME_BYTES = 400 * 2**20


@dataclass(frozen=True)
class RunPlan:
    """Concrete numbers of a run.

    Attributes:
        total_steps: optimizer steps the budget allows.
        batch_tokens: global batch B in tokens.
        rank_batch_tokens: tokens each data-parallel rank processes per step.
        micro_batch_tokens: tokens per forward/backward pass.
        micro_steps: micro-batches per step on each rank (gradient accumulation).
        world_size: data-parallel ranks.
        dataset_tokens: size D of the training set (epochs repeat it when the
            run trains on more tokens than that).
        peak_lr: peak learning rate.
        warmup_steps: linear warm-up steps.
        curve_steps: steps after which a learning-curve point is recorded.
        eval_every: extra evaluation interval in steps (0: none).
        noise_batches: (B_small, B_big) in tokens for the noise scale, or None.
        noise_passes: passes of a step that measures the noise scale: the
            micro-batches, or, when the batch is one pass, that pass split
            into ``noise_passes`` equal parts (B_small = B / noise_passes);
            |g_small|^2 is averaged over all of them (``trainer._Run``).
        noise_every: steps between two noise-scale measurements (every step
            under data parallelism, where they cost nothing).
        memory_bytes: estimated peak memory of one rank.
    """

    total_steps: int
    batch_tokens: int
    rank_batch_tokens: int
    micro_batch_tokens: int
    micro_steps: int
    world_size: int
    dataset_tokens: int
    peak_lr: float
    warmup_steps: int
    curve_steps: tuple[int, ...]
    eval_every: int
    noise_batches: tuple[int, int] | None
    memory_bytes: int
    noise_passes: int = 1
    noise_every: int = 1

    @property
    def tokens(self) -> int:
        """Training tokens of the whole run: total_steps * B."""
        return self.total_steps * self.batch_tokens

    def measures_noise_at(self, step: int) -> bool:
        """Whether the step that starts after ``step`` steps measures the noise scale."""
        return self.noise_batches is not None and step % self.noise_every == 0

    def passes_at(self, step: int) -> int:
        """Forward/backward passes of the step that starts after ``step`` steps."""
        return self.noise_passes if self.measures_noise_at(step) else self.micro_steps

    def evaluates_at(self, step: int) -> bool:
        """Whether the test loss is measured after ``step`` (a curve point)."""
        if self.eval_every > 0 and step % self.eval_every == 0:
            return True
        return step in self.curve_steps


def log_spaced_steps(total_steps: int, per_decade: int) -> tuple[int, ...]:
    """Steps 1 .. total_steps at ``per_decade`` points per decade (rounded, deduplicated), plus the end."""
    if per_decade < 1:
        raise LmscaleError(f"curve_points_per_decade = {per_decade}: expected a positive integer")
    out = set()
    k = 0
    while True:
        step = int(round(10 ** (k / per_decade)))
        if step > total_steps:
            break
        out.add(step)
        k += 1
    out.add(total_steps)
    return tuple(sorted(out))


def total_steps(config: TrainConfig) -> int:
    """Steps the budget allows: tokens // B, steps, or FLOPs // (6 N B) ([K] 2.1)."""
    b = config.batch_tokens
    if config.steps is not None:
        steps = config.steps
        what = f"steps = {config.steps}"
    elif config.tokens is not None:
        steps = config.tokens // b
        what = f"tokens = {config.tokens}"
    else:
        per_step = training_flops_per_token(config.model) * b
        steps = int(config.flops // per_step)
        what = f"flops = {config.flops:.4g} (one step of {b} tokens costs 6 N B = {per_step:.4g})"
    if steps < 1:
        raise LmscaleError(f"budget {what}: smaller than one step of batch_tokens = {b}")
    return steps


def default_learning_rate(config: TrainConfig) -> float:
    """The peak LR when ``lr`` is not given: ``lr_scale`` x the architecture's rule.

    Transformers (and Universal Transformers, by their applied N): [K] eq.
    D.1; LSTMs: :func:`lmscale.models.shapes.lstm_learning_rate`. With
    ``lr_reference_batch`` set, times sqrt(batch_tokens / lr_reference_batch)
    (the square-root rule for Adam, Malladi et al. 2022).
    """
    return recipe_learning_rate(applied_non_embedding_params(config.model), config.model.architecture,
                                config.lr_scale, config.batch_tokens, config.lr_reference_batch)


def estimate_memory(spec: ModelSpec, micro_tokens: int, *, device_type: str = "cpu",
                    keep_best: bool = False) -> int:
    """Bytes one rank needs: fp32 weights, gradients and two AdamW moments (16 per
    parameter, +4 for a copy of the best weights), activations saved for the
    backward of one micro-batch, and the runtime itself."""
    d_ff = spec.d_ff or 4 * spec.d_model
    biases_and_norms = spec.n_layer * (9 * spec.d_model + d_ff) + 2 * spec.d_model
    params = non_embedding_params(spec) + embedding_params(spec) + biases_and_norms
    per_param = 16 + (4 if keep_best else 0) + (2 if device_type == "cuda" else 0)
    applications = spec.n_layer
    per_token_layer = 10 * spec.d_model + 2 * d_ff + 2 * spec.n_head
    if spec.architecture != "lstm" and materialises_scores(device_type, spec.n_ctx, spec.dropout):
        per_token_layer += 2 * spec.n_head * spec.n_ctx
    act_bytes = 2 if device_type == "cuda" else 4
    activations = micro_tokens * (applications * per_token_layer + 4 * spec.d_model) * act_bytes
    head = min(micro_tokens, 1 << 16) * spec.n_vocab * 4 // 16  # chunked logits buffer
    return int(params * per_param + activations + head + RUNTIME_BYTES)


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def choose_micro_batch(config: TrainConfig, rank_tokens: int, world_size: int, device_type: str,
                       available: int | None) -> int:
    """Micro-batch tokens per pass: the given one, or the largest that fits.

    Chosen automatically, it is at most ``AUTO_MICRO_TOKENS[device]``; the
    noise scale does not constrain it (a step that measures it splits a
    one-pass batch, see :class:`RunPlan`).
    """
    n_ctx = config.model.n_ctx
    keep_best = config.early_stopping
    if config.micro_batch_tokens is not None:
        micro = config.micro_batch_tokens
        if rank_tokens % micro:
            raise LmscaleError(
                f"micro_batch_tokens = {micro}: must divide the per-rank batch "
                f"{rank_tokens} = batch_tokens {config.batch_tokens} / {world_size} ranks")
        return micro
    seqs = rank_tokens // n_ctx
    cap = AUTO_MICRO_TOKENS.get(device_type, AUTO_MICRO_TOKENS["cpu"])
    for parts in range(1, seqs + 1):
        if seqs % parts:
            continue
        micro = rank_tokens // parts
        if micro > cap and parts < seqs:
            continue
        if available is None or estimate_memory(
            config.model, micro, device_type=device_type, keep_best=keep_best
        ) <= MEMORY_FRACTION * available:
            return micro
    return n_ctx  # one sequence; make_plan reports it if even that does not fit


def make_plan(config: TrainConfig, *, world_size: int = 1, device_type: str = "cpu",
              available_memory: int | None = None) -> RunPlan:
    """Resolve the budget, batches, schedule and curve of ``config``; raise on what cannot run."""
    spec = config.model
    steps = total_steps(config)
    b = config.batch_tokens
    seqs = b // spec.n_ctx
    if seqs % world_size:
        raise LmscaleError(
            f"batch_tokens = {b} ({seqs} sequences of n_ctx = {spec.n_ctx}): "
            f"not divisible among {world_size} data-parallel ranks")
    rank_tokens = b // world_size
    micro = choose_micro_batch(config, rank_tokens, world_size, device_type, available_memory)
    need = estimate_memory(spec, micro, device_type=device_type, keep_best=config.early_stopping)
    if available_memory is not None and need > available_memory:
        raise LmscaleError(
            f"model {spec.n_layer}x{spec.d_model} (N = {non_embedding_params(spec):,}) with a micro-batch "
            f"of {micro} tokens needs about {_fmt_bytes(need)} (weights, gradients, AdamW state and "
            f"activations), but only {_fmt_bytes(available_memory)} is available on {device_type}; "
            f"use a smaller micro_batch_tokens or model")
    run_tokens = steps * b
    dataset = run_tokens if config.dataset_tokens is None else min(config.dataset_tokens, run_tokens)
    if dataset < spec.n_ctx:
        raise LmscaleError(
            f"dataset_tokens = {config.dataset_tokens}: smaller than one sequence of n_ctx = {spec.n_ctx}")
    peak_lr = float(config.lr) if config.lr is not None else default_learning_rate(config)
    warmup = default_warmup_steps(steps) if config.warmup_steps is None else config.warmup_steps
    eval_every = config.eval_every or (max(1, steps // 50) if config.early_stopping else 0)
    micro_steps = rank_tokens // micro
    noise_passes, noise_every = micro_steps, config.noise_every
    noise: tuple[int, int] | None = None
    if config.noise_scale and world_size > 1:  # per-rank against all-reduced gradients, each step
        noise, noise_every = (rank_tokens, b), 1
    elif config.noise_scale and micro < rank_tokens:  # B_small: one micro-batch
        noise = (micro, b)
    elif config.noise_scale and seqs >= 2:  # one pass: measuring steps split it
        noise_passes = next(p for p in range(2, seqs + 1) if seqs % p == 0)
        noise = (rank_tokens // noise_passes, b)
    return RunPlan(
        total_steps=steps, batch_tokens=b, rank_batch_tokens=rank_tokens, micro_batch_tokens=micro,
        micro_steps=micro_steps, world_size=world_size, dataset_tokens=dataset,
        peak_lr=peak_lr, warmup_steps=warmup,
        curve_steps=log_spaced_steps(steps, config.curve_points_per_decade),
        eval_every=eval_every, noise_batches=noise, memory_bytes=need,
        noise_passes=noise_passes, noise_every=noise_every,
    )


__all__ = ["RunPlan", "default_learning_rate", "make_plan", "log_spaced_steps", "total_steps", "estimate_memory"]
