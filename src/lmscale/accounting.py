"""Parameters and FLOPs of a model shape, the way [K] counts them ([K] 2.1, table 1).

Pure Python: importing this module never imports torch. Only
:func:`exact_non_embedding_params` touches torch, lazily, to count an
instantiated model (on the ``meta`` device when given a spec, so counting
a large model costs no memory).

Counting conventions (all per token, forward pass unless said otherwise):

* **N** (:func:`non_embedding_params`) is [K]'s formula: weight matrices of
  the blocks only; biases, layer norms, embeddings and the output matrix are
  left out. A Universal Transformer's shared block is counted **once**; its
  FLOPs count the ``n_layer`` applications.
* **LSTM**: each layer has the four gate matrices ``4 h (d_in + h)`` (input
  and recurrent weights, ``d_in = h = d_model``), so N = 8 n_layer d_model^2.
  Its two bias vectors (``8 h`` per layer) are left out of N, like the
  Transformer's biases, and counted by the exact count.
* Forward FLOPs of a matrix product are 2 x its weights ([K] table 1);
  element-wise work (softmax, GELU, LSTM gates, norms) is not counted.
* The embedding gets [K]'s nominal 4 d_model FLOPs for every architecture.
* The logits (de-embedding) cost 2 d_model n_vocab whether or not the output
  matrix is tied to the input embedding.
"""

from __future__ import annotations

from typing import Any

from lmscale.errors import LmscaleError
from lmscale.models.spec import ModelSpec

#: FLOPs in one petaflop/s-day: 1e15 FLOP/s * 86400 s ([K] section 1.2).
PF_DAY = 8.64e19

#: Operation names of :func:`forward_flops_breakdown`, per architecture, in table order.
OPERATIONS = {
    "transformer": ("embedding", "qkv", "attention_mask", "projection", "feedforward", "logits"),
    "universal": ("embedding", "qkv", "attention_mask", "projection", "feedforward", "logits"),
    "lstm": ("embedding", "lstm", "logits"),
}

#: Operations each switch of the FLOP functions turns on or off.
SWITCHED = {"attention": "attention_mask", "logits": "logits", "embedding": "embedding"}


def _check(spec: Any) -> ModelSpec:
    if not isinstance(spec, ModelSpec):
        raise LmscaleError(f"expected a ModelSpec, got {type(spec).__name__}: {spec!r}")
    spec.validate()
    return spec


def _blocks(spec: ModelSpec) -> int:
    """Number of distinct blocks that hold parameters (1 for a Universal Transformer)."""
    return 1 if spec.architecture == "universal" else spec.n_layer


# -- parameters -------------------------------------------------------------


def lstm_layer_params(d_in: int, d_hidden: int) -> int:
    """Weights of one LSTM layer: four gates, each [d_hidden, d_in + d_hidden] (no biases)."""
    return 4 * d_hidden * (d_in + d_hidden)


def non_embedding_params(spec: ModelSpec) -> int:
    """N, [K] table 1: 2 d_model n_layer (2 d_attn + d_ff) weight-matrix parameters.

    Universal Transformer: one block (n_layer = 1 in the formula).
    LSTM: 4 h (d_in + h) per layer with d_in = h = d_model.
    """
    spec = _check(spec)
    d = spec.d_model
    if spec.architecture == "lstm":
        return spec.n_layer * lstm_layer_params(d, d)
    return 2 * d * _blocks(spec) * (2 * spec.d_attn + spec.d_ff)


def applied_non_embedding_params(spec: ModelSpec) -> int:
    """Non-embedding weights used per token: N, times n_layer for a Universal Transformer.

    This is the N of the C = 6 N rule ([K] 2.1): shared weights applied
    n_layer times cost n_layer times the FLOPs.
    """
    spec = _check(spec)
    reuse = spec.n_layer if spec.architecture == "universal" else 1
    return reuse * non_embedding_params(spec)


def embedding_params(spec: ModelSpec) -> int:
    """Embedding parameters, [K] table 1: (n_vocab + n_ctx) d_model.

    LSTM: n_vocab d_model (no position embedding). An untied output matrix
    (``tied_embeddings=False``) adds n_vocab d_model: it is counted here, not
    in N, because [K] leaves the de-embedding out of N.
    """
    spec = _check(spec)
    rows = spec.n_vocab if spec.architecture == "lstm" else spec.n_vocab + spec.n_ctx
    if not spec.tied_embeddings:
        rows += spec.n_vocab
    return rows * spec.d_model


