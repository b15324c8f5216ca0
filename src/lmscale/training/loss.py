"""Cross-entropy of the output head without materialising the logits.

For a model ending in ``logits = h @ W^T`` the loss, in nats per token, is
``mean_i [logsumexp_j(h_i . W_j) - h_i . W_{y_i}]`` and its gradients are
``dh = (softmax - onehot) W / M`` and ``dW = (softmax - onehot)^T h / M``.
:func:`linear_cross_entropy` computes all three chunk by chunk of rows,
during the forward pass, in place in one ``chunk x n_vocab`` buffer that
stays in cache: no ``[M, n_vocab]`` logits, log-probabilities or gradient
tensors, and no second pass over them in the backward.
"""

from __future__ import annotations

import torch

#: Elements of the [rows, n_vocab] chunk buffer, per device type: on a CPU it
#: should stay in the last-level cache; on a GPU it should keep the matmuls big.
CHUNK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 26}


def _chunk_rows(n_vocab: int, chunk_elements: int | None, device: torch.device) -> int:
    if chunk_elements is None:
        chunk_elements = CHUNK_ELEMENTS.get(device.type, CHUNK_ELEMENTS["cpu"])
    return max(16, chunk_elements // max(1, n_vocab))


def _chunk_loss_(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row loss; leaves exp(logits - max) in ``logits`` and returns the row sums."""
    target_logit = logits.gather(1, targets[:, None]).squeeze(1)
    row_max = logits.amax(dim=1)
    logits.sub_(row_max[:, None]).exp_()
    sums = logits.sum(dim=1)
    return sums.log().add_(row_max).sub_(target_logit), sums


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_rows, compute_dtype):  # type: ignore[override]
        rows = hidden.shape[0]
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        h_c = hidden.to(compute_dtype)
        w_c = weight.to(compute_dtype)
        acc = torch.promote_types(compute_dtype, torch.float32)  # softmax precision
        total = torch.zeros((), dtype=acc, device=hidden.device)
        grad_h = torch.empty_like(hidden) if needs_grad else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if needs_grad else None
        scale = 1.0 / rows
        for start in range(0, rows, chunk_rows):
            h = h_c[start:start + chunk_rows]
            y = targets[start:start + chunk_rows]
            logits = (h @ w_c.t()).to(acc)
            losses, sums = _chunk_loss_(logits, y)
            total += losses.sum()
            if needs_grad:
                # softmax / M, minus 1/M at the target: the gradient of the mean loss.
                logits.mul_((sums.reciprocal() * scale)[:, None])
                logits.scatter_add_(1, y[:, None], torch.full_like(logits[:, :1], -scale))
                g = logits.to(compute_dtype)
                grad_h[start:start + chunk_rows] = g @ w_c
                if compute_dtype == acc:
                    grad_w.addmm_(g.t(), h)
                else:
                    grad_w += (g.t() @ h).to(acc)
        if needs_grad:
            ctx.save_for_backward(grad_h, grad_w.to(weight.dtype))
        return total * scale

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out, grad_w * grad_out, None, None, None


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
    under CUDA autocast), the softmax in fp32.
    """
    d = hidden.shape[-1]
    if compute_dtype is None:
        compute_dtype = hidden.dtype
        if hidden.is_cuda and torch.is_autocast_enabled("cuda"):
            compute_dtype = torch.get_autocast_dtype("cuda")
    rows = _chunk_rows(weight.shape[0], chunk_elements, hidden.device)
    with torch.autocast(hidden.device.type, enabled=False):
        return _LinearCrossEntropy.apply(
            hidden.reshape(-1, d), weight, targets.reshape(-1), rows, compute_dtype
        )


@torch.no_grad()
def linear_cross_entropy_per_row(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_elements: int | None = None,
) -> torch.Tensor:
    """Loss of every row (shape of ``targets``), in fp32 or wider, for evaluation."""
    d = hidden.shape[-1]
    h = hidden.reshape(-1, d)
    y = targets.reshape(-1)
    w = weight.to(h.dtype)
    rows = _chunk_rows(weight.shape[0], chunk_elements, h.device)
    acc = torch.promote_types(h.dtype, torch.float32)
    out = torch.empty(h.shape[0], dtype=acc, device=h.device)
    for start in range(0, h.shape[0], rows):
        logits = (h[start:start + rows] @ w.t()).to(acc)
        out[start:start + rows] = _chunk_loss_(logits, y[start:start + rows])[0]
    return out.view(targets.shape)


def logits_cross_entropy_per_row(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token loss from full logits (models without a separable output head)."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    return torch.nn.functional.cross_entropy(flat, targets.reshape(-1), reduction="none").view(
        targets.shape
    )
