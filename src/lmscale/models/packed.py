"""Several Transformers of one shape computed as one: the forward pass of packed runs.

Runs that differ only in what they train on, their seed or their learning
rate (a study's dataset sizes, seeds, learning-rate variants) can share
every kernel launch: the weights of R models are stacked along a leading
axis at each forward pass and the matmuls become batched matmuls
([R, tokens, d] @ [R, d, d']). Each model keeps its own parameters: the
backward pass of the stack hands every model the gradient of its own loss,
so its optimizer, clipping, checkpoints and record are those of a lone run.

The arithmetic is the module's own (:class:`lmscale.models.transformer.
Transformer`): the same pre-LN blocks, causal attention, exact GELU and
tied head; only the layer-norm affine terms and the bias additions are
separate element-wise operations here. Dropout is not supported (packed
runs would draw different random masks than lone ones).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lmscale.errors import LmscaleError
from lmscale.models.transformer import causal_attention


def check_packable(models: Sequence[nn.Module]) -> None:
    """Raise :class:`LmscaleError` unless ``models`` are Transformers of one shape without dropout."""
    from lmscale.models.transformer import Transformer

    if not models:
        raise LmscaleError("packing needs at least one model")
    spec = models[0].spec
    for m in models:
        if not isinstance(m, Transformer):
            raise LmscaleError(f"packing: {type(m).__name__} is not a Transformer (LSTMs train alone)")
        if m.spec != spec:
            raise LmscaleError(f"packing: model shapes differ ({m.spec} vs {spec})")
    if spec.dropout > 0:
        raise LmscaleError(f"packing: dropout = {spec.dropout}; packed runs must not use dropout")


def _stack(models: Sequence[nn.Module], get: Callable[[nn.Module], torch.Tensor]) -> torch.Tensor:
    return torch.stack([get(m) for m in models])


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x [R, M, in] @ weight[R, out, in]^T + bias [R, out]."""
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(bias.unsqueeze(1), F.layer_norm(x, x.shape[-1:]), weight.unsqueeze(1))


def packed_hidden_states(models: Sequence[nn.Module], idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and output matrices of R models on their own inputs.

    ``idx`` is [R, B, T] (model r reads ``idx[r]``). Returns ``h`` [R, B * T,
    d_model] after the final layer norm and the stacked head weights
    [R, n_vocab, d_model] (``logits[r] = h[r] @ W[r]^T``), both differentiable
    with respect to every model's parameters.
    """
    r, b, t = idx.shape
    spec = models[0].spec
    if r != len(models):
        raise LmscaleError(f"packed inputs for {r} runs, but {len(models)} models")
    if t > spec.n_ctx:
        raise LmscaleError(f"sequence length {t} exceeds n_ctx = {spec.n_ctx}")
    d, v = spec.d_model, spec.n_vocab
    wte = _stack(models, lambda m: m.wte.weight)
    offsets = (torch.arange(r, device=idx.device) * v).view(r, 1, 1)
    x = F.embedding(idx + offsets, wte.view(r * v, d))
    x = (x + _stack(models, lambda m: m.wpe.weight[:t]).unsqueeze(1)).view(r, b * t, d)
    n_head = spec.n_head
    for i, _ in enumerate(models[0].applied_blocks()):
        blocks = [list(m.applied_blocks())[i] for m in models]

        def st(get: Callable[[nn.Module], torch.Tensor], blocks: list[nn.Module] = blocks) -> torch.Tensor:
            return _stack(blocks, get)

        a = _layer_norm(x, st(lambda k: k.ln_1.weight), st(lambda k: k.ln_1.bias))
        qkv = _linear(a, st(lambda k: k.attn.c_attn.weight), st(lambda k: k.attn.c_attn.bias))
        q, k_, val = qkv.view(r * b, t, 3, n_head, -1).permute(2, 0, 3, 1, 4).unbind(0)
        y = causal_attention(q, k_, val).transpose(1, 2).reshape(r, b * t, d)
        x = x + _linear(y, st(lambda k: k.attn.c_proj.weight), st(lambda k: k.attn.c_proj.bias))
        a = _layer_norm(x, st(lambda k: k.ln_2.weight), st(lambda k: k.ln_2.bias))
        f = F.gelu(_linear(a, st(lambda k: k.mlp.c_fc.weight), st(lambda k: k.mlp.c_fc.bias)))
        x = x + _linear(f, st(lambda k: k.mlp.c_proj.weight), st(lambda k: k.mlp.c_proj.bias))
    h = _layer_norm(x, _stack(models, lambda m: m.ln_f.weight), _stack(models, lambda m: m.ln_f.bias))
    head = wte if spec.tied_embeddings else _stack(models, lambda m: m.lm_head.weight)
    return h, head
