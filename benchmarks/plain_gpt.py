"""The baseline the training benchmarks measure lmscale against: a plain GPT loop, set up
as GPT-2 / karpathy/nanoGPT set it up (written here, not copied).

- the model: token and position embeddings, pre-LN blocks (fused QKV, causal
  ``scaled_dot_product_attention``, exact GELU MLP), final layer norm, a head
  tied to the token embedding, logits -> ``F.cross_entropy``;
- GPT-2's initialisation: every Linear and Embedding weight N(0, 0.02),
  biases zero, the two residual projections of each block N(0, 0.02 /
  sqrt(2 n_layer));
- PyTorch's AdamW as nanoGPT configures it: weight decay 0.1 on the
  matrices (dim >= 2) only, betas (0.9, 0.95), the fused kernel on CUDA
  and PyTorch's default implementation elsewhere; gradients clipped to 1;
- batches of random windows of the training tokens (nanoGPT's get_batch).

:func:`run_plain` times steps after ``warmup`` untimed ones and checks
that the loss fell. Denormal floats are left as PyTorch leaves them unless
``flush_denormal`` (then for both sides of a benchmark).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.attn_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, -1).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class PlainGPT(nn.Module):
    def __init__(self, n_layer: int, d: int, n_head: int, n_ctx: int, vocab: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(n_ctx, d)
        self.blocks = nn.ModuleList(Block(d, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith("attn_proj.weight") or name.endswith("mlp_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def nanogpt_adamw(model: nn.Module, lr: float, device_type: str) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    extra = {"fused": True} if device_type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), **extra)


@dataclass
class PlainResult:
    tokens_per_second: float
    first_loss: float
    last_loss: float  # mean of the last 10 steps
    steps: int


def run_plain(tokens: np.ndarray, n_layer: int, d_model: int, n_head: int, n_ctx: int, vocab: int,
              batch_tokens: int, steps: int, lr: float, warmup: int = 5, seed: int = 0,
              device: str = "cpu", precision: str = "fp32", compile: bool = False,
              micro_batch_tokens: int | None = None) -> PlainResult:
    """Train ``warmup + steps`` steps; tokens/s over the last ``steps``; raise if the loss did not fall.

    On a GPU as nanoGPT's train.py runs: ``precision = "bf16"`` (autocast, fp32
    weights), ``compile`` (``torch.compile`` of the model, its compilation in
    the untimed warm-up steps) and gradient accumulation over micro-batches of
    ``micro_batch_tokens``.
    """
    torch.manual_seed(seed)
    model = PlainGPT(n_layer, d_model, n_head, n_ctx, vocab).to(device)
    opt = nanogpt_adamw(model, lr, torch.device(device).type)
    step_model = torch.compile(model) if compile else model
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")
    rng = np.random.default_rng(seed)
    rows = batch_tokens // n_ctx
    micro_rows = max(1, min(rows, (micro_batch_tokens or batch_tokens) // n_ctx))
    passes = max(1, rows // micro_rows)
    losses = []
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
        offsets = rng.integers(0, len(tokens) - n_ctx - 1, micro_rows * passes)
        window = np.stack([tokens[o:o + n_ctx + 1] for o in offsets]).astype(np.int64)
        batch = torch.from_numpy(window).to(device)
        step_loss = torch.zeros((), device=device)
        for part in batch.split(micro_rows):
            with autocast:
                loss = step_model(part[:, :-1], part[:, 1:]) / passes
            loss.backward()
            step_loss += loss.detach().float()  # the step's mean over its micro-batches
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(step_loss)  # read back at the end: no host synchronisation per step
    if device != "cpu":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    losses = [float(x) for x in losses]
    last = float(np.mean(losses[-10:]))
    if not (math.isfinite(last) and last < losses[0] - 0.05):
        raise RuntimeError(f"plain loop's loss did not fall: {losses[0]:.3f} -> {last:.3f}")
    return PlainResult(steps * micro_rows * passes * n_ctx / elapsed, losses[0], last, steps)
