"""The chunked output-head cross-entropy equals F.cross_entropy on full logits."""

import math

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from lmscale.training.loss import linear_cross_entropy, linear_cross_entropy_per_row  # noqa: E402


@pytest.mark.parametrize("chunk_elements", [1 << 10, 1 << 22])
def test_loss_and_gradients_match_full_logits(chunk_elements):
    gen = torch.Generator().manual_seed(0)
    rows, d, vocab = 203, 24, 97  # rows not a multiple of the chunk
    h = torch.randn(3, rows // 3 + 1, d, generator=gen, dtype=torch.float64)[:, :67].requires_grad_()
    w = (torch.randn(vocab, d, generator=gen, dtype=torch.float64) * 0.3).requires_grad_()
    y = torch.randint(0, vocab, (3, 67), generator=gen)

    ref = F.cross_entropy((h @ w.t()).reshape(-1, vocab), y.reshape(-1))
    ref_h, ref_w = torch.autograd.grad(2.5 * ref, (h, w))
    got = linear_cross_entropy(h, w, y, chunk_elements=chunk_elements)
    got_h, got_w = torch.autograd.grad(2.5 * got, (h, w))
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(got_h, ref_h, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(got_w, ref_w, rtol=1e-6, atol=1e-9)

    rows_loss = linear_cross_entropy_per_row(h.detach(), w.detach(), y, chunk_elements=chunk_elements)
    full = F.cross_entropy((h @ w.t()).reshape(-1, vocab), y.reshape(-1), reduction="none").view(3, 67)
    torch.testing.assert_close(rows_loss.double(), full.detach(), rtol=1e-5, atol=1e-6)


def test_tied_weight_gets_both_gradients():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(50, 8)
    idx = torch.randint(0, 50, (4, 6))
    y = torch.randint(0, 50, (4, 6))
    ref = F.cross_entropy((torch.tanh(emb(idx)) @ emb.weight.t()).reshape(-1, 50), y.reshape(-1))
    (g_ref,) = torch.autograd.grad(ref, emb.weight)
    got = linear_cross_entropy(torch.tanh(emb(idx)), emb.weight, y)
    (g_got,) = torch.autograd.grad(got, emb.weight)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("d", [4, 24])
def test_packed_runs_get_each_their_own_loss_and_gradients(d):
    # R runs in one call ([R, rows, d] against [R, V, d]); d = 4 is the CPU study's narrowest head
    gen = torch.Generator().manual_seed(1)
    runs, rows, vocab = 3, 130, 61
    h = torch.randn(runs, rows, d, generator=gen, dtype=torch.float64).requires_grad_()
    w = (torch.randn(runs, vocab, d, generator=gen, dtype=torch.float64) * 0.3).requires_grad_()
    y = torch.randint(0, vocab, (runs, rows), generator=gen)
    got = linear_cross_entropy(h, w, y, chunk_elements=1 << 12)
    ref = torch.stack([F.cross_entropy(h[r] @ w[r].t(), y[r]) for r in range(runs)])
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)
    weights = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    got_h, got_w = torch.autograd.grad((weights * got).sum(), (h, w))
    ref_h, ref_w = torch.autograd.grad((weights * ref).sum(), (h, w))
    torch.testing.assert_close(got_h, ref_h, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got_w, ref_w, rtol=1e-9, atol=1e-12)


def test_bf16_matmuls_give_the_fp32_loss_and_gradients_to_bf16_precision():
    # under bf16 the head's matmuls run in bf16 and the softmax in fp32 (one buffer each, reused)
    gen = torch.Generator().manual_seed(2)
    h = (torch.randn(300, 16, generator=gen) * 0.5).requires_grad_()
    w = (torch.randn(53, 16, generator=gen) * 0.5).requires_grad_()
    y = torch.randint(0, 53, (300,), generator=gen)
    ref = F.cross_entropy(h @ w.t(), y)
    ref_h, ref_w = torch.autograd.grad(ref, (h, w))
    got = linear_cross_entropy(h, w, y, compute_dtype=torch.bfloat16, chunk_elements=1 << 12)
    got_h, got_w = torch.autograd.grad(got, (h, w))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=2e-2)
    for a, b in ((got_h, ref_h), (got_w, ref_w)):
        assert float((a - b).norm() / b.norm()) < 2e-2


def test_a_target_given_no_probability_costs_the_capped_loss_in_training_and_the_exact_one_in_evaluation():
    # the training loss reads -log p(target) from the softmax: where p underflows fp32 it is
    # capped at -log(tiny) = 87.3 nats (the gradient stays softmax - onehot); evaluation takes
    # log-softmax and gives the exact loss
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    w = torch.tensor([[0.0, 0.0], [200.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([0, 2])
    exact = F.cross_entropy(h.detach() @ w.t(), y, reduction="none")
    assert float(exact[0]) > 150
    got = linear_cross_entropy(h, w, y)
    assert float(got.detach()) == pytest.approx((-math.log(torch.finfo(torch.float32).tiny) + float(exact[1])) / 2, rel=1e-6)
    (g,) = torch.autograd.grad(got, h)
    ref_g = ((torch.softmax(h.detach() @ w.t(), -1) - F.one_hot(y, 3)) @ w) / 2
    torch.testing.assert_close(g, ref_g)
    torch.testing.assert_close(linear_cross_entropy_per_row(h.detach(), w, y), exact)


def test_default_chunks_follow_the_head_width_and_give_the_one_chunk_result():
    """On a CPU a chunk is 8 d rows within [2^19, 2^22] / V; split there (three chunks, the last
    partial, for one run and for two packed runs) the loss and gradients equal one chunk's."""
    from lmscale.training.loss import _chunk_rows

    cpu = torch.device("cpu")
    assert _chunk_rows(512, 12, None, cpu) == 1024  # narrow head: the 2 MB cache budget
    assert _chunk_rows(512, 200, None, cpu) == 1600  # 8 d rows
    assert _chunk_rows(4096, 384, None, cpu) == 1024  # capped at 2^22 / V
    assert _chunk_rows(512, 12, 1 << 12, cpu) == 16  # an explicit size wins (at least 16 rows)
    torch.manual_seed(0)
    for lead in ((), (2,)):
        h = torch.randn(*lead, 2500, 12, dtype=torch.float64, requires_grad=True)
        w = (0.3 * torch.randn(*lead, 512, 12, dtype=torch.float64)).requires_grad_()
        y = torch.randint(0, 512, (*lead, 2500))
        got, ref = [], []
        for chunk, out in ((None, got), (1 << 30, ref)):
            loss = linear_cross_entropy(h, w, y, chunk_elements=chunk)
            gh, gw = torch.autograd.grad(loss.sum(), (h, w))
            out += [loss.detach(), gh, gw]
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
