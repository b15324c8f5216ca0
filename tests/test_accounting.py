"""Parameter and FLOP accounting against [K] table 1 and GPT-2 small."""

import math
import subprocess
import sys

import pytest

from lmscale import accounting as acc
from lmscale.errors import LmscaleError, SpecError
from lmscale.models.spec import ModelSpec

GPT2_SMALL = ModelSpec(n_layer=12, d_model=768, n_head=12, n_ctx=1024, n_vocab=50257)


def test_gpt2_small_published_numbers():
    assert acc.non_embedding_params(GPT2_SMALL) == 84_934_656
    assert acc.forward_flops_per_token(GPT2_SMALL, logits=False, embedding=False) == 188_743_680
    # [K] table 1: C_fwd = 2N + 2 n_layer n_ctx d_attn.
    assert 188_743_680 == 2 * 84_934_656 + 2 * 12 * 1024 * 768
    assert acc.embedding_params(GPT2_SMALL) == (50257 + 1024) * 768


@pytest.mark.parametrize("n_layer,d_model", [(1, 8), (2, 64), (6, 512), (48, 1600)])
def test_standard_shape_is_12_n_layer_d_model_squared(n_layer, d_model):
    spec = ModelSpec(n_layer=n_layer, d_model=d_model, n_head=8 if d_model >= 8 else 1)
    assert acc.non_embedding_params(spec) == 12 * n_layer * d_model**2


def test_non_standard_d_ff_and_param_breakdown():
    spec = ModelSpec(n_layer=3, d_model=96, n_head=6, d_ff=200, n_ctx=64, n_vocab=321)
    n = acc.non_embedding_params(spec)
    assert n == 2 * 96 * 3 * (2 * 96 + 200)
    parts = acc.param_breakdown(spec)
    assert sum(v for k, v in parts.items() if k != "embedding") == n
    assert parts["embedding"] == (321 + 64) * 96


def test_universal_counts_block_once_but_flops_n_layer_times():
    shape = dict(n_layer=5, d_model=64, n_head=4, n_ctx=32, n_vocab=100)
    tr, ut = ModelSpec(**shape), ModelSpec(architecture="universal", **shape)
    assert acc.non_embedding_params(ut) * 5 == acc.non_embedding_params(tr)
    assert acc.applied_non_embedding_params(ut) == acc.non_embedding_params(tr)
    assert acc.forward_flops_breakdown(ut) == acc.forward_flops_breakdown(tr)
    assert acc.training_flops_per_token(ut) == 6 * acc.non_embedding_params(tr)


def test_lstm_formulas():
    spec = ModelSpec(architecture="lstm", n_layer=3, d_model=40, n_ctx=16, n_vocab=50)
    assert acc.non_embedding_params(spec) == 3 * 8 * 40**2
    assert acc.lstm_layer_params(10, 20) == 4 * 20 * 30
    assert acc.embedding_params(spec) == 50 * 40
    flops = acc.forward_flops_breakdown(spec)
    assert flops == {"embedding": 160, "lstm": 2 * 3 * 8 * 1600, "logits": 2 * 40 * 50}
    untied = ModelSpec(
        architecture="lstm", n_layer=3, d_model=40, n_vocab=50, tied_embeddings=False
    )
    assert acc.embedding_params(untied) == 2 * 50 * 40


def test_untied_output_matrix_counted_with_embeddings():
    untied = ModelSpec(
        n_layer=12, d_model=768, n_head=12, n_ctx=1024, n_vocab=50257, tied_embeddings=False
    )
    assert acc.embedding_params(untied) == acc.embedding_params(GPT2_SMALL) + 50257 * 768
    assert acc.non_embedding_params(untied) == acc.non_embedding_params(GPT2_SMALL)
    assert acc.forward_flops_per_token(untied) == acc.forward_flops_per_token(GPT2_SMALL)


