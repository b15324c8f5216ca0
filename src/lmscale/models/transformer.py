"""Decoder-only Transformer of [K] section 2.1 (GPT-2 style, pre-layer-norm).

Learned position embeddings, pre-LN blocks (causal self-attention, GELU
feed-forward), a final layer norm and an output head that may share the
input embedding.
The Universal Transformer is the same network with one block applied
``n_layer`` times.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from lmscale.errors import LmscaleError
from lmscale.models.spec import ModelSpec, scores_path

#: Standard deviation of the GPT-2 initialisation.
INIT_STD = 0.02
#: Standard deviation of the token embedding (the tied output head). GPT-2's
#: 0.02 leaves models of d_model 8 to 80 on the unigram-loss plateau for 1e5
#: to 2.5e5 tokens, escaping at a random time (the loss at equal tokens jumped
#: by up to 20% between neighbouring sizes); 0.05 was as good or better at
#: every width tried (2 layers, d_model 8, 16, 32, 48, 80; 5e5 tokens of the
#: 512-id Python BPE: e.g. 3.85 against 4.80 nats at d_model 48).
EMBED_STD = 0.05


#: Heads narrower than this compute the products whose output is [T, d_head] transposed.
NARROW_HEAD = 16


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched ``a @ b``; for an output of fewer than :data:`NARROW_HEAD` columns as ``(b^T a^T)^T``.

    BLAS runs a narrow output several times slower than its transpose:
    [64 x 64] @ [64 x 6] in 64 batches took 327 us against 78 us transposed
    (1 thread, this project's 2-core AMD EPYC; equal at 16 columns).
    """
    if b.shape[-1] < NARROW_HEAD:
        return torch.bmm(b.mT, a.mT).mT
    return torch.bmm(a, b)


class _ScoresAttention(torch.autograd.Function):
    """Causal attention of q, k, v [G, T, d] from the materialised scores, with its own backward.

    Forward: P = softmax(q k^T / sqrt(d) + mask), out = P v. Backward:
    dP = dout v^T, dv = P^T dout, dS = P * (dP - rowsum(dP * P)) / sqrt(d)
    (the softmax's fused gradient kernel), dq = dS k, dk = dS^T q; the
    products with a [T, d] output by :func:`_bmm`. At 2 heads of width 4 to
    8 (n_ctx 64, 32 sequences) a forward and backward took 1.4-1.7x less time
    than through autograd's graph of the same operations, and as long at 16.
    """

    @staticmethod
    def forward(ctx, q, k, v):  # type: ignore[override]
        t, d = q.shape[-2:]
        ctx.scale = d ** -0.5
        mask = torch.full((t, t), float("-inf"), dtype=q.dtype, device=q.device).triu_(1)
        p = torch.baddbmm(mask, q, k.mT, alpha=ctx.scale)
        torch.ops.aten._softmax.out(p, -1, False, out=p)  # in place: the row kernel reads a row before writing it
        ctx.save_for_backward(q, k, v, p)
        return _bmm(p, v)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):  # type: ignore[override]
        q, k, v, p = ctx.saved_tensors
        dv = _bmm(p.mT, dout)
        ds = torch._softmax_backward_data(torch.bmm(dout, v.mT), p, -1, p.dtype).mul_(ctx.scale)
        return _bmm(ds, k), _bmm(ds.mT, q), dv


