"""Loss of a model on fixed test sequences: mean per token, and per context position
with its standard error (batch means over contiguous blocks of sequences).

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


def position_blocks(rows: torch.Tensor, n_blocks: int) -> list[tuple[int, int]]:
    """``n_blocks`` contiguous (start, stop) ranges of rows, sizes within one of each other."""
    n_blocks = max(1, min(n_blocks, rows.shape[0]))
    edges = torch.linspace(0, rows.shape[0], n_blocks + 1).round().long().tolist()
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def evaluate_position_blocks(model: torch.nn.Module, forward: Forward, rows: torch.Tensor,
                             blocks: list[tuple[int, int]], mine: list[int], batch_rows: int, *,
                             autocast: Callable[[], AbstractContextManager] = nullcontext,
                             ) -> torch.Tensor:
    """Per-position loss sums of the blocks ``mine`` (indices into ``blocks``): [n_blocks, n_ctx + 1].

    Column ``n_ctx`` holds each block's row count; blocks not in ``mine``
    stay zero, so data-parallel ranks can add their tables.
    """
    n_ctx = rows.shape[1] - 1
    out = torch.zeros(len(blocks), n_ctx + 1, dtype=torch.float64, device=rows.device)
    for b in mine:
        start, stop = blocks[b]
        _, pos = evaluate(model, forward, rows[start:stop], batch_rows, per_position=True, autocast=autocast)
        out[b, :n_ctx] = pos
        out[b, n_ctx] = stop - start
    return out


def position_means(table: torch.Tensor) -> tuple[list[float], list[float], list[float]]:
    """Loss per position and two standard errors from a block table (:func:`evaluate_position_blocks`).

    The mean pools every row. Both errors are batch means over the blocks
    (contiguous test sequences come from the same documents, so their losses
    are correlated; blocks of them are close to independent), blocks weighted
    by their rows:

    * ``se``: of the mean itself, sd of the block means / sqrt(blocks); it is
      dominated by which documents the test split holds (a block of easy code
      is easy at every position);
    * ``se_shape``: of the position's difference from the mean over positions,
      L(t) - mean_t L(t), the same over blocks: the uncertainty of the profile
      L(t) that a fit of its shape sees, without the shared document effect.
    """
    counts = table[:, -1]
    keep = counts > 0
    sums, counts = table[keep, :-1], counts[keep]
    mean = sums.sum(0) / counts.sum()
    k = int(counts.numel())
    if k < 2:
        nan = [float("nan")] * int(mean.numel())
        return mean.tolist(), nan, list(nan)
    w = counts / counts.sum()
    block_means = sums / counts[:, None]

    def batch_means_se(values: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        var = (w[:, None] * (values - center) ** 2).sum(0) * k / (k - 1)
        return torch.sqrt(var / k)

    shape = block_means - block_means.mean(1, keepdim=True)
    return (mean.tolist(), batch_means_se(block_means, mean).tolist(),
            batch_means_se(shape, (shape * w[:, None]).sum(0)).tolist())
