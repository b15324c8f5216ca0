"""What a run produces: the run record ([K] sections 2-5 need all of it).

Pure Python (no torch): the store, the sweeps and the laws read records
without a training stack. ``RunRecord.to_dict()`` is plain JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("pending", "running", "finished", "early_stopped", "diverged", "failed", "interrupted")


@dataclass
class CurvePoint:
    """One point of the learning curve (log-spaced in tokens).

    Attributes:
        step: optimizer steps done.
        tokens: training tokens seen (step * batch_tokens).
        flops: training FLOPs, 6 N per token ([K] 2.1).
        flops_exact: training FLOPs, 3x forward with the attention and
            logits terms ([K] table 1).
        lr: learning rate at this step.
        train_loss: smoothed (EMA) training loss, nats/token.
        test_loss: test loss per distribution name, nats/token.
        noise_scale: B_simple = tr(Sigma)/|G|^2 in tokens ([K] 5.1) from the
            mean squared norms over the current window of steps (closed at
            each log-spaced curve point), or None.
        grad_sq_small: mean |g|^2 at the micro-batch size over the window (for refits).
        grad_sq_big: mean |g|^2 at the full batch size over the window.
        wall_time_s: seconds since the run started.
        noise_scale_se: standard error of ``noise_scale`` (delta method over the
            window's steps), or None.
        noise_steps: steps in the window behind ``noise_scale``.
    """

    step: int
    tokens: int
    flops: float
    flops_exact: float
    lr: float
    train_loss: float
    test_loss: dict[str, float] = field(default_factory=dict)
    noise_scale: float | None = None
    grad_sq_small: float | None = None
    grad_sq_big: float | None = None
    wall_time_s: float = 0.0
    noise_scale_se: float | None = None
    noise_steps: int = 0


@dataclass
class RunRecord:
    """Everything the fits need from one run.

    Attributes:
        run_id: ``TrainConfig.run_id()``.
        config: ``TrainConfig.to_dict()``.
        status: one of ``STATUSES``.
        non_embedding_params: N by [K]'s formula (what fits use by default).
        exact_non_embedding_params: N counted on the instantiated model
            (biases and norms included).
        embedding_params: token (and position) embedding parameters.
        flops_per_token: forward FLOPs per token with every term ([K] table 1).
        train_distribution: name of the training distribution.
        curve: learning curve, log-spaced, ending at the last step.
        final_test_loss: test loss per distribution at the end (or at the
            best point for early-stopped runs).
        best_test_loss: lowest test loss on the training distribution.
        per_position_loss: test loss at each context position t = 1..n_ctx, from
            the final evaluation (``TrainConfig.final_eval_tokens``).
        per_position_se: standard error of each of those (clustered by the
            test documents the sequences start in, so correlated text counts once).
        per_position_se_shape: standard error of each position's difference
            from the mean over positions (the profile L(t), without the
            document effect shared by every position).
        steps, tokens: totals trained.
        batch_tokens: batch size B in tokens.
        wall_time_s, tokens_per_second: speed.
        mfu: model FLOPs utilisation against ``peak_flops``.
        peak_flops: measured matmul peak (FLOP/s) in the run's precision.
        device: what ran it (e.g. ``cpu (2 threads)``, ``NVIDIA H100``).
        versions: lmscale, torch, python versions.
        error: message for failed/diverged runs.
        total_steps: steps the budget allows (``steps`` is fewer if the run
            stopped early, diverged or was interrupted).
        micro_batch_tokens: tokens per forward/backward pass on one device.
        world_size: data-parallel processes (torchrun ranks).
        peak_lr: the peak learning rate used (LR(N) of [K] eq. D.1 by default).
        warmup_steps: linear warm-up steps used.
        train_time_s: seconds spent in training steps (``tokens_per_second``
            and ``mfu`` use it; evaluations and checkpoints are left out).
        eval_time_s: seconds spent evaluating the test loss.
        precision: ``fp32`` or ``bf16`` (autocast), what the run trained in
            (``precision = "auto"`` resolved; empty in records from before).
        packed_with: for a run trained packed with others of its shape
            (:mod:`lmscale.training.packed`), how many runs the pack held
            at its start (1: alone). Its ``tokens_per_second`` and ``mfu`` are
            then its own share of the pack's.
    """

    run_id: str
    config: dict[str, Any]
    status: str = "pending"
    non_embedding_params: int = 0
    exact_non_embedding_params: int = 0
    embedding_params: int = 0
    flops_per_token: float = 0.0
    train_distribution: str = ""
    curve: list[CurvePoint] = field(default_factory=list)
    final_test_loss: dict[str, float] = field(default_factory=dict)
    best_test_loss: float | None = None
    per_position_loss: list[float] = field(default_factory=list)
    steps: int = 0
    tokens: int = 0
    batch_tokens: int = 0
    wall_time_s: float = 0.0
    tokens_per_second: float = 0.0
    mfu: float | None = None
    peak_flops: float | None = None
    device: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    total_steps: int = 0
    micro_batch_tokens: int = 0
    world_size: int = 1
    peak_lr: float | None = None
    warmup_steps: int = 0
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    precision: str = ""
    packed_with: int = 1
    per_position_se: list[float] = field(default_factory=list)
    per_position_se_shape: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        data = dict(data)
        data["curve"] = [CurvePoint(**p) for p in data.get("curve", [])]
        return cls(**data)
