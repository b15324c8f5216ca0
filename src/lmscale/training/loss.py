"""Cross-entropy of the output head without materialising the logits.

For a model ending in ``logits = h @ W^T`` the loss, in nats per token, is
``mean_i [logsumexp_j(h_i . W_j) - h_i . W_{y_i}]`` and its gradients are
``dh = (softmax - onehot) W / M`` and ``dW = (softmax - onehot)^T h / M``.
:func:`linear_cross_entropy` computes all three chunk by chunk of rows,
during the forward pass, in place in one ``chunk x n_vocab`` buffer that
stays in cache: no ``[M, n_vocab]`` logits, log-probabilities or gradient
tensors, and no second pass over them in the backward.

The softmax and the log-softmax are PyTorch's fused row kernels, run in
place on the buffer: each row's maximum, exponentials and sum are taken
while the row is in the first-level cache, where separate max, subtract,
exp, sum and scale passes each stream the whole buffer again. The 1/M of
the mean goes into the gradient matmuls (``alpha``) rather than over the
buffer. At V = 512 and 2048 rows on this project's 2-core AMD EPYC the
loss and both gradients took 1.05x to 1.29x less time at d = 12 to 80, fp32
and bf16 (d = 12, fp32, 1 thread: 2.76 against 3.32 ms).
"""

from __future__ import annotations

import torch

#: Elements of the [rows, n_vocab] chunk buffer, per device type: on a GPU it
#: should keep the matmuls big; on a CPU it is the most (see :func:`_chunk_rows`).
CHUNK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 26}
#: On a CPU, the fewest elements of a chunk: a buffer of 2 MB (fp32) that stays in cache.
CPU_CACHE_ELEMENTS = 1 << 19
#: On a CPU, rows per unit of d_model a chunk aims for (bounded by the two above).
ROWS_PER_WIDTH = 8


