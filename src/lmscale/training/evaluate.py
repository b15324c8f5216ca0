"""Loss of a model on fixed test sequences: mean per token, and per context position.

Models with ``hidden_states(idx)`` and an ``lm_head`` are scored through the
chunked head (:mod:`lmscale.training.loss`), others from their logits.
Results are sums on the device, so data-parallel ranks can add theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

from lmscale.training.loss import (
    linear_cross_entropy,
    linear_cross_entropy_per_row,
    logits_cross_entropy_per_row,
)

Forward = Callable[[torch.Tensor], torch.Tensor]


def has_head(model: torch.nn.Module) -> bool:
    """Whether the model exposes features and an output matrix (the fast loss path)."""
    return callable(getattr(model, "hidden_states", None)) and hasattr(model, "lm_head")


def training_loss(model: torch.nn.Module, forward: Forward, inputs: torch.Tensor,
                  targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats/token) of one micro-batch, differentiable."""
    if has_head(model):
        return linear_cross_entropy(forward(inputs), model.lm_head.weight, targets)
    logits = forward(inputs)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def token_losses(model: torch.nn.Module, forward: Forward, inputs: torch.Tensor,
                 targets: torch.Tensor) -> torch.Tensor:
    """Loss of every token, shape of ``targets`` (no gradient)."""
    with torch.no_grad():
        out = forward(inputs)
        if has_head(model):
            return linear_cross_entropy_per_row(out, model.lm_head.weight, targets)
        return logits_cross_entropy_per_row(out, targets)


def evaluate(model: torch.nn.Module, forward: Forward, rows: torch.Tensor, batch_rows: int, *,
             per_position: bool = False,
             autocast: Callable[[], AbstractContextManager] = nullcontext,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of token losses and, if asked, per-position sums over ``rows`` ([n, n_ctx + 1]).

    Returns ``(total, positions)``: a 0-d fp64 sum over all tokens and an
    [n_ctx] fp64 vector of sums per position (zeros unless ``per_position``).
    Divide by the token and row counts for means.
    """
    was_training = model.training
    model.eval()
    n_ctx = rows.shape[1] - 1
    total = torch.zeros((), dtype=torch.float64, device=rows.device)
    positions = torch.zeros(n_ctx, dtype=torch.float64, device=rows.device)
    try:
        for start in range(0, rows.shape[0], batch_rows):
            chunk = rows[start:start + batch_rows]
            with autocast():
                losses = token_losses(model, forward, chunk[:, :-1], chunk[:, 1:])
            losses = losses.to(torch.float64)
            total += losses.sum()
            if per_position:
                positions += losses.sum(dim=0)
    finally:
        model.train(was_training)
    return total, positions