def param_breakdown(spec: ModelSpec) -> dict[str, int]:
    """Parameters per operation of [K] table 1 (weight matrices only).

    ``embedding`` holds :func:`embedding_params`; the other entries sum to
    :func:`non_embedding_params`. ``logits`` is 0 (tied: the output matrix is
    the embedding; untied: it is counted in ``embedding``).
    """
    spec = _check(spec)
    d, blocks = spec.d_model, _blocks(spec)
    out = {"embedding": embedding_params(spec)}
    if spec.architecture == "lstm":
        out["lstm"] = spec.n_layer * lstm_layer_params(d, d)
    else:
        out["qkv"] = blocks * d * 3 * spec.d_attn
        out["attention_mask"] = 0
        out["projection"] = blocks * spec.d_attn * d
        out["feedforward"] = blocks * 2 * d * spec.d_ff
    out["logits"] = 0
    return out


def exact_non_embedding_params(model_or_spec: Any, include_biases_and_norms: bool = True) -> int:
    """Count the non-embedding parameters of an instantiated model.

    A :class:`ModelSpec` is built on the ``meta`` device (no memory). Left
    out: parameters of every ``nn.Embedding`` and of the output head (a
    module named ``lm_head`` at any depth, or what a Hugging Face model's
    ``get_output_embeddings()`` returns; tied weights are counted once, as
    the embedding). With ``include_biases_and_norms=False`` only matrices
    (``ndim >= 2``) count, which must equal :func:`non_embedding_params`
    for the Transformers of [K] (lmscale's, or GPT-2's).
    """
    import torch

    model = model_or_spec
    if isinstance(model_or_spec, ModelSpec):
        from lmscale.models.factory import build_model

        with torch.device("meta"):
            model = build_model(_check(model_or_spec))
    if not isinstance(model, torch.nn.Module):
        raise LmscaleError(f"expected a ModelSpec or a torch module, got {type(model).__name__}")
    heads = set()
    for module in model.modules():
        output = getattr(module, "get_output_embeddings", None)
        head = output() if callable(output) else None
        if isinstance(head, torch.nn.Module):
            heads.add(id(head))
    excluded = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) or name.rsplit(".", 1)[-1] == "lm_head" or id(module) in heads:
            excluded.update(id(p) for p in module.parameters())
    return sum(
        p.numel()
        for p in model.parameters()
        if id(p) not in excluded and (include_biases_and_norms or p.ndim >= 2)
    )


# -- FLOPs ------------------------------------------------------------------


def forward_flops_breakdown(
    spec: ModelSpec, attention: bool = True, logits: bool = True, embedding: bool = True
) -> dict[str, int]:
    """Forward FLOPs per token per operation, [K] table 1.

    embedding 4 d_model; qkv 2 n_layer d_model 3 d_attn; attention_mask
    2 n_layer n_ctx d_attn (QK^T and AV, causal: on average half the context);
    projection 2 n_layer d_attn d_model; feedforward 2 n_layer 2 d_model d_ff;
    logits 2 d_model n_vocab. A Universal Transformer has n_layer applications
    of its block. LSTM: ``lstm`` = 2 n_layer 4 h (d_in + h). Operations turned
    off by a switch are left out of the dict, so its values sum to the total.
    """
    spec = _check(spec)
    d, n, dattn = spec.d_model, spec.n_layer, spec.d_attn
    flops = {"embedding": 4 * d}
    if spec.architecture == "lstm":
        flops["lstm"] = 2 * n * lstm_layer_params(d, d)
    else:
        flops["qkv"] = 2 * n * d * 3 * dattn
        flops["attention_mask"] = 2 * n * spec.n_ctx * dattn
        flops["projection"] = 2 * n * dattn * d
        flops["feedforward"] = 2 * n * 2 * d * spec.d_ff
    flops["logits"] = 2 * d * spec.n_vocab
    switches = {"attention": attention, "logits": logits, "embedding": embedding}
    for switch, op in SWITCHED.items():
        if not switches[switch]:
            flops.pop(op, None)
    return flops


def forward_flops_per_token(
    spec: ModelSpec, attention: bool = True, logits: bool = True, embedding: bool = True
) -> int:
    """Total forward FLOPs per token: the sum of :func:`forward_flops_breakdown`.

    With ``logits=False, embedding=False`` this is [K]'s
    C_fwd = 2N + 2 n_layer n_ctx d_attn.
    """
    return sum(forward_flops_breakdown(spec, attention, logits, embedding).values())


def training_flops_per_token(
    spec: ModelSpec,
    exact: bool = False,
    attention: bool = True,
    logits: bool = True,
    embedding: bool = True,
) -> int:
    """Training FLOPs per token (forward + backward = 3 x forward).

    ``exact=False``: [K] 2.1's C = 6 N, with N the weights applied per token
    (:func:`applied_non_embedding_params`); the switches are ignored.
    ``exact=True``: 3 x :func:`forward_flops_per_token` with the switches.
    """
    if exact:
        return 3 * forward_flops_per_token(spec, attention, logits, embedding)
    return 6 * applied_non_embedding_params(spec)