def _chunk_rows(n_vocab: int, d_model: int, chunk_elements: int | None, device: torch.device,
                runs: int = 1) -> int:
    """Rows of one chunk of logits, per run where ``runs`` packed runs share the chunk.

    On a CPU: 8 d rows, within [2^19, 2^22] / V. Each chunk adds its
    [V, d] products into the weight's gradient, so a chunk of rows >> d
    keeps that accumulator's traffic small beside the chunk's logits; a
    narrow head (small d) is bound by memory instead, and a chunk that
    stays in cache while the matmul, softmax and two gradient matmuls go
    over it is what matters. Loss and gradients at V 512, 2048 rows, the
    cache flushed before each call as the rest of a step flushes it, on
    this project's 2-core AMD EPYC, against one chunk of all rows (medians
    of 5 alternating pairs): at d 12, 48, 80, one thread 1.19x, 1.26x,
    1.14x faster, two 1.02x, 1.05x, 0.98x; three packed runs 1.71x, 1.18x,
    1.13x and 1.26x, 1.25x, 1.11x. At V 4096 and d 128 or wider it is the
    2^22 / V rows it was. Whole training processes (2/12 unless said,
    the study's measurements on, alternating, wall-time medians): three
    packed runs 0.945x the time on one thread and 0.926x on two; a lone run
    1.02x (2/12, one thread) and 1.01x (2/48, two), within this host's noise.
    """
    v = max(1, n_vocab)
    if chunk_elements is not None:
        rows = chunk_elements // v
    elif device.type != "cpu":
        rows = CHUNK_ELEMENTS.get(device.type, CHUNK_ELEMENTS["cpu"]) // v
    else:
        rows = min(CHUNK_ELEMENTS["cpu"] // v, max(CPU_CACHE_ELEMENTS // v, ROWS_PER_WIDTH * d_model))
    return max(1, max(16, rows) // runs)


#: Smallest probability a target is given when its loss is read from the softmax: the loss of
#: a row is capped at -ln of it (87.3 nats), where the softmax of an fp32 row underflows.
TINY_PROBABILITY = torch.finfo(torch.float32).tiny


def _rows_(op: torch._ops.OpOverloadPacket, logits: torch.Tensor) -> None:
    """``logits`` replaced by ``op`` (``aten._softmax`` or ``aten._log_softmax``) over the last dimension.

    On a CPU in place (PyTorch's row kernel reads a row's maximum and sum
    before it writes the row: checked against the separate passes to 1e-10);
    elsewhere through a new tensor, whose kernels are not documented as safe
    to alias.
    """
    if logits.device.type == "cpu":
        op.out(logits, -1, False, out=logits)
    else:
        logits.copy_(op(logits, -1, False))


def _chunk_loss_(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row loss, -log_softmax at the target; leaves the log-probabilities in ``logits``."""
    _rows_(torch.ops.aten._log_softmax, logits)
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).neg_()


def _chunk_softmax_loss_(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row loss, -log of the target's probability; leaves the softmax in ``logits``."""
    _rows_(torch.ops.aten._softmax, logits)
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).clamp_min_(TINY_PROBABILITY).log_().neg_()


class _ChunkBuffers:
    """The chunk's logits, [rows, V] in the compute dtype and in the softmax's (fp32), reused chunk after chunk.

    Under bf16 the matmul writes bf16 logits that are widened for the softmax
    and narrowed again for the gradient's matmuls; two buffers reused for
    every chunk instead of new tensors each time (fresh 16 MB tensors fault
    their pages in): on a 2-core Intel Xeon at 6/384 a bf16 step's widening
    and narrowing copies fell from 194 to 12 ms and the head from 284 to 209 ms.
    """

    def __init__(self, acc: torch.dtype):
        self.acc = acc
        self.by_rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def logits(self, h: torch.Tensor, w_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, wide): h @ w_t in the compute dtype, and in the softmax dtype (the same tensor when equal)."""
        n = h.shape[-2]
        if n not in self.by_rows:
            shape = (*h.shape[:-1], w_t.shape[-1])
            low = torch.empty(shape, dtype=h.dtype, device=h.device)
            wide = low if h.dtype == self.acc else torch.empty(shape, dtype=self.acc, device=h.device)
            self.by_rows[n] = (low, wide)
        low, wide = self.by_rows[n]
        torch.matmul(h, w_t, out=low)
        if wide is not low:
            wide.copy_(low)
        return low, wide


class _LinearCrossEntropy(torch.autograd.Function):
    """hidden [M, d] and weight [V, d] -> mean loss; or, for packed runs, hidden
    [R, M, d] and weight [R, V, d] -> the R mean losses."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_rows, compute_dtype):  # type: ignore[override]
        rows = hidden.shape[-2]
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        h_c = hidden.to(compute_dtype)
        w_c = weight.to(compute_dtype)
        w_t = w_c.transpose(-1, -2)
        acc = torch.promote_types(compute_dtype, torch.float32)  # softmax precision
        total = torch.zeros(hidden.shape[:-2], dtype=acc, device=hidden.device)
        grad_h = torch.empty_like(hidden) if needs_grad else None
        # dW is accumulated transposed, [d, V]: see the comment on the matmuls below
        grad_wt = torch.zeros(w_t.shape, dtype=acc, device=weight.device) if needs_grad else None
        buffers = _ChunkBuffers(acc)
        scale = 1.0 / rows
        for start in range(0, rows, chunk_rows):
            h = h_c[..., start:start + chunk_rows, :]
            y = targets[..., start:start + chunk_rows]
            low, logits = buffers.logits(h, w_t)
            if not needs_grad:
                total += _chunk_loss_(logits, y).sum(dim=-1)
                continue
            total += _chunk_softmax_loss_(logits, y).sum(dim=-1)
            # softmax minus 1 at the target: M times the gradient of the mean loss
            logits.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(logits[..., :1], -1.0))
            g = low.copy_(logits) if low is not logits else logits
            # dh = g W / M and dW = g^T h / M, each computed transposed, (W^T g^T)^T and h^T g:
            # the same sums, but the matmuls' outputs are [d, rows] and [d, V] rather than
            # [rows, d] and [V, d], which BLAS runs several times faster when d is small
            # (0.4 and 0.35 ms against 1.8 and 5.4 ms at d = 4, V = 512, 2048 rows, 1 thread)
            grad_h[..., start:start + chunk_rows, :] = (w_t @ g.mT).mT.mul_(scale)
            if g.dtype != acc:  # bf16 products, summed in fp32
                grad_wt.add_(h.mT @ g, alpha=scale)
            elif g.dim() == 3:  # packed runs
                grad_wt.baddbmm_(h.mT, g, alpha=scale)
            else:
                grad_wt.addmm_(h.mT, g, alpha=scale)
        if needs_grad:
            ctx.save_for_backward(grad_h, grad_wt.mT.to(weight.dtype, memory_format=torch.contiguous_format))
        return total * scale

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        g = grad_out[..., None, None] if grad_out.dim() else grad_out
        return grad_h * g, grad_w * g, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_elements: int | None = None,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Mean cross-entropy (nats) of ``softmax(hidden @ weight^T)`` against ``targets``.

    ``hidden`` is [..., d], ``weight`` [n_vocab, d], ``targets`` [...] of
    token ids. Matmuls run in ``compute_dtype`` (default: ``hidden``'s, bf16
    under bf16 autocast), the softmax in fp32. For R runs trained together
    (:mod:`lmscale.training.packed`), ``weight`` is [R, n_vocab, d],
    ``hidden`` [R, ..., d] and ``targets`` [R, ...]: the result is the R
    mean losses, each run's own.
    """
    d = hidden.shape[-1]
    if compute_dtype is None:
        compute_dtype = _compute_dtype(hidden)
    runs = weight.shape[0] if weight.dim() == 3 else 1
    rows = _chunk_rows(weight.shape[-2], d, chunk_elements, hidden.device, runs)
    if weight.dim() == 3:
        h, y = hidden.reshape(runs, -1, d), targets.reshape(runs, -1)
    else:
        h, y = hidden.reshape(-1, d), targets.reshape(-1)
    with torch.autocast(hidden.device.type, enabled=False):
        return _LinearCrossEntropy.apply(h, weight, y, rows, compute_dtype)


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """``hidden``'s dtype, or the autocast dtype when autocast is on for its device."""
    kind = hidden.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return hidden.dtype


@torch.no_grad()
def linear_cross_entropy_per_row(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_elements: int | None = None,
) -> torch.Tensor:
    """Loss of every row (shape of ``targets``), in fp32 or wider, for evaluation.

    Packed runs: ``weight`` [R, n_vocab, d], ``hidden`` [R, ..., d].
    """
    d = hidden.shape[-1]
    packed = weight.dim() == 3
    h = hidden.reshape(weight.shape[0], -1, d) if packed else hidden.reshape(-1, d)
    y = targets.reshape(h.shape[:-1])
    w_t = weight.to(h.dtype).transpose(-1, -2)
    rows = _chunk_rows(weight.shape[-2], d, chunk_elements, h.device, weight.shape[0] if packed else 1)
    acc = torch.promote_types(h.dtype, torch.float32)
    out = torch.empty(h.shape[:-1], dtype=acc, device=h.device)
    for start in range(0, h.shape[-2], rows):
        logits = (h[..., start:start + rows, :] @ w_t).to(acc)
        out[..., start:start + rows] = _chunk_loss_(logits, y[..., start:start + rows])
    return out.view(targets.shape)


def logits_cross_entropy_per_row(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token loss from full logits (models without a separable output head)."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    return torch.nn.functional.cross_entropy(flat, targets.reshape(-1), reduction="none").view(
        targets.shape
    )