def test_breakdown_terms_and_switches():
    s = GPT2_SMALL
    full = acc.forward_flops_breakdown(s)
    assert list(full) == list(acc.OPERATIONS["transformer"])
    assert full == {
        "embedding": 4 * 768,
        "qkv": 2 * 12 * 768 * 3 * 768,
        "attention_mask": 2 * 12 * 1024 * 768,
        "projection": 2 * 12 * 768 * 768,
        "feedforward": 2 * 12 * 2 * 768 * 3072,
        "logits": 2 * 768 * 50257,
    }
    assert acc.forward_flops_per_token(s) == sum(full.values())
    no_attn = acc.forward_flops_breakdown(s, attention=False, logits=False, embedding=False)
    assert set(no_attn) == {"qkv", "projection", "feedforward"}
    assert sum(no_attn.values()) == 2 * acc.non_embedding_params(s)


def test_training_flops_and_pf_days():
    s = GPT2_SMALL
    n = 84_934_656
    assert acc.training_flops_per_token(s) == 6 * n
    assert (
        acc.training_flops_per_token(s, exact=True, logits=False, embedding=False)
        == 3 * 188_743_680
    )
    assert acc.training_flops(s, 1e9) == pytest.approx(6 * n * 1e9)
    assert acc.training_flops(s, 10, exact=True) == 30 * acc.forward_flops_per_token(s)
    assert acc.PF_DAY == 8.64e19
    assert acc.pf_days(8.64e19) == 1.0
    assert acc.flops_from_pf_days(2.5) == pytest.approx(2.16e20)
    assert acc.pf_days(acc.flops_from_pf_days(3.7e-4)) == pytest.approx(3.7e-4)
    # 1 PF-day buys D = C / 6N tokens of GPT-2 small.
    assert 8.64e19 / (6 * n) == pytest.approx(1.6954e11, rel=1e-4)


def test_bad_inputs_name_the_problem():
    with pytest.raises(LmscaleError, match="ModelSpec"):
        acc.non_embedding_params({"n_layer": 2})
    with pytest.raises(LmscaleError, match="tokens = -5"):
        acc.training_flops(GPT2_SMALL, -5)
    with pytest.raises(SpecError, match="d_model = 100") as err:
        ModelSpec(d_model=100, n_head=3)
    assert err.value.field == "d_model" and err.value.value == 100
    with pytest.raises(SpecError, match="n_layer = 0"):
        ModelSpec(n_layer=0)
    with pytest.raises(SpecError, match="architecture = 'gru'"):
        ModelSpec(architecture="gru")


def test_accounting_does_not_import_torch():
    code = (
        "import sys, lmscale.accounting, lmscale.models, lmscale.models.shapes; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_attention_share_small_when_d_model_large():
    # [K] 2.1: the attention term is small when d_model >> n_ctx / 12.
    big = ModelSpec(n_layer=4, d_model=4096, n_head=32, n_ctx=1024, n_vocab=100)
    tiny = ModelSpec(n_layer=4, d_model=64, n_head=4, n_ctx=1024, n_vocab=100)
    for spec, lo, hi in ((big, 0.0, 0.03), (tiny, 0.5, 1.0)):
        b = acc.forward_flops_breakdown(spec, logits=False, embedding=False)
        share = b["attention_mask"] / sum(b.values())
        expected = spec.n_ctx / (12 * spec.d_model + spec.n_ctx)
        assert math.isclose(share, expected) and lo <= share <= hi


def test_describe_collects_table_1():
    info = acc.describe(GPT2_SMALL, logits=False, embedding=False)
    assert info["forward_flops_per_token"] == 188_743_680
    assert info["non_embedding_params"] == info["exact_non_embedding_weight_params"] == 84_934_656
    full = info["forward_flops_breakdown_full"]
    assert info["attention_share"] == full["attention_mask"] / sum(full.values())
    assert info["training_flops_per_token_exact"] == 3 * 188_743_680
    assert set(info["counting"]) >= {"non_embedding_params", "forward_flops_per_token"}
