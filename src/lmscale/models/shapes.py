"""Pick a model shape for a parameter budget, and [K]'s learning rate for it.

Pure Python (no torch): the planner, the sweep expander and the trainer
share these.

The search of :func:`shape_for_params`:

1. N is the formula of :func:`lmscale.accounting.non_embedding_params`
   (Transformer: (4 + 2 r) n_layer d_model^2 with d_ff = r d_model;
   Universal: one block; LSTM: 8 n_layer d_model^2).
2. d_model moves in steps of the head size (LSTM: steps of 8, then 1).
   For every n_layer within a factor 8 of the depth the aspect ratio asks
   for, the two widths around the exact solution are tried (Universal: the
   width alone sets N, n_layer = d_model / aspect ratio).
3. With the default head size, smaller ones (halving, down to 4) are tried
   too; an explicit ``d_head`` is kept. LSTM widths: steps of 8, then 1.
4. Among the shapes within ``tolerance`` of the target the one of least
   cost wins: |ln(aspect / wanted aspect)| + 10 |ln(N / target)| + ln 2 per
   fallback step (a head half as large costs as much as a factor 2 in
   aspect ratio; a 5% miss in N about as much as a factor 1.6).
"""

from __future__ import annotations

import math
import numbers

from lmscale.accounting import non_embedding_params
from lmscale.errors import LmscaleError, SpecError
from lmscale.models.spec import ARCHITECTURES, ModelSpec

#: [K] eq. D.1 coefficients: LR(N) = LR_A - LR_B ln(N).
LR_A = 0.003239
LR_B = 0.0001395

#: An LSTM's learning rate as a multiple of the Transformer's LR(N) at equal N
#: (see :func:`lstm_learning_rate`).
LSTM_LR_FACTOR = 10.0

#: Weight of |ln(N / target)| against |ln(aspect / wanted aspect)| in the search.
N_ERROR_WEIGHT = 10.0

#: Smallest head size tried when the default one cannot hit the target.
MIN_D_HEAD = 4

#: Most block counts tried per head size; a huge target (N ~ 1e15 and up, thousands of
#: layers) tries a log-spaced subset instead of every count (the cost is smooth in n_layer).
MAX_LAYER_CANDIDATES = 2048


def paper_learning_rate(n_params: float, floor: float = 1e-5) -> float:
    """[K] eq. D.1: LR(N) = 0.003239 - 0.0001395 ln(N), N non-embedding.

    The formula reaches zero at N = exp(0.003239 / 0.0001395) ~ 1.2e10 and is
    negative beyond (larger than any model of [K]); the result is clamped
    to ``max(LR(N), floor)``.
    """
    if isinstance(n_params, bool) or not isinstance(n_params, numbers.Real) or not n_params > 0:
        raise LmscaleError(f"N = {n_params!r}: expected a positive parameter count for LR(N)")
    if not floor > 0:
        raise LmscaleError(f"floor = {floor!r}: expected a positive learning rate")
    return max(LR_A - LR_B * math.log(n_params), floor)


def lstm_learning_rate(n_params: float, floor: float = 1e-5) -> float:
    """The LSTM's peak learning rate: ``LSTM_LR_FACTOR`` x [K] eq. D.1 at the same N.

    [K] gives no rule for its LSTM baseline. LSTMs have no layer norm and
    their gates saturate slowly, so they take far larger steps than a
    Transformer of the same N: on the 512-id Python BPE (n_ctx 64, batch
    2048 tokens, the trainer's warm-up and cosine decay, 5e5 to 2e6 tokens)
    the best of 1e-2, 3e-2, 6e-2 and 1e-1 was 6e-2 to 1e-1 for LSTMs of
    N = 2e3 to 7e4, 15x to 35x eq. D.1, and 1e-2 lost 0.3 to 0.8 nats.
    Ten times eq. D.1 is the rule; ``TrainConfig.lr_scale`` multiplies it
    (and the Transformer's) for short recipes.
    """
    return LSTM_LR_FACTOR * paper_learning_rate(n_params, floor)


def recipe_learning_rate(n_params: float, architecture: str = "transformer", lr_scale: float = 1.0,
                         batch_tokens: float | None = None, lr_reference_batch: float | None = None) -> float:
    """The peak LR of a run without an explicit ``lr``: ``lr_scale`` x the architecture's rule at N
    (:func:`lstm_learning_rate` for LSTMs, else [K] eq. D.1), and with ``lr_reference_batch`` x
    sqrt(batch_tokens / lr_reference_batch) (the square-root rule for Adam, Malladi et al. 2022)."""
    rule = lstm_learning_rate if architecture == "lstm" else paper_learning_rate
    batch = 1.0
    if lr_reference_batch is not None:
        if batch_tokens is None:
            raise LmscaleError("lr_reference_batch needs the run's batch_tokens")
        batch = math.sqrt(float(batch_tokens) / float(lr_reference_batch))
    return float(lr_scale) * batch * rule(n_params)


def default_aspect_ratio(target_n: float) -> float:
    """d_model / n_layer: 32 below N = 1e7, 64 below 1e9, 128 above (GPT-2 small: 64)."""
    return 32.0 if target_n < 1e7 else 64.0 if target_n < 1e9 else 128.0


def default_d_head(target_n: float) -> int:
    """Head size: 32 below N = 1e7, 64 below 1e10, 128 above."""
    return 32 if target_n < 1e7 else 64 if target_n < 1e10 else 128


