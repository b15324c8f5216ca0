"""Token shards: splits, the fixed shuffled order, manifests, tokenizer checks, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from lmscale.data import DataWarning, PreparedData, Source, get_source, prepare
from lmscale.data.prepare import order_hash, split_hash
from lmscale.data.shards import Spill, token_dtype
from lmscale.data.textio import BINARY_SKIPPED, INVALID_UTF8
from lmscale.data.tokenizer import ByteTokenizer
from lmscale.errors import LmscaleError

MAX = 300_000


def docs_of(data: PreparedData, name: str | None, split: str) -> list[str]:
    """Documents of a split, decoded independently of the manifest (split at the separator)."""
    tokens = data.tokens(name, split)
    ends = np.flatnonzero(np.asarray(tokens) == data.eot)
    tok = data.tokenizer()
    out, start = [], 0
    for end in ends:
        out.append(tok.decode(tokens[start:end]))
        start = end + 1
    assert start == len(tokens)  # every document ends with the separator
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> PreparedData:
    out = tmp_path_factory.mktemp("prep") / "shards"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return prepare(["python-stdlib", "python-docs"], out, 512, max_bytes_per_source=MAX,
                       progress=False, min_test_tokens=4000)


def test_manifest_and_api(prepared):
    m = json.loads((prepared.path / "manifest.json").read_text())
    assert m["lmscale_version"] and m["tokenizer"]["hash"] == prepared.tokenizer_hash
    assert prepared.distributions == ["python-stdlib", "python-docs"]
    assert prepared.train_distribution == "python-stdlib"
    assert prepared.vocab_size == 512 and prepared.dtype == np.uint16
    assert prepared.tokenizer().hash == prepared.tokenizer_hash
    for d in m["distributions"]:
        for split in ("train", "test"):
            s = d[split]
            assert s["tokenizer_hash"] == prepared.tokenizer_hash
            assert (prepared.path / s["file"]).stat().st_size == 2 * s["tokens"]
            assert len(prepared.tokens(d["name"], split)) == s["tokens"] > 0
            assert int((np.asarray(prepared.tokens(d["name"], split)) == prepared.eot).sum()) == s["documents"]
        assert d["stats"]["bytes"] == d["train"]["bytes"] + d["test"]["bytes"]
        assert d["stats"]["bytes"] >= MAX  # read up to the limit (the last document crosses it)
    assert prepared.num_test_tokens("python-docs") >= 4000  # min_test_tokens honoured


def test_bytes_per_token_per_distribution(prepared):
    for name in prepared.distributions:
        for split in ("train", "test"):
            docs = docs_of(prepared, name, split)
            n_bytes = sum(len(d.encode()) for d in docs)
            expected = n_bytes / len(prepared.tokens(name, split))
            assert prepared.bytes_per_token(name, split) == pytest.approx(expected, rel=1e-12)
    info = prepared.info()
    assert {row["name"] for row in info["distributions"]} == set(prepared.distributions)
    assert all(row["test"]["bytes_per_token"] > 1.5 for row in info["distributions"])


def test_split_is_by_document_hash(prepared):
    threshold = int(0.02 * 2**64)
    for name in prepared.distributions:
        source_docs = list(get_source(name).documents(max_bytes=MAX))
        train, test = docs_of(prepared, name, "train"), docs_of(prepared, name, "test")
        assert sorted(train + test) == sorted(source_docs)
        assert not set(train) & set(test)
        hashed = {d for d in source_docs if split_hash(d.encode()) < threshold}
        assert hashed <= set(test)
        promoted = set(test) - hashed  # topped up: the train documents with the smallest hashes
        if promoted:
            assert max(split_hash(d.encode()) for d in promoted) < min(split_hash(d.encode()) for d in train)


def test_train_order_is_fixed_shuffle_and_prefixes_nest(prepared):
    train = docs_of(prepared, None, "train")
    keys = [order_hash(d.encode(), 0) for d in train]
    assert keys == sorted(keys)  # one fixed order: ascending seeded hash
    source_order = [d for d in get_source("python-stdlib").documents(max_bytes=MAX) if d in set(train)]
    assert train != source_order
    small, large = prepared.train_tokens(10_000), prepared.train_tokens(100_000)
    assert np.shares_memory(small, large) and np.array_equal(small, large[:10_000])
    assert isinstance(prepared.train_tokens(), np.memmap)


def test_smaller_corpus_train_set_nests_in_larger(tmp_path):
    kw = dict(tokenizer="byte", progress=False, test_fraction=0.2, min_test_tokens=0)
    small = prepare(["python-stdlib"], tmp_path / "s", max_bytes_per_source=150_000, **kw)
    large = prepare(["python-stdlib"], tmp_path / "l", max_bytes_per_source=400_000, **kw)
    a, b = docs_of(small, None, "train"), docs_of(large, None, "train")
    assert len(a) < len(b)
    positions = [b.index(d) for d in a]
    assert positions == sorted(positions)  # same relative order: a subsequence


def test_two_runs_are_identical_and_seed_changes_only_the_order(tmp_path):
    kw = dict(max_bytes_per_source=120_000, progress=False)
    sources = ["python-docs", "python-stdlib"]
    runs = [prepare(sources, tmp_path / f"r{i}", 300, **kw) for i in range(2)]
    reseeded = prepare(sources, tmp_path / "seed1", 300, seed=1, **kw)
    m = [json.loads((r.path / "manifest.json").read_text()) for r in (*runs, reseeded)]
    for x in m:
        x.pop("created")
    assert m[0] == m[1]  # same tokenizer, same split, same order, same bytes
    for a, b in zip(m[0]["distributions"], m[2]["distributions"]):
        assert a["test"] == b["test"]  # the split does not depend on the seed
        assert a["train"]["tokens"] == b["train"]["tokens"]
    first, again = m[0]["distributions"][0]["train"], m[2]["distributions"][0]["train"]
    assert first["documents"] > 20 and first["sha256"] != again["sha256"]  # the order does
    assert sorted(docs_of(runs[0], None, "train")) == sorted(docs_of(reseeded, None, "train"))


def test_shard_read_with_another_tokenizer_is_refused(prepared, tmp_path):
    copy = Path(shutil.copytree(prepared.path, tmp_path / "copy"))
    ByteTokenizer().save(copy / "tokenizer.json")
    with pytest.raises(LmscaleError, match="is not the one the shards .* were written with"):
        PreparedData.open(copy)
    with pytest.raises(LmscaleError, match="refusing to read"):
        PreparedData.open(prepared.path, tokenizer_hash=ByteTokenizer().hash)
    with pytest.raises(LmscaleError, match="refusing to read"):
        prepared.check_tokenizer(ByteTokenizer())
    prepared.check_tokenizer(prepared.tokenizer())
    PreparedData.open(prepared.path, tokenizer_hash=prepared.tokenizer_hash)


def test_damaged_or_missing_files_are_refused(prepared, tmp_path):
    copy = Path(shutil.copytree(prepared.path, tmp_path / "copy"))
    shard = copy / "python-docs.test.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(LmscaleError, match="python-docs.test.bin: .* bytes, the manifest says"):
        PreparedData.open(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["distributions"][0]["train"]["tokens"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LmscaleError, match=r"distributions\[0\].train: missing key 'tokens'"):
        PreparedData.open(copy)
    (copy / "manifest.json").write_text("{")
    with pytest.raises(LmscaleError, match="not readable JSON"):
        PreparedData.open(copy)
    with pytest.raises(LmscaleError, match="does not exist"):
        PreparedData.open(tmp_path / "nowhere")
    prepared.verify()


def test_vocab_and_size_checks(prepared):
    prepared.check_vocab(512)
    with pytest.raises(LmscaleError, match="n_vocab = 500 is smaller"):
        prepared.check_vocab(500)
    n = prepared.num_train_tokens()
    with pytest.raises(LmscaleError, match="only"):
        prepared.train_tokens(n + 1)
    assert len(prepared.train_tokens(n)) == n
    with pytest.raises(LmscaleError, match="no distribution 'gcide'"):
        prepared.test_tokens("gcide")


def text_dir(path: Path, docs: dict[str, bytes]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, data in docs.items():
        (path / name).write_bytes(data)
    return path


def test_corpus_too_small_for_a_context(tmp_path):
    d = text_dir(tmp_path / "tiny", {f"{i}.txt": f"tiny document {i}\n".encode() for i in range(4)})
    data = prepare([f"dir:{d}"], tmp_path / "out", tokenizer="byte", progress=False)
    assert data.num_test_tokens() > 0 and data.num_train_tokens() > 0
    with pytest.raises(LmscaleError, match=r"fewer than the 257 needed .*n_ctx \+ 1"):
        data.check_min_tokens(257)
    with pytest.raises(LmscaleError, match="asked for 257"):
        data.train_tokens(257)
    data.check_min_tokens(data.num_train_tokens())


def test_single_document_cannot_be_split(tmp_path):
    d = text_dir(tmp_path / "one", {"a.txt": b"only one document here\n"})
    with pytest.raises(LmscaleError, match="1 document.* cannot be split"):
        prepare([f"dir:{d}"], tmp_path / "out", tokenizer="byte", progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.partial-*"))


def test_empty_corpus(tmp_path):
    d = text_dir(tmp_path / "bin", {"a.bin": b"\0\1\2" * 100, "b.txt": b""})
    with pytest.raises(LmscaleError, match=r"no text found \(1 binary files skipped"):
        prepare([f"dir:{d}"], tmp_path / "out", tokenizer="byte", progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.partial-*"))


def test_missing_path_fails_before_any_work(tmp_path):
    with pytest.raises(LmscaleError, match="does not exist"):
        prepare(["python-stdlib", "dir:/no/such/place"], tmp_path / "out", 512, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_binary_files_and_invalid_utf8_are_counted(tmp_path):
    docs = {f"{i}.txt": f"text file number {i}\n".encode() * 20 for i in range(30)}
    docs["x.gz"] = b"\x1f\x8b\x08\0" + bytes(200)
    docs["latin1.txt"] = b"a na\xefve caf\xe9 in a longer line of plain text\n" * 10
    d = text_dir(tmp_path / "mixed", docs)
    with pytest.warns(DataWarning, match="1 binary files skipped"):
        data = prepare([f"dir:{d}"], tmp_path / "out", tokenizer="byte", progress=False)
    stats = data.entry()["stats"]
    assert stats["warnings"] == {BINARY_SKIPPED: 1, INVALID_UTF8: 1}
    assert stats["files"] == 31
    assert data.info()["distributions"][0]["warnings"] == stats["warnings"]


def test_injected_failure_leaves_nothing(tmp_path):
    def read(stats):
        for i in range(1000):
            if i == 200:
                raise RuntimeError("disk on fire")
            yield f"document {i} " * 20

    with pytest.raises(RuntimeError, match="disk on fire"):
        prepare(["python-stdlib", Source("broken", "broken", "", read)], tmp_path / "out",
                tokenizer="byte", max_bytes_per_source=100_000, progress=False)
    assert list(tmp_path.iterdir()) == []


CHILD = """
import sys, time
from pathlib import Path
from lmscale.data import Source, prepare
marker = Path(sys.argv[2])
def read(stats):
    for i in range(10**6):
        if i == 2000:
            marker.write_text("started")
        if i > 2000:
            time.sleep(0.01)
        yield f"document {i} " * 40