def scores_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal softmax(q k^T / sqrt(d_head) + mask) v, the scores materialised: one batched
    matmul with the mask added (``baddbmm``), a softmax and one more matmul
    (:class:`_ScoresAttention`)."""
    *lead, t, d = q.shape
    out = _ScoresAttention.apply(q.reshape(-1, t, d), k.reshape(-1, t, d), v.reshape(-1, t, d))
    return out.reshape(*lead, t, d)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """``scaled_dot_product_attention(q, k, v, is_causal=True)``; on a CPU in fp32, and for
    contexts up to ``SCORES_MAX_CTX`` without dropout through :func:`scores_attention`
    (:func:`lmscale.models.spec.scores_path`).

    PyTorch's CPU flash-attention backward in bf16 is about 20x slower than
    in fp32 (37 ms against under 2 ms per call at 4/80, n_ctx 64, torch
    2.13), so under bf16 autocast on a CPU attention alone runs in fp32.
    """
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    with torch.autocast("cpu", enabled=False):
        if q.dtype in (torch.bfloat16, torch.float16):
            q, k, v = q.float(), k.float(), v.float()
        if scores_path("cpu", q.shape[-2], dropout_p):
            return scores_attention(q, k, v)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention; d_attn = d_model, one fused QKV matrix."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.n_head = spec.n_head
        self.dropout = spec.dropout
        self.c_attn = nn.Linear(spec.d_model, 3 * spec.d_attn)
        self.c_proj = nn.Linear(spec.d_attn, spec.d_model)
        self.resid_drop = _dropout(spec.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        qkv = self.c_attn(x).view(b, t, 3, self.n_head, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, H, T, d_head]
        p = self.dropout if self.training else 0.0
        y = causal_attention(q, k, v, dropout_p=p)
        return self.resid_drop(self.c_proj(y.transpose(1, 2).reshape(b, t, -1)))


class FeedForward(nn.Module):
    """d_model -> d_ff -> d_model with GELU(x) = x Phi(x), computed exactly.

    GPT-2 used the tanh approximation of GELU; the exact form is the same
    function to within 5e-4 and its kernel is about 2x faster on CPU.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.c_fc = nn.Linear(spec.d_model, spec.d_ff)
        self.c_proj = nn.Linear(spec.d_ff, spec.d_model)
        self.drop = _dropout(spec.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN residual block: x + attn(ln(x)), then x + ff(ln(x))."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.ln_1 = nn.LayerNorm(spec.d_model)
        self.attn = CausalSelfAttention(spec)
        self.ln_2 = nn.LayerNorm(spec.d_model)
        self.mlp = FeedForward(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """``model(idx[B, T]) -> logits[B, T, n_vocab]``, T <= n_ctx."""

    def __init__(self, spec: ModelSpec, n_blocks: int | None = None):
        super().__init__()
        self.spec = spec
        self.wte = nn.Embedding(spec.n_vocab, spec.d_model)
        self.wpe = nn.Embedding(spec.n_ctx, spec.d_model)
        self.drop = _dropout(spec.dropout)
        self.blocks = nn.ModuleList(Block(spec) for _ in range(n_blocks or spec.n_layer))
        self.ln_f = nn.LayerNorm(spec.d_model)
        self.lm_head = nn.Linear(spec.d_model, spec.n_vocab, bias=False)
        if spec.tied_embeddings:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        nn.init.normal_(self.wte.weight, 0.0, EMBED_STD)
        # GPT-2: residual projections scaled by 1/sqrt(2 n_layer applications).
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, 0.0, INIT_STD / math.sqrt(2 * spec.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, INIT_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, INIT_STD)

    def applied_blocks(self) -> Iterable[nn.Module]:
        """The blocks in the order the forward pass applies them."""
        return self.blocks

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """Features h[B, T, d_model] after the final layer norm: ``logits = lm_head(h)``.

        The trainer computes the loss from ``h`` and ``lm_head.weight`` without
        materialising the logits (``lmscale.training.loss``).
        """
        t = idx.shape[-1]
        if t > self.spec.n_ctx:
            raise LmscaleError(f"sequence length {t} exceeds n_ctx = {self.spec.n_ctx}")
        x = self.drop(self.wte(idx) + self.wpe.weight[:t])
        for block in self.applied_blocks():
            x = block(x)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.hidden_states(idx))


class UniversalTransformer(Transformer):
    """One block with shared weights, applied ``n_layer`` times ([K] 3.2.1, figure 17)."""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec, n_blocks=1)

    def applied_blocks(self) -> Iterable[nn.Module]:
        return [self.blocks[0]] * self.spec.n_layer
