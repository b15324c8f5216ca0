"""Loss of a model on fixed test sequences: mean per token, and per context position
with its standard error (clustered by the documents the sequences come from).

Models with ``hidden_states(idx)`` and an ``lm_head`` are scored through the
chunked head (:mod:`lmscale.training.loss`), others from their logits.
Results are sums on the device, so data-parallel ranks can add theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext

import numpy as np
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


def chunk_losses(model: torch.nn.Module, forward: Forward, rows: torch.Tensor, index: torch.Tensor,
                 batch_rows: int, autocast: Callable[[], AbstractContextManager] = nullcontext,
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(take, losses)`` for the rows ``rows[index]``, ``batch_rows`` at a time, in eval mode
    (the model's mode is restored after): the row indices and their token losses [len(take), n_ctx]."""
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(index), batch_rows):
            take = index[start:start + batch_rows]
            chunk = rows[take]
            with autocast():
                losses = token_losses(model, forward, chunk[:, :-1], chunk[:, 1:])
            yield take, losses
    finally:
        model.train(was_training)


def evaluate(model: torch.nn.Module, forward: Forward, rows: torch.Tensor, batch_rows: int, *,
             autocast: Callable[[], AbstractContextManager] = nullcontext) -> torch.Tensor:
    """Sum of token losses over ``rows`` ([n, n_ctx + 1]): a 0-d fp64 tensor on the device.

    Divide by the token count for the mean (per position: :func:`evaluate_position_blocks`).
    """
    total = torch.zeros((), dtype=torch.float64, device=rows.device)
    index = torch.arange(rows.shape[0], device=rows.device)
    for _, losses in chunk_losses(model, forward, rows, index, batch_rows, autocast):
        total += losses.to(torch.float64).sum()
    return total


#: Most clusters behind the per-position standard errors: more documents than
#: this are grouped, whole and in order, into about this many blocks.
MAX_POSITION_BLOCKS = 1024
#: Contiguous blocks of sequences when the documents are unknown (no ``eot``).
FALLBACK_POSITION_BLOCKS = 32


def position_blocks(n_rows: int, documents: np.ndarray | None = None) -> np.ndarray:
    """Block of each of ``n_rows`` test sequences, for the per-position standard errors.

    With ``documents`` (the document each sequence starts in, non-decreasing
    as :func:`lmscale.training.batches.row_documents` gives them) a block is
    a document, or a run of whole consecutive documents when there are more
    than ``MAX_POSITION_BLOCKS``: sequences of one document share its
    difficulty, those of different documents are independent draws of the
    test split's hash, so documents are the units of the error. Without
    them (or with fewer than 2), ``FALLBACK_POSITION_BLOCKS`` contiguous
    blocks of sequences of near-equal size.
    """
    if documents is not None and len(documents) == n_rows and n_rows > 1:
        docs = np.asarray(documents, dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])  # first row of each document
        if len(starts) >= 2:
            if len(starts) > MAX_POSITION_BLOCKS:  # cut at the document start nearest each equal share
                want = np.linspace(0, n_rows, MAX_POSITION_BLOCKS + 1)[1:-1]
                near = np.clip(np.searchsorted(starts, want), 1, len(starts) - 1)
                starts = np.unique(np.r_[0, starts[near]])
            return np.searchsorted(starts, np.arange(n_rows), side="right") - 1
    k = max(1, min(FALLBACK_POSITION_BLOCKS, n_rows))
    return np.minimum(np.arange(n_rows) * k // max(n_rows, 1), k - 1)


def evaluate_position_blocks(model: torch.nn.Module, forward: Forward, rows: torch.Tensor,
                             blocks: torch.Tensor, mine: slice, batch_rows: int, *,
                             autocast: Callable[[], AbstractContextManager] = nullcontext,
                             ) -> torch.Tensor:
    """Per-position loss sums per block over the rows ``rows[mine]``: [n_blocks, n_ctx + 1].

    ``blocks`` holds the block of every row (:func:`position_blocks`);
    column ``n_ctx`` counts each block's rows. Rows outside ``mine`` add
    nothing, so data-parallel ranks (``mine = slice(rank, None, world)``)
    can add their tables.
    """
    n_ctx = rows.shape[1] - 1
    n_blocks = int(blocks.max()) + 1 if blocks.numel() else 1
    out = torch.zeros(n_blocks, n_ctx + 1, dtype=torch.float64, device=rows.device)
    index = torch.arange(rows.shape[0], device=rows.device)[mine]
    for take, losses in chunk_losses(model, forward, rows, index, batch_rows, autocast):
        block = blocks[take]
        out[:, :n_ctx].index_add_(0, block, losses.to(torch.float64))
        out[:, n_ctx].index_add_(0, block, torch.ones(len(take), dtype=torch.float64, device=rows.device))
    return out


def position_means(table: torch.Tensor) -> tuple[list[float], list[float], list[float]]:
    """Loss per position and two standard errors from a block table (:func:`evaluate_position_blocks`).

    The mean pools every row. Both errors treat the blocks (documents, see
    :func:`position_blocks`) as independent draws, the rows within one as
    correlated: the clustered (ratio-estimator) error of a mean over rows,
    ``sqrt(k / (k - 1) * sum_g w_g^2 (m_g - m)^2)`` with w_g a block's share
    of the rows and m_g its mean (for k equal blocks: sd of the block means
    / sqrt(k), the batch-means error):

    * ``se``: of the mean itself; it is dominated by which documents the
      test split holds (a document of easy code is easy at every position):
      it falls with the documents scored, and with more sequences of each
      only until their shared difficulty dominates;
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

    def clustered_se(values: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((w[:, None] ** 2 * (values - center) ** 2).sum(0) * k / (k - 1))

    shape = block_means - block_means.mean(1, keepdim=True)
    return (mean.tolist(), clustered_se(block_means, mean).tolist(),
            clustered_se(shape, (shape * w[:, None]).sum(0)).tolist())
