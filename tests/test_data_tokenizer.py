"""Tokenizers: trained BPE (tiktoken ids == Hugging Face ids), byte, GPT-2 files, JSON and hashes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmscale.data import gpt2
from lmscale.data.sources import BUILTIN, get_source
from lmscale.data.tokenizer import (
    PATTERN,
    BPETokenizer,
    ByteTokenizer,
    bytes_to_unicode,
    load_tokenizer,
    train_bpe,
)
from lmscale.errors import LmscaleError, SpecError

SOURCES = [name for name, b in BUILTIN.items() if b.locate() is not None]


def sample(name: str, n: int = 8, max_bytes: int = 200_000) -> list[str]:
    docs = []
    for doc in get_source(name).documents(max_bytes=max_bytes):
        docs.append(doc)
        if len(docs) == n:
            break
    return docs


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return train_bpe(get_source("python-stdlib").documents(max_bytes=1_500_000), 768)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    out = []
    for name in SOURCES:
        out.extend(sample(name, 6, 150_000))
    out.append("unicode: é ß 𝔘𝔫𝔦 😀 \u00a0nbsp\u2028sep\u3000ideo e\u0301 ﬁ 中文 日本語\t\r\n  \n")
    return out


def test_trained_vocab(bpe):
    assert bpe.vocab_size == 768 and bpe.kind == "bpe"
    assert bpe.tokens[bpe.eot] is None
    assert sum(t is not None and len(t) == 1 for t in bpe.tokens) == 256  # every byte
    assert len(bpe.merges) == 768 - 257
    for a, b in bpe.merges[:50]:  # each merge makes a token of the two parts
        assert bpe.tokens[a] + bpe.tokens[b] in bpe.tokens


def test_tiktoken_ids_equal_hf_ids_on_real_text(bpe, texts):
    hf = bpe.to_hf()
    for text in texts:
        assert bpe.encode(text) == hf.encode(text, add_special_tokens=False).ids


def test_round_trip_on_real_sources(bpe, texts):
    byte = ByteTokenizer()
    for text in texts:
        assert bpe.decode(bpe.encode(text)) == text
        assert byte.decode(byte.encode(text)) == text
        assert bpe.decode(np.array(bpe.encode(text), dtype=np.uint16)) == text


def test_bpe_compresses_more_than_bytes(bpe, texts):
    code = sample("python-stdlib", 4)
    n_bytes = sum(len(t.encode()) for t in code)
    assert sum(len(bpe.encode(t)) for t in code) < 0.6 * n_bytes


def test_encode_arrays_matches_encode_on_any_thread_count(bpe, texts):
    many = texts * 3
    for threads in (1, 2, 3):
        arrays = bpe.encode_arrays(many, threads)
        assert [a.tolist() for a in arrays] == [bpe.encode(t) for t in many]
    assert [a.tolist() for a in ByteTokenizer().encode_arrays(texts)] == [list(t.encode()) for t in texts]


def test_special_text_is_ordinary(bpe):
    ids = bpe.encode("a<|endoftext|>b")
    assert bpe.eot not in ids and bpe.decode(ids) == "a<|endoftext|>b"


def test_pattern_keeps_one_leading_space():
    regex = pytest.importorskip("regex")  # tiktoken's dependency

    assert regex.findall(PATTERN, "def f(x):\n    return x's  y") == [
        "def", " f", "(", "x", "):", "\n    ", "return", " x", "'s", "  ", "y"]


def test_json_round_trip_and_hash(bpe, tmp_path):
    path = bpe.save(tmp_path / "tok.json")
    again = load_tokenizer(path)
    assert again.hash == bpe.hash and again.encode("hello world") == bpe.encode("hello world")
    assert bpe.hash.startswith("sha256:") and bpe.hash != ByteTokenizer().hash
    content = json.loads(path.read_text())
    content["tokens"][300], content["tokens"][301] = content["tokens"][301], content["tokens"][300]
    path.write_text(json.dumps(content))
    with pytest.raises(LmscaleError, match="changed or damaged"):
        load_tokenizer(path)
    del content["hash"]  # without a stored hash it loads, and is a different tokenizer
    path.write_text(json.dumps(content))
    assert load_tokenizer(path).hash != bpe.hash
    assert load_tokenizer(ByteTokenizer().save(tmp_path / "b.json")).hash == ByteTokenizer().hash


def test_bad_tokenizer_files(tmp_path):
    with pytest.raises(LmscaleError, match="does not exist"):
        load_tokenizer(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(LmscaleError, match="not a readable JSON"):
        load_tokenizer(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"format": "other"}')
    with pytest.raises(LmscaleError, match="not an lmscale tokenizer"):
        load_tokenizer(tmp_path / "y.json")


def test_vocab_size_checked():
    with pytest.raises(SpecError, match="vocab_size = 256"):
        train_bpe(["abc"], 256)


def test_small_corpus_gives_fewer_tokens():
    tok = train_bpe(["ab ab ab"], 1000)
    assert 257 < tok.vocab_size < 1000
    assert tok.decode(tok.encode("ab ab")) == "ab ab"


# -- GPT-2 ---------------------------------------------------------------------


def test_gpt2_missing_names_the_places(tmp_path, monkeypatch):
    monkeypatch.setenv("LMSCALE_GPT2_DIR", str(tmp_path / "gpt2"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(LmscaleError) as err:
        gpt2.load_gpt2()
    message = str(err.value)
    for place in ("LMSCALE_GPT2_DIR", str(tmp_path / "tiktoken"), str(tmp_path / "hub")):
        assert place in message


def test_gpt2_file_readers_on_files_written_in_its_formats(bpe, tmp_path):
    ranks = {t: i for i, t in enumerate(bpe.tokens) if t is not None}
    encoder = {bytes_to_unicode(t): i for t, i in ranks.items()} | {"<|endoftext|>": bpe.eot}
    (tmp_path / "encoder.json").write_text(json.dumps(encoder))
    assert gpt2.read_encoder_json(tmp_path / "encoder.json") == ranks
    import base64

    lines = [f"{base64.b64encode(t).decode()} {i}" for t, i in ranks.items()]
    (tmp_path / "r50k_base.tiktoken").write_text("\n".join(lines) + "\n")
    assert gpt2.read_tiktoken_file(tmp_path / "r50k_base.tiktoken") == ranks
    with pytest.raises(LmscaleError, match="GPT-2 has 50256"):
        gpt2.gpt2_from_ranks({t: i - 1 for t, i in ranks.items() if i > 0}, "test")


def test_real_gpt2_when_available():
    ranks, _ = gpt2.find_gpt2_ranks()
    if ranks is None:
        pytest.skip("GPT-2 encoding files are not on this machine")
    tok = gpt2.load_gpt2()
    assert tok.vocab_size == 50257 and tok.eot == 50256
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's published ids
    assert tok.encode(" the") == [262]
