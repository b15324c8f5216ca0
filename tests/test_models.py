"""The model family: shapes, counts against [K] table 1, FLOPs against torch's counter."""

import math

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lmscale import accounting as acc
from lmscale.errors import LmscaleError, SpecError
from lmscale.models import ModelSpec, build_model
from lmscale.models.shapes import paper_learning_rate, shape_for_params
from lmscale.models.spec import SCORES_MAX_CTX, materialises_scores
from lmscale.models.transformer import causal_attention
from lmscale.training.plan import estimate_memory

ARCHS = ("transformer", "universal", "lstm")
SHAPES = [
    dict(n_layer=1, d_model=16, n_head=2, n_ctx=8, n_vocab=11),
    dict(n_layer=3, d_model=48, n_head=4, d_ff=100, n_ctx=16, n_vocab=37),
    dict(n_layer=4, d_model=64, n_head=8, n_ctx=32, n_vocab=64, tied_embeddings=False),
]


def _spec(arch, **shape):
    return ModelSpec(architecture=arch, **shape)


def _biases_and_norms(spec):
    """Closed form of the 1-D parameters, written independently of the models."""
    d, f = spec.d_model, spec.d_ff
    if spec.architecture == "lstm":
        return spec.n_layer * 2 * 4 * d  # bias_ih and bias_hh, four gates each
    blocks = 1 if spec.architecture == "universal" else spec.n_layer
    per_block = 2 * d + 3 * d + d + 2 * d + f + d  # ln_1, qkv, proj, ln_2, fc, fc_proj
    return blocks * per_block + 2 * d  # + final layer norm


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_contract_and_exact_counts(arch, shape):
    spec = _spec(arch, **shape)
    torch.manual_seed(0)
    model = build_model(spec)
    assert model.spec is spec
    idx = torch.randint(0, spec.n_vocab, (2, spec.n_ctx - 1))
    logits = model(idx)
    assert logits.shape == (2, spec.n_ctx - 1, spec.n_vocab) and logits.dtype == torch.float32
    formula = acc.non_embedding_params(spec)
    assert acc.exact_non_embedding_params(model, include_biases_and_norms=False) == formula
    exact = acc.exact_non_embedding_params(model)
    assert exact == formula + _biases_and_norms(spec)
    assert acc.exact_non_embedding_params(spec) == exact  # built on the meta device
    total = sum(p.numel() for p in model.parameters())
    assert total == exact + acc.embedding_params(spec)
    tied = model.lm_head.weight is model.wte.weight
    assert tied == spec.tied_embeddings


def test_gpt2_small_on_meta_device():
    spec = ModelSpec(n_layer=12, d_model=768, n_head=12, n_ctx=1024, n_vocab=50257)
    assert acc.exact_non_embedding_params(spec, include_biases_and_norms=False) == 84_934_656
    assert acc.exact_non_embedding_params(spec) == 84_934_656 + _biases_and_norms(spec)


@pytest.mark.parametrize("arch", ARCHS)
def test_causal(arch):
    spec = _spec(arch, n_layer=2, d_model=32, n_head=4, n_ctx=12, n_vocab=20)
    model = build_model(spec).eval()
    idx = torch.randint(0, 20, (1, 12))
    changed = idx.clone()
    changed[0, 7:] = (changed[0, 7:] + 1) % 20
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_universal_applies_one_block_n_layer_times():
    spec = _spec("universal", n_layer=3, d_model=32, n_head=4, n_ctx=10, n_vocab=15)
    torch.manual_seed(1)
    model = build_model(spec).eval()
    assert len(model.blocks) == 1
    idx = torch.randint(0, 15, (2, 10))
    with torch.no_grad():
        x = model.wte(idx) + model.wpe(torch.arange(10))
        for _ in range(3):
            x = model.blocks[0](x)
        manual = model.lm_head(model.ln_f(x))
        torch.testing.assert_close(model(idx), manual)


def test_gpt2_initialisation():
    spec = ModelSpec(n_layer=4, d_model=256, n_head=4, n_ctx=64, n_vocab=2000)
    torch.manual_seed(0)
    model = build_model(spec)
    # the token embedding (tied head) at 0.05: GPT-2's 0.02 keeps small models on the unigram plateau
    assert model.wte.weight.std().item() == pytest.approx(0.05, rel=0.03)
    assert model.wpe.weight.std().item() == pytest.approx(0.02, rel=0.05)
    fc = model.blocks[0].mlp.c_fc
    assert fc.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert torch.count_nonzero(fc.bias) == 0
    proj = model.blocks[0].mlp.c_proj.weight.std().item()
    assert proj == pytest.approx(0.02 / math.sqrt(2 * 4), rel=0.05)


