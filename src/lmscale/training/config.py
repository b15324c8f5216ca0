"""The run specification: everything one training run needs ([K] section 7).

Pure Python (no torch), so sweeps can expand, hash and validate runs without
a training stack. Every knob is a documented field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from lmscale.errors import SpecError, build_from_fields
from lmscale.models.spec import ModelSpec

SCHEDULES = ("cosine", "wsd", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
BUDGET_KINDS = ("tokens", "steps", "flops")


@dataclass(frozen=True)
class TrainConfig:
    """One run: a model, a data set size or compute budget, and the recipe.

    Exactly one of ``tokens``, ``steps`` and ``flops`` sets the budget.

    Attributes:
        model: the model shape.
        data_dir: directory of prepared token shards (``lmscale data prepare``).
        tokens: training budget D in tokens (the first D tokens of the fixed
            shuffled order; the run repeats them if it trains longer).
        steps: budget in optimizer steps.
        flops: budget in training FLOPs (6 N per token, [K] section 2.1).
        dataset_tokens: size of the training set drawn from the shards, if
            smaller than the budget (multiple epochs; for L(N, D) studies).
            ``None`` means as many tokens as the budget needs.
        batch_tokens: batch size B in tokens (a multiple of ``model.n_ctx``).
        micro_batch_tokens: tokens per forward/backward pass; B is reached by
            gradient accumulation. ``None`` chooses it from memory.
        lr: peak learning rate; ``None`` uses LR(N) of [K] eq. D.1.
        schedule: ``cosine`` (linear warm-up, cosine decay to zero, [K]),
            ``wsd`` (warm-up, stable, linear decay over ``decay_fraction``),
            or ``constant`` after warm-up.
        warmup_steps: linear warm-up length; ``None`` = min(3000, 5% of steps).
        decay_fraction: final fraction of steps spent decaying under ``wsd``.
        min_lr_ratio: learning rate at the end, as a fraction of the peak.
        weight_decay: AdamW decoupled weight decay.
        beta1, beta2, eps: AdamW moments.
        grad_clip: clip the global gradient norm to this (0 disables).
        seed: seeds initialisation and data order.
        early_stopping: stop when test loss has not improved for
            ``patience`` evaluations ("trained to convergence" for L(N)).
        patience: evaluations without improvement before stopping.
        early_stopping_start: fraction of the budget before which evaluations
            without improvement are not counted: small models sit on the
            unigram-loss plateau for a while early on, which is not
            convergence (the best weights are tracked from the start).
        eval_tokens: tokens of each test split used per evaluation.
        eval_distributions: names of the distributions to evaluate
            (``None``: every prepared one).
        curve_points_per_decade: learning-curve points per decade of tokens.
        noise_scale: measure the gradient noise scale B_simple ([K] 5.1).
        noise_every: measure it every this many steps (the EMA of
            ``noise_ema_decay`` averages the measurements, so its window is
            about ``noise_every / (1 - noise_ema_decay)`` steps). A measuring
            step whose batch is one pass splits it in two halves (B_small =
            B / 2), which costs a second forward/backward at small shapes;
            a batch accumulated over micro-batches measures for free.
        precision: ``fp32``; ``bf16`` (autocast with fp32 master weights,
            fp32 softmax and optimizer); or ``auto``: bf16 where the device
            has native bf16 matmuls that measured faster than fp32 on this
            machine and the model is wide enough to gain from them
            (:func:`lmscale.training.precision.resolve_precision`). The
            precision used is recorded in the run record; a resumed run
            keeps the one it started with.
        device: ``auto`` (CUDA if present), ``cpu`` or ``cuda``.
        compile: ``torch.compile`` the model (``None``: on CUDA only).
        threads: torch intra-op threads (``None``: on a CPU, 1 or all this
            process may use, whichever a short trial of the run measured
            faster here for its shape, cached per machine; see
            :mod:`lmscale.training.step_timing`).
        checkpoint_dir: where checkpoints go (``None``: no checkpoints).
        checkpoint_every_s: seconds between checkpoints.
        eval_other_tokens: tokens of each test split per evaluation for the
            distributions other than the training one (``None``: ``eval_tokens``);
            smaller values keep the cost of measuring transfer low.
        final_eval_tokens: tokens of the training distribution's test split
            scored once at the end for the loss per context position and its
            standard error (forward only; ``None``: the whole split, at most
            ``FINAL_EVAL_CAP``).
        lr_scale: multiplies the default learning-rate rule (LR(N) of [K] eq.
            D.1 for Transformers, ``lstm_learning_rate`` for LSTMs) for
            recipes with far fewer steps than [K]'s 2.5e5; ignored when
            ``lr`` is given.
        lr_reference_batch: batch size (tokens) at which the default rule
            holds; at another ``batch_tokens`` it is multiplied by
            sqrt(batch_tokens / lr_reference_batch), the square-root rule for
            Adam (Malladi et al. 2022). A batch-size sweep sets it so each
            batch trains near its own best rate, as the steps/tokens
            trade-off of [K] 5.1 (McCandlish et al. 2018) assumes; at one
            rate for all, large batches are slowed and B_crit comes out low.
            ``None``: the rule at every batch; ignored when ``lr`` is given.
        eval_every: also evaluate the test loss every this many steps (these
            evaluations join the curve). ``None``: only at the log-spaced
            curve points, or 50 evenly spaced ones with ``early_stopping``.
        noise_ema_decay: EMA decay of the two squared gradient norms behind
            the noise scale (averaged before the ratio, [K] 5.1).
        loss_ema_decay: EMA decay of the smoothed training loss.
        divergence_loss: smoothed training loss above which the run counts as
            diverged (as does any non-finite loss); ``None``: 2 ln(n_vocab),
            twice the loss of a uniform prediction.
    """

    model: ModelSpec
    data_dir: str
    tokens: int | None = None
    steps: int | None = None
    flops: float | None = None
    dataset_tokens: int | None = None
    batch_tokens: int = 8192
    micro_batch_tokens: int | None = None
    lr: float | None = None
    schedule: str = "cosine"
    warmup_steps: int | None = None
    decay_fraction: float = 0.2
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = 0
    early_stopping: bool = False
    patience: int = 3
    eval_tokens: int = 65536
    eval_distributions: tuple[str, ...] | None = None
    curve_points_per_decade: int = 8
    noise_scale: bool = True
    noise_every: int = 8
    precision: str = "auto"
    device: str = "auto"
    compile: bool | None = None
    threads: int | None = None
    checkpoint_dir: str | None = None
    checkpoint_every_s: float = 60.0
    eval_every: int | None = None
    noise_ema_decay: float = 0.95
    loss_ema_decay: float = 0.9
    divergence_loss: float | None = None
    eval_other_tokens: int | None = None
    final_eval_tokens: int | None = None
    lr_scale: float = 1.0
    early_stopping_start: float = 0.0
    lr_reference_batch: int | None = None
    _extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", ModelSpec.from_dict(self.model))
        if isinstance(self.eval_distributions, list):
            object.__setattr__(self, "eval_distributions", tuple(self.eval_distributions))
        self.validate()

    def validate(self, where: str | None = None) -> None:
        """Raise :class:`SpecError` on the first bad field."""
        given = [k for k in BUDGET_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise SpecError("budget", given or None, "exactly one of tokens, steps, flops", where)
        for name in ("tokens", "steps", "dataset_tokens", "batch_tokens", "micro_batch_tokens",
                     "eval_every", "eval_other_tokens", "noise_every", "final_eval_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise SpecError(name, value, "a positive integer", where)
        if self.flops is not None and not (isinstance(self.flops, int | float) and self.flops > 0):
            raise SpecError("flops", self.flops, "a positive number of FLOPs", where)
        if self.batch_tokens % self.model.n_ctx != 0:
            raise SpecError(
                "batch_tokens", self.batch_tokens, f"a positive multiple of n_ctx = {self.model.n_ctx}", where
            )
        if self.micro_batch_tokens is not None and (
            self.micro_batch_tokens % self.model.n_ctx or self.batch_tokens % self.micro_batch_tokens
        ):
            raise SpecError(
                "micro_batch_tokens", self.micro_batch_tokens,
                f"a multiple of n_ctx = {self.model.n_ctx} that divides batch_tokens = {self.batch_tokens}", where,
            )
        if self.lr is not None and not (isinstance(self.lr, int | float) and self.lr > 0):
            raise SpecError("lr", self.lr, "a positive learning rate or null for [K] eq. D.1", where)
        if isinstance(self.lr_scale, bool) or not (isinstance(self.lr_scale, int | float) and self.lr_scale > 0):
            raise SpecError("lr_scale", self.lr_scale, "a positive multiplier of the default learning rate", where)
        ref = self.lr_reference_batch
        if ref is not None and (isinstance(ref, bool) or not isinstance(ref, int) or ref < 1):
            raise SpecError("lr_reference_batch", ref, "a batch size in tokens (a positive integer) or null", where)
        if self.schedule not in SCHEDULES:
            raise SpecError("schedule", self.schedule, f"one of {', '.join(SCHEDULES)}", where)
        if self.precision not in PRECISIONS:
            raise SpecError("precision", self.precision, f"one of {', '.join(PRECISIONS)}", where)
        if self.device not in ("auto", "cpu", "cuda"):
            raise SpecError("device", self.device, "auto, cpu or cuda", where)
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise SpecError("min_lr_ratio", self.min_lr_ratio, "a number in [0, 1]", where)
        if not 0.0 < self.decay_fraction <= 1.0:
            raise SpecError("decay_fraction", self.decay_fraction, "a number in (0, 1]", where)
        if isinstance(self.early_stopping_start, bool) or not (
            isinstance(self.early_stopping_start, int | float) and 0.0 <= self.early_stopping_start < 1.0
        ):
            raise SpecError("early_stopping_start", self.early_stopping_start, "a fraction in [0, 1)", where)
        if self.patience < 1:
            raise SpecError("patience", self.patience, "a positive integer", where)
        for name in ("noise_ema_decay", "loss_ema_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
                raise SpecError(name, value, "a number in [0, 1)", where)
        if self.divergence_loss is not None and not (
            isinstance(self.divergence_loss, int | float) and self.divergence_loss > 0
        ):
            raise SpecError("divergence_loss", self.divergence_loss, "a positive loss or null", where)

    # -- identity -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        data["model"] = self.model.to_dict()
        if data["eval_distributions"] is not None:
            data["eval_distributions"] = list(data["eval_distributions"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | None = None) -> TrainConfig:
        """Build from a mapping (a run record's ``config``); unknown keys are an error naming the key."""
        data = dict(data)
        if isinstance(data.get("model"), dict):
            data["model"] = ModelSpec.from_dict(dict(data["model"]), where=where)
        return build_from_fields(cls, data, "run field", where)

    #: Fields that change where or how fast a run executes but not its result.
    EXECUTION_FIELDS = ("device", "compile", "threads", "checkpoint_dir", "checkpoint_every_s")

    #: Fields added after the first release: left out of the id at their
    #: default, so adding a field never changes the id of an existing run.
    #: ``precision``: an explicit ``fp32`` or ``bf16`` is part of the id (the
    #: two are different measurements and may share a store); ``auto`` is
    #: not: it names "the precision this study's machine chose", which the
    #: record and the store hold, and a sweep keeps one per study.
    ID_OMITTED_DEFAULTS: ClassVar[dict[str, Any]] = {
        "eval_every": None, "noise_ema_decay": 0.95, "loss_ema_decay": 0.9, "divergence_loss": None,
        "eval_other_tokens": None, "noise_every": 8, "precision": "auto", "final_eval_tokens": None,
        "lr_scale": 1.0, "early_stopping_start": 0.0, "lr_reference_batch": None,
    }

    #: Fields runs must agree on to train in one pack (lmscale.training.packed): the
    #: model shape, the batch, what is evaluated and how they execute; the others
    #: (seed, lr, schedule, budget, dataset size, early stopping, ...) may differ.
    PACK_FIELDS = ("model", "data_dir", "batch_tokens", "micro_batch_tokens", "eval_tokens",
                   "eval_other_tokens", "final_eval_tokens", "eval_distributions", "noise_scale", "noise_every", "device",
                   "compile", "threads", "precision", "checkpoint_every_s")

    def pack_key(self) -> str | None:
        """Runs with equal keys can train packed; ``None``: this run trains alone (an LSTM,
        dropout, or ``compile = true``)."""
        spec = self.model
        if spec.architecture not in ("transformer", "universal") or spec.dropout > 0 or self.compile:
            return None
        data = self.to_dict()
        return json.dumps({k: data[k] for k in self.PACK_FIELDS}, sort_keys=True)

    #: Largest default final evaluation (tokens) when ``final_eval_tokens`` is None.
    FINAL_EVAL_CAP: ClassVar[int] = 1 << 18

    def final_eval_budget(self) -> int:
        """Tokens of the final per-position evaluation (``final_eval_tokens`` or the default cap)."""
        return self.final_eval_tokens if self.final_eval_tokens is not None else self.FINAL_EVAL_CAP

    def run_id(self) -> str:
        """Stable id: hash of everything that determines the run's result."""
        data = self.to_dict()
        for key in self.EXECUTION_FIELDS:
            data.pop(key, None)
        for key, default in self.ID_OMITTED_DEFAULTS.items():
            if key in data and data[key] == default:
                data.pop(key)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


__all__ = ["TrainConfig", "SCHEDULES", "BUDGET_KINDS", "PRECISIONS", "asdict"]