def _positive(name: str, value: object, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or not value > 0
        or not math.isfinite(value)
    ):
        raise SpecError(name, value, f"a positive {'integer' if integer else 'number'}")


def _candidates(target: float, arch: str, step: int, aspect: float, make) -> list[ModelSpec]:
    """Shapes near the target: widths on the grid ``step`` around the exact solution."""
    per_unit = non_embedding_params(make(1, step)) / step**2  # N / (blocks d_model^2)
    out = []
    if arch == "universal":
        ideal_d = math.sqrt(target / per_unit)
        for d in {
            max(step, math.floor(ideal_d / step) * step),
            max(step, math.ceil(ideal_d / step) * step),
        }:
            out.append(make(max(1, round(d / aspect)), d))
        return out
    ideal_layers = (target / (per_unit * aspect**2)) ** (1 / 3)
    lo, hi = max(1, math.floor(ideal_layers / 8)), math.ceil(ideal_layers * 8) + 2
    layers: range | list[int] = range(lo, hi + 1)
    if len(layers) > MAX_LAYER_CANDIDATES:
        k = MAX_LAYER_CANDIDATES - 1
        layers = sorted({round(lo * (hi / lo) ** (i / k)) for i in range(k + 1)})
    for n_layer in layers:
        ideal_d = math.sqrt(target / (per_unit * n_layer))
        if ideal_d < step / 2:
            break
        for d in {max(step, math.floor(ideal_d / step) * step), math.ceil(ideal_d / step) * step}:
            out.append(make(n_layer, d))
    return out


def shape_for_params(
    target_N: float,
    aspect_ratio: float | None = None,
    d_head: int | None = None,
    n_ctx: int = 256,
    n_vocab: int = 4096,
    architecture: str = "transformer",
    d_ff_ratio: float = 4,
    tolerance: float = 0.10,
    dropout: float = 0.0,
    tied_embeddings: bool = True,
) -> ModelSpec:
    """A :class:`ModelSpec` whose formula N is within ``tolerance`` of ``target_N``.

    Args:
        target_N: wanted non-embedding parameters ([K] N).
        aspect_ratio: wanted d_model / n_layer; ``None``: :func:`default_aspect_ratio`.
        d_head: head size (d_model is a multiple of it); ``None``:
            :func:`default_d_head`, with smaller sizes as fallback.
        n_ctx, n_vocab, dropout, tied_embeddings: copied into the spec.
        architecture: ``transformer``, ``universal`` or ``lstm``.
        d_ff_ratio: d_ff / d_model (rounded to an integer d_ff).
        tolerance: largest accepted |N / target_N - 1|.

    Raises:
        SpecError: a bad argument (names it and its value).
        LmscaleError: no shape within tolerance (e.g. a target below the smallest model).
    """
    _positive("target_N", target_N)
    if architecture not in ARCHITECTURES:
        raise SpecError("architecture", architecture, f"one of {', '.join(ARCHITECTURES)}")
    aspect = default_aspect_ratio(target_N) if aspect_ratio is None else aspect_ratio
    _positive("aspect_ratio", aspect)
    _positive("d_ff_ratio", d_ff_ratio)
    _positive("tolerance", tolerance)
    if d_head is not None:
        _positive("d_head", d_head, integer=True)
    if architecture == "lstm":
        steps = [8, 1]
    elif d_head is not None:
        steps = [d_head]
    else:
        steps = [default_d_head(target_N)]
        while steps[-1] // 2 >= MIN_D_HEAD:
            steps.append(steps[-1] // 2)

    def make_for(step: int):
        def make(n_layer: int, d_model: int) -> ModelSpec:
            return ModelSpec(
                architecture=architecture,
                n_layer=n_layer,
                d_model=d_model,
                n_head=1 if architecture == "lstm" else d_model // step,
                d_ff=max(1, round(d_ff_ratio * d_model)),
                n_ctx=n_ctx,
                n_vocab=n_vocab,
                dropout=dropout,
                tied_embeddings=tied_embeddings,
            )

        return make

    best = None  # (cost, relative error of N, spec)
    for rank, step in enumerate(steps):
        for spec in _candidates(target_N, architecture, step, aspect, make_for(step)):
            ratio = non_embedding_params(spec) / target_N
            err = abs(ratio - 1)
            if err > tolerance:
                continue
            cost = (
                abs(math.log(spec.aspect_ratio / aspect))
                + N_ERROR_WEIGHT * abs(math.log(ratio))
                + math.log(2) * rank
            )
            if best is None or (cost, err) < best[:2]:
                best = (cost, err, spec)
    if best is not None:
        return best[2]
    smallest = non_embedding_params(make_for(steps[-1])(1, steps[-1]))
    what = "d_model step" if architecture == "lstm" else "d_head"
    raise LmscaleError(
        f"target_N = {target_N:g}: no {architecture} shape with {what} in {steps} has N within "
        f"{tolerance:.0%} of it (the smallest such model has N = {smallest}); "
        "choose a larger target, another d_head, or a larger tolerance"
    )


__all__ = [
    "LR_A",
    "LR_B",
    "LSTM_LR_FACTOR",
    "default_aspect_ratio",
    "default_d_head",
    "lstm_learning_rate",
    "paper_learning_rate",
    "shape_for_params",
]
