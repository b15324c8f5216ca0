"""The one model specification every architecture is built from ([K] section 2.1).

Pure Python (no torch): the accounting, the planner and the sweep files use
it without a training stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lmscale.errors import SpecError, build_from_fields

ARCHITECTURES = ("transformer", "lstm", "universal")

#: Largest value of a size field (layers, widths, context, vocabulary): far beyond any model,
#: small enough that parameter and FLOP counts stay finite floats.
MAX_SIZE = 2**40

#: Longest context for which a CPU computes attention from the materialised [T, T] scores
#: (``lmscale.models.transformer.scores_attention``) rather than PyTorch's flash kernel.
#: Measured forward and backward on a 2-core AMD EPYC (torch 2.13, fp32, 2 threads): at T = 64
#: the scores path takes 1.3 ms against 2.3 (batch 32, 2 heads of 6) and 2.5 against 5.3 (5 heads
#: of 16); at T = 128 the two are within 5%, at 256 within 10% (at 1 thread the scores path is 9%
#: slower there); at T = 1024 flash is 2.2x faster, and its memory does not grow as T^2.
SCORES_MAX_CTX = 128


def scores_path(device_type: str, n_ctx: int, dropout: float) -> bool:
    """Whether attention over ``n_ctx`` tokens runs from the materialised scores (else PyTorch's kernel)."""
    return device_type == "cpu" and dropout == 0.0 and n_ctx <= SCORES_MAX_CTX


def materialises_scores(device_type: str, n_ctx: int, dropout: float) -> bool:
    """Whether a Transformer's attention keeps its [T, T] probabilities for the backward pass: on the
    scores path, and with dropout (which PyTorch's kernels apply to the probabilities)."""
    return dropout > 0 or scores_path(device_type, n_ctx, dropout)


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a language model.

    Attributes:
        architecture: ``"transformer"`` (decoder-only, pre-LN, [K] 2.1),
            ``"lstm"`` (the paper's recurrent baseline) or ``"universal"``
            (one Transformer block applied ``n_layer`` times, shared weights).
        n_layer: number of blocks (LSTM: stacked recurrent layers).
        d_model: residual stream width (LSTM: hidden size).
        n_head: attention heads; ``d_model`` must be divisible by it
            (d_attn = d_model, so d_head = d_model / n_head). Ignored by LSTMs.
        d_ff: feed-forward width; ``None`` means the standard 4 * d_model.
        n_ctx: context length in tokens.
        n_vocab: vocabulary size (must match the tokenizer of the data).
        dropout: dropout probability, in [0, 1).
        tied_embeddings: share the input embedding with the output
            projection (the de-embedding of [K] table 1 is then free).
    """

    architecture: str = "transformer"
    n_layer: int = 2
    d_model: int = 128
    n_head: int = 4
    d_ff: int | None = None
    n_ctx: int = 256
    n_vocab: int = 4096
    dropout: float = 0.0
    tied_embeddings: bool = True
    _checked: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.d_ff is None and isinstance(self.d_model, int):
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        self.validate()

    # -- validation -------------------------------------------------------
    def validate(self, where: str | None = None) -> None:
        """Raise :class:`SpecError` naming the first bad field and its value."""
        if self.architecture not in ARCHITECTURES:
            raise SpecError("architecture", self.architecture, f"one of {', '.join(ARCHITECTURES)}", where)
        for name in ("n_layer", "d_model", "n_head", "d_ff", "n_ctx", "n_vocab"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SIZE:
                raise SpecError(name, value, f"a positive integer (at most {MAX_SIZE:.3g})", where)
        if self.architecture != "lstm" and self.d_model % self.n_head != 0:
            raise SpecError(
                "d_model", self.d_model, f"a multiple of n_head = {self.n_head} (d_head = d_model / n_head)", where
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise SpecError("dropout", self.dropout, "a number in [0, 1)", where)
        if not isinstance(self.tied_embeddings, bool):
            raise SpecError("tied_embeddings", self.tied_embeddings, "true or false", where)

    # -- derived shape ----------------------------------------------------
    @property
    def d_attn(self) -> int:
        """Attention width n_head * d_head; equal to d_model here ([K] 2.1)."""
        return self.d_model

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    @property
    def aspect_ratio(self) -> float:
        """d_model / n_layer, the shape knob of [K] figure 5."""
        return self.d_model / self.n_layer

    # -- (de)serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_checked", None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | None = None) -> ModelSpec:
        """Build from a mapping; unknown keys are an error naming the key."""
        return build_from_fields(cls, data, "model field", where)