prepare([Source("slow", "slow", "", read)], sys.argv[1], tokenizer="byte", progress=False)
"""


def test_killed_prepare_leaves_no_complete_looking_output(tmp_path):
    out, marker = tmp_path / "out", tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(marker)])
    try:
        deadline = time.time() + 120
        while not marker.exists() and child.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the child prepare did not start"
        time.sleep(0.5)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert not out.exists()
    partial = list(tmp_path.glob("out.partial-*"))
    assert len(partial) == 1 and not (partial[0] / "manifest.json").exists()
    assert not list(partial[0].glob("*.bin"))  # shards exist only under .partial names
    for path in (out, partial[0]):
        with pytest.raises(LmscaleError):
            PreparedData.open(path)
    d = text_dir(tmp_path / "txt", {f"{i}.txt": b"some text\n" * (i + 1) for i in range(5)})
    prepare([f"dir:{d}"], out, tokenizer="byte", progress=False)
    assert not list(tmp_path.glob("out.partial-*"))  # the dead run's directory is cleaned up


def test_output_directory_rules(prepared, tmp_path):
    d = text_dir(tmp_path / "txt", {f"{i}.txt": b"some text\n" * (i + 1) for i in range(5)})
    out = tmp_path / "out"
    prepare([f"dir:{d}"], out, tokenizer="byte", progress=False)
    with pytest.raises(LmscaleError, match="already holds prepared data"):
        prepare([f"dir:{d}"], out, tokenizer="byte", progress=False)
    again = prepare([f"dir:{d}"], out, tokenizer="byte", progress=False, overwrite=True)
    assert again.num_train_tokens() > 0
    with pytest.raises(LmscaleError, match="holds no prepared data"):
        prepare([f"dir:{d}"], d, tokenizer="byte", progress=False, overwrite=True)
    with pytest.raises(LmscaleError, match="vocab_size = 512: expected 256"):
        prepare([f"dir:{d}"], tmp_path / "o2", 512, tokenizer="byte", progress=False)


def test_reusing_a_tokenizer(prepared, tmp_path):
    d = text_dir(tmp_path / "txt", {f"{i}.txt": b"def f(x):\n    return x\n" * (i + 1) for i in range(6)})
    data = prepare([f"dir:{d}"], tmp_path / "out", tokenizer=prepared.path, progress=False)
    assert data.tokenizer_hash == prepared.tokenizer_hash and data.vocab_size == 512


def test_spill_order_does_not_depend_on_memory(tmp_path):
    rng = np.random.default_rng(0)
    keys = [int(k) for k in rng.integers(0, 2**63, 150, dtype=np.int64)] * 2  # duplicates too
    keys += [keys[0] & ~0xFFFF | i * 7 for i in range(60)]  # many keys in one bucket: split 6 times
    docs = [rng.integers(0, 500, rng.integers(1, 50)).astype(np.uint16) for _ in keys]
    results = []
    for buffer, bucket in ((1 << 20, 1 << 20), (2000, 500)):
        spill = Spill(tmp_path / f"s{buffer}", np.uint16, buffer_bytes=buffer)
        for i, (k, doc) in enumerate(zip(keys, docs)):
            spill.add(k, doc, i)
        results.append([(k, n, d.tolist()) for k, d, n in spill.sorted_documents(bucket)])
        assert not (tmp_path / f"s{buffer}").exists()
    expected = sorted(((k, i, docs[i].tolist()) for i, k in enumerate(keys)), key=lambda x: (x[0], x[1]))
    assert results[0] == results[1] == expected


def test_memory_budget_does_not_change_the_shards(tmp_path):
    kw = dict(tokenizer="byte", max_bytes_per_source=200_000, progress=False)
    a = prepare(["python-stdlib"], tmp_path / "a", **kw)
    b = prepare(["python-stdlib"], tmp_path / "b", memory_bytes=20_000, **kw)
    assert a.entry()["train"]["sha256"] == b.entry()["train"]["sha256"]


def test_token_dtype():
    assert token_dtype(256) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32