def test_lstm_initialisation():
    """Unit-variance inputs to the gates (the plain nn.Embedding default), PyTorch's recurrent init."""
    spec = ModelSpec(architecture="lstm", n_layer=2, d_model=64, n_ctx=16, n_vocab=2000)
    torch.manual_seed(0)
    model = build_model(spec)
    assert model.wte.weight.std().item() == pytest.approx(1.0, rel=0.03)
    assert model.lm_head.weight is model.wte.weight
    bound = 1 / math.sqrt(64)
    assert float(model.rnn.weight_hh_l0.detach().abs().max()) <= bound


def test_dropout_only_in_training():
    spec = ModelSpec(n_layer=1, d_model=32, n_head=2, n_ctx=8, n_vocab=16, dropout=0.5)
    model = build_model(spec)
    idx = torch.randint(0, 16, (2, 8))
    assert not torch.equal(model.train()(idx), model(idx))
    model.eval()
    assert torch.equal(model(idx), model(idx))


def test_sequence_longer_than_context_is_an_error():
    model = build_model(ModelSpec(n_layer=1, d_model=16, n_head=2, n_ctx=4, n_vocab=9))
    with pytest.raises(LmscaleError, match="exceeds n_ctx = 4"):
        model(torch.zeros(1, 5, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs,field,value",
    [
        (dict(d_model=100, n_head=3), "d_model", 100),
        (dict(n_layer=-1), "n_layer", -1),
        (dict(d_model=0), "d_model", 0),
        (dict(architecture="gru"), "architecture", "gru"),
    ],
)
def test_bad_specs_name_field_and_value(kwargs, field, value):
    with pytest.raises(SpecError) as err:
        build_model(ModelSpec(**kwargs))
    assert err.value.field == field and err.value.value == value
    assert f"{field} = {value!r}" in str(err.value)


def _counted(model, idx):
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model(idx)
    counts = counter.get_flop_counts()["Global"]
    return {str(op).split(".")[-1]: n for op, n in counts.items()}


@pytest.mark.parametrize("arch", ["transformer", "universal"])
def test_transformer_flops_match_torch_counter(arch):
    spec = _spec(arch, n_layer=3, d_model=64, n_head=4, n_ctx=32, n_vocab=97)
    model = build_model(spec).eval()
    b, t = 2, spec.n_ctx
    idx = torch.randint(0, spec.n_vocab, (b, t))
    with sdpa_kernel(SDPBackend.MATH):  # the math kernel shows the attention matmuls
        counts = _counted(model, idx)
    ours = acc.forward_flops_breakdown(spec)
    linear = ours["qkv"] + ours["projection"] + ours["feedforward"] + ours["logits"]
    seen_linear = counts.get("mm", 0) + counts.get("addmm", 0)
    assert seen_linear == pytest.approx(linear * b * t, rel=0.01)
    # The counter charges the full T x T products; causal attention uses half ([K] table 1).
    seen_attention = counts.get("bmm", 0) + counts.get("baddbmm", 0)  # flash or scores path
    assert seen_attention == pytest.approx(2 * ours["attention_mask"] * b * t, rel=0.01)


def _attention_by_position(q, k, v):
    """Causal attention one query position at a time: softmax over the keys up to it."""
    out = torch.empty_like(q)
    for i in range(q.shape[-2]):
        w = torch.softmax(q[..., i:i + 1, :] @ k[..., :i + 1, :].transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
        out[..., i:i + 1, :] = w @ v[..., :i + 1, :]
    return out


@pytest.mark.parametrize("t", [1, 64, SCORES_MAX_CTX, SCORES_MAX_CTX + 8])
@pytest.mark.parametrize("d_head", [6, 16])
def test_causal_attention_matches_position_by_position(t, d_head):
    """Both CPU paths (scores up to SCORES_MAX_CTX, flash beyond), narrow heads and not: values and gradients."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, t, d_head, dtype=torch.float64, requires_grad=True) for _ in range(3))
    grad = torch.randn(3, 2, t, d_head, dtype=torch.float64)
    ours = torch.autograd.grad(causal_attention(q, k, v), (q, k, v), grad)
    ref = torch.autograd.grad(_attention_by_position(q, k, v), (q, k, v), grad)
    assert causal_attention(q, k, v).dtype == torch.float64
    torch.testing.assert_close(causal_attention(q, k, v), _attention_by_position(q, k, v))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # attention alone stays in fp32
        out = causal_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), _attention_by_position(q, k, v), atol=0.05, rtol=0.05)


def test_memory_estimate_counts_materialised_scores(monkeypatch):
    from lmscale.models import spec as spec_module

    spec = ModelSpec(n_layer=2, d_model=12, n_head=2, n_ctx=64, n_vocab=512)
    long = ModelSpec(n_layer=2, d_model=12, n_head=2, n_ctx=SCORES_MAX_CTX + 64, n_vocab=512)
    tokens = 2048 * 64
    kept = estimate_memory(spec, tokens, device_type="cpu")
    monkeypatch.setattr(spec_module, "SCORES_MAX_CTX", 0)  # as if the CPU used the flash kernel
    # [heads, T, T] probabilities and scores, fp32, per layer and token
    assert kept - estimate_memory(spec, tokens, device_type="cpu") == tokens * 2 * 2 * 2 * 64 * 4
    monkeypatch.undo()
    assert materialises_scores("cpu", 64, 0.0) and not materialises_scores("cpu", long.n_ctx, 0.0)
    assert materialises_scores("cuda", long.n_ctx, 0.1) and not materialises_scores("cuda", 64, 0.0)


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
def test_lstm_flops_match_torch_counter():
    spec = _spec("lstm", n_layer=2, d_model=48, n_ctx=20, n_vocab=50)
    model = build_model(spec).eval()
    b, t = 3, spec.n_ctx
    idx = torch.randint(0, spec.n_vocab, (b, t))
    with torch.backends.mkldnn.flags(enabled=False):  # oneDNN's fused LSTM hides its matmuls
        counts = _counted(model, idx)
    ours = acc.forward_flops_breakdown(spec)
    seen = counts.get("mm", 0) + counts.get("addmm", 0)
    assert seen == pytest.approx((ours["lstm"] + ours["logits"]) * b * t, rel=0.01)


# -- shape helper ------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_shape_for_params_within_ten_percent(arch):
    for target in np.logspace(4, 10, 19):
        spec = shape_for_params(float(target), architecture=arch)
        assert abs(acc.non_embedding_params(spec) / target - 1) <= 0.10, (arch, target, spec)
        assert spec.architecture == arch


def test_shape_for_params_respects_knobs():
    spec = shape_for_params(85e6, n_ctx=1024, n_vocab=50257)
    assert (spec.n_layer, spec.d_model, spec.n_head, spec.d_ff) == (12, 768, 12, 3072)
    spec = shape_for_params(3e6, d_head=16, aspect_ratio=16, d_ff_ratio=2, n_ctx=64, n_vocab=300)
    assert spec.d_model % 16 == 0 and spec.d_head == 16 and spec.d_ff == 2 * spec.d_model
    assert (spec.n_ctx, spec.n_vocab) == (64, 300)
    assert 8 <= spec.aspect_ratio <= 32
    assert abs(acc.non_embedding_params(spec) / 3e6 - 1) <= 0.10
    big = shape_for_params(1e9, aspect_ratio=100)
    assert 50 <= big.aspect_ratio <= 200


def test_shape_for_params_errors():
    with pytest.raises(LmscaleError, match="target_N = 100.*smallest"):
        shape_for_params(100)
    with pytest.raises(LmscaleError, match="target_N = -1"):
        shape_for_params(-1)
    with pytest.raises(LmscaleError, match="architecture = 'rnn'"):
        shape_for_params(1e6, architecture="rnn")
    with pytest.raises(LmscaleError, match="d_head = 0"):
        shape_for_params(1e6, d_head=0)


def test_paper_learning_rate():
    assert paper_learning_rate(1e6) == pytest.approx(0.003239 - 0.0001395 * math.log(1e6))
    assert paper_learning_rate(85e6) == pytest.approx(0.000692, abs=1e-6)
    assert paper_learning_rate(1e12) == 1e-5  # the formula is negative there: clamped
    assert paper_learning_rate(1e12, floor=3e-5) == 3e-5
    with pytest.raises(LmscaleError, match="N = 0"):
        paper_learning_rate(0)