def training_flops(
    spec: ModelSpec,
    tokens: float,
    exact: bool = False,
    attention: bool = True,
    logits: bool = True,
    embedding: bool = True,
) -> float:
    """Training compute C = 6 N D ([K] 2.1), or D x the exact per-token count."""
    if isinstance(tokens, bool) or not isinstance(tokens, int | float) or not tokens >= 0:
        raise LmscaleError(f"tokens = {tokens!r}: expected a non-negative number of tokens")
    per_token = training_flops_per_token(spec, exact, attention, logits, embedding)
    return per_token * tokens


def pf_days(flops: float) -> float:
    """FLOPs -> petaflop/s-days (1 PF-day = 8.64e19 FLOPs)."""
    return flops / PF_DAY


def flops_from_pf_days(x: float) -> float:
    """Petaflop/s-days -> FLOPs (1 PF-day = 8.64e19 FLOPs)."""
    return x * PF_DAY


def describe(
    spec: ModelSpec, attention: bool = True, logits: bool = True, embedding: bool = True
) -> dict[str, Any]:
    """Every number of [K] table 1 for ``spec``, with how each is counted (``counting``).

    The switches choose the terms of ``forward_flops_per_token`` and of the
    exact training count; the shares are of the forward with every term on.
    This is what ``lmscale model describe`` prints. The exact counts need
    torch (``None`` without it).
    """
    switches = {"attention": attention, "logits": logits, "embedding": embedding}
    n = non_embedding_params(spec)
    exact = exact_weights = None
    try:
        exact = exact_non_embedding_params(spec)
        exact_weights = exact_non_embedding_params(spec, include_biases_and_norms=False)
    except ImportError:  # torch is the 'train' extra: without it only the formulas
        pass
    full = forward_flops_breakdown(spec)
    full_total = sum(full.values())
    on = ", ".join(k for k, v in switches.items() if v) or "none"
    return {
        "spec": spec.to_dict(),
        "non_embedding_params": n,
        "exact_non_embedding_params": exact,
        "exact_non_embedding_weight_params": exact_weights,
        "embedding_params": embedding_params(spec),
        "total_params": None if exact is None else exact + embedding_params(spec),
        "param_breakdown": param_breakdown(spec),
        "switches": switches,
        "forward_flops_breakdown": forward_flops_breakdown(spec, **switches),
        "forward_flops_breakdown_full": full,
        "forward_flops_per_token": forward_flops_per_token(spec, **switches),
        "kaplan_forward_flops_per_token": forward_flops_per_token(
            spec, attention=True, logits=False, embedding=False
        ),
        "training_flops_per_token_6n": training_flops_per_token(spec),
        "training_flops_per_token_exact": training_flops_per_token(spec, exact=True, **switches),
        "attention_share": full.get("attention_mask", 0) / full_total,
        "logits_share": full["logits"] / full_total,
        "counting": {
            "non_embedding_params": "formula, [K] table 1: weight matrices of the blocks, "
            "no biases, norms or embeddings"
            + (" (shared block counted once)" if spec.architecture == "universal" else ""),
            "exact_non_embedding_params": "count of the instantiated model (meta device), "
            "with biases and layer norms, without embeddings and output matrix",
            "exact_non_embedding_weight_params": "count of the instantiated model, "
            "weight matrices only (equals the formula)",
            "embedding_params": "token"
            + (" embedding" if spec.architecture == "lstm" else " and position embeddings")
            + ("" if spec.tied_embeddings else " plus the untied output matrix"),
            "forward_flops_per_token": f"sum of forward_flops_breakdown, terms on: {on}",
            "kaplan_forward_flops_per_token": "[K] C_fwd: attention on, no embedding, no logits",
            "training_flops_per_token_6n": "6 N, N applied per token ([K] 2.1)",
            "training_flops_per_token_exact": f"3 x forward, terms on: {on}",
            "attention_share": "attention-mask FLOPs / forward with every term on",
            "logits_share": "logits FLOPs / forward with every term on",
        },
    }


__all__ = [
    "PF_DAY",
    "OPERATIONS",
    "applied_non_embedding_params",
    "describe",
    "embedding_params",
    "exact_non_embedding_params",
    "flops_from_pf_days",
    "forward_flops_breakdown",
    "forward_flops_per_token",
    "lstm_layer_params",
    "non_embedding_params",
    "param_breakdown",
    "pf_days",
    "training_flops",
    "training_flops_per_token",
]
