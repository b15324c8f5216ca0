"""Text sources: built-in corpora, file/JSONL/HF sources, robust reading, the KJV and SWORD readers."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess

import pytest

from lmscale.data import corpora, lzw, sword
from lmscale.data.sources import BUILTIN, Source, check_names, get_source, list_sources
from lmscale.data.textio import (
    BINARY_SKIPPED,
    INVALID_UTF8,
    NUL_REMOVED,
    SourceStats,
    read_text_file,
)
from lmscale.errors import LmscaleError


def need(name: str) -> None:
    b = BUILTIN[name]
    if b.locate() is None:
        pytest.skip(f"Debian package {b.package} is not installed")


def first_docs(name: str, n: int = 5, max_bytes: int = 300_000) -> list[str]:
    docs = []
    for doc in get_source(name).documents(max_bytes=max_bytes):
        docs.append(doc)
        if len(docs) == n:
            break
    return docs


# -- Unix compress (LZW), checked against gzip's own decoder -----------------


def _compress(data: bytes, max_bits: int, clear: bool) -> bytes:
    """A ``compress``-format encoder (block mode), for checking the decoder against gzip."""
    out, acc, nacc = bytearray([0x1F, 0x9D, 0x80 | max_bits]), 0, 0
    state = {"n": 9, "bits": 0, "group": 0, "dec_free": 257, "first": True}

    def put(code: int) -> None:
        nonlocal acc, nacc
        acc |= code << nacc
        nacc += state["n"]
        state["bits"] += state["n"]
        while nacc >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nacc -= 8

    def pad() -> None:
        group = state["n"] * 8
        while (state["bits"] - state["group"]) % group:
            n, state["n"] = state["n"], 1
            put(0)
            state["n"] = n
        state["group"] = state["bits"]

    def emit(code: int) -> None:
        if state["dec_free"] > (1 << state["n"]) - 1 and state["n"] < max_bits:
            pad()
            state["n"] += 1
        put(code)
        if code == 256:
            pad()
            state.update(n=9, dec_free=257, first=True)
        elif state["first"]:
            state["first"] = False
        elif state["dec_free"] < 1 << max_bits:
            state["dec_free"] += 1

    table = {bytes([i]): i for i in range(256)}
    next_code, w = 257, b""
    for c in data:
        wc = w + bytes([c])
        if wc in table:
            w = wc
            continue
        emit(table[w])
        if next_code < 1 << max_bits:
            table[wc] = next_code
            next_code += 1
        elif clear:
            emit(256)
            table, next_code = {bytes([i]): i for i in range(256)}, 257
        w = bytes([c])
    if w:
        emit(table[w])
    if nacc:
        out.append(acc & 0xFF)
    return bytes(out)


@pytest.mark.skipif(shutil.which("gzip") is None, reason="gzip is not installed")
@pytest.mark.parametrize("max_bits", [10, 12, 16])
def test_unlzw_matches_gzip_including_clear_codes(max_bits):
    text = (corpora.stdlib_root() / "argparse.py").read_bytes()[:60_000]  # fills 10 and 12 bits
    packed = _compress(text, max_bits, clear=True)
    gz = subprocess.run(["gzip", "-dc"], input=packed, capture_output=True, check=True).stdout
    assert gz == text  # the encoder above writes what gzip (an independent decoder) reads
    assert lzw.unlzw(packed[3:], max_bits) == text


def test_kjv_windows_match_gzip():
    need("bible-kjv")
    path = corpora.locate_kjv()
    data = path.read_bytes()
    start = data.index(b"\x1f\x9d")
    windows = lzw.bible_data_windows(path)
    first = next(windows)
    gz = subprocess.run(["gzip", "-dc"], input=data[start:start + 3] + _window_body(data, 0),
                        capture_output=True).stdout
    assert first == gz[:len(first)]
    assert first.startswith(b"Holy Bible, Authorized (King James) Version.")
    assert len(first) == 65536


def _window_body(data: bytes, k: int) -> bytes:
    import struct

    count = struct.unpack(">I", data[88:92])[0]
    offsets = struct.unpack(f">{count + 1}I", data[92:92 + 4 * (count + 1)])
    return data[offsets[k]:offsets[k + 1]]


def test_bible_kjv_chapters():
    need("bible-kjv")
    docs = list(get_source("bible-kjv").documents())
    assert len(docs) == 1189  # chapters of the Protestant canon
    assert docs[0].startswith("In the beginning God created the heaven and the earth.\n")
    assert docs[-1].endswith("The grace of our Lord Jesus Christ be with you all. Amen.")
    assert not any(":" in d.split(" ", 1)[0] for d in docs[0].splitlines())  # no verse references


def test_bible_web_sword_reader():
    need("bible-web")
    docs = list(get_source("bible-web").documents())
    gen1 = [d for d in docs if d.startswith("In the beginning, God created the heavens and the earth.")]
    assert len(gen1) == 1
    assert gen1[0].endswith("There was evening and there was morning, a sixth day.")
    assert not any("<" in d or ">" in d for d in docs)  # OSIS markup stripped
    assert not any("YahwehGod" in d for d in docs)  # footnote marks leave a space
    assert len(docs) > 1300  # one per chapter (66 books + deuterocanon) plus a preface


def test_osis_to_text():
    osis = ('<title type="main">Psalm 1</title><w lemma="x">Blessed</w><note placement="foot">a '
            '<reference>1:1</reference>note</note><w>is</w> the man &amp; <l level="1"/>who')
    assert sword.osis_to_text(osis) == "Psalm 1\nBlessed is the man &\nwho"


def test_jargon_entries():
    need("jargon")
    docs = list(get_source("jargon").documents())
    hacker = [d for d in docs if d.startswith(":hacker: n.")]
    assert len(hacker) == 1 and "programmable systems" in hacker[0]
    assert len(docs) > 2300  # 2307 entries in version 4.4.7, plus the chapters


def test_gcide_entries():
    need("gcide")
    docs = list(get_source("gcide").documents(max_bytes=6_000_000))
    assert not any(d.startswith("00-database") for d in docs)
    caloric = [d for d in docs if d.startswith('Caloric \\Ca*lor"ic\\, a.')]
    assert len(caloric) == 1 and "{Caloric engine}" in caloric[0]


def test_vim_help_sections():
    need("vim-help")
    docs = first_docs("vim-help", 50)
    assert len(docs) == 50
    assert not any(line.startswith("=" * 20) for d in docs for line in d.splitlines())


def test_python_sources():
    code = first_docs("python-stdlib", 3)
    assert len(code) == 3 and all(d.strip() for d in code)
    docs = first_docs("python-docs", 3)
    assert len(docs) == 3
    assert corpora.docstrings(b'"""Mod."""\nclass C:\n    """Cls."""\n    def f(self):\n'
                              b'        """Meth."""\n') == ["Mod.", "Cls.", "Meth."]
    topics = corpora.pydoc_topics()
    assert topics["assert"].startswith('The "assert" statement')


# -- files, directories, globs, JSON Lines ----------------------------------


def test_dir_source_skips_binary_and_repairs_utf8(tmp_path):
    (tmp_path / "a.txt").write_text("plain text\n")
    (tmp_path / "b.txt").write_bytes(b"caf\xe9 au lait\n")  # Latin-1, invalid UTF-8
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    (tmp_path / ".hidden").write_text("not read\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.md").write_text("# heading\n")
    stats = SourceStats()
    docs = sorted(get_source(f"dir:{tmp_path}").documents(stats))
    assert docs == ["# heading\n", "caf\ufffd au lait\n", "plain text\n"]
    assert stats.warnings == {BINARY_SKIPPED: 1, INVALID_UTF8: 1}
    assert stats.files == 3 and stats.documents == 3
    assert stats.bytes == sum(len(d.encode()) for d in docs)


def test_large_file_is_cut_at_line_and_character_boundaries(tmp_path):
    text = "".join(f"line {i} é€😀 " * (i % 7 + 1) + ("\n" if i % 5 else "") for i in range(3000))
    path = tmp_path / "big.txt"
    path.write_text(text)
    stats = SourceStats()
    pieces = list(read_text_file(path, stats, max_document_bytes=2000))
    assert "".join(pieces) == text
    assert len(pieces) > 10 and all(len(p.encode()) <= 2000 for p in pieces)
    assert stats.warnings == {}


def test_max_bytes_stops_at_a_document(tmp_path):
    for i in range(20):
        (tmp_path / f"{i}.txt").write_text("x" * 100)
    stats = SourceStats()
    docs = list(get_source(f"dir:{tmp_path}").documents(stats, max_bytes=450))
    assert len(docs) == 5 and stats.truncated and stats.bytes == 500


def test_nul_characters_removed_and_counted(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"text": "a\u0000b"}) + "\n" + json.dumps({"text": "  "}) + "\n")
    stats = SourceStats()
    assert list(get_source(f"jsonl:{path}").documents(stats)) == ["ab"]
    assert stats.warnings[NUL_REMOVED] == 1


def test_glob_and_named_sources(tmp_path):
    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "b.log").write_text("beta\n")
    src = get_source(f"glob:{tmp_path}/*.txt")
    assert list(src.documents()) == ["alpha\n"]
    named = get_source(f"mine=glob:{tmp_path}/*.log")
    assert named.name == "mine" and list(named.documents()) == ["beta\n"]
    with pytest.raises(LmscaleError, match="same name"):
        check_names([get_source(f"dir:{tmp_path}"), get_source(f"dir:{tmp_path}")])


def test_jsonl_source(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    with gzip.open(path, "wt") as f:
        for i in range(3):
            f.write(json.dumps({"id": i, "body": f"document {i}"}) + "\n")
    assert list(get_source(f"jsonl:{path}:body").documents()) == [f"document {i}" for i in range(3)]
    with pytest.raises(LmscaleError, match=r"line 1: no field 'text' \(found: id, body\)"):
        list(get_source(f"jsonl:{path}").documents())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(LmscaleError, match="bad.jsonl, line 2: not valid JSON"):
        list(get_source(f"jsonl:{bad}").documents())


def test_hf_source_from_local_files(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    folder = tmp_path / "corpus"
    folder.mkdir()
    rows = [{"content": f"row number {i}"} for i in range(5)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = get_source(f"hf:{folder}::train:content")
    assert src.name == "corpus"
    assert list(src.documents()) == [r["content"] for r in rows]
    with pytest.raises(LmscaleError, match="row 0: no field 'text'"):
        list(get_source(f"hf:{folder}").documents())


@pytest.mark.parametrize("spec, message", [
    ("dir:/no/such/dir", "/no/such/dir does not exist"),
    ("glob:/no/such/*.txt", "matches no files"),
    ("jsonl:/no/such.jsonl", "does not exist"),
    ("sword:NoSuchModule", "no SWORD module 'NoSuchModule'"),
    ("wikipedia", "unknown source 'wikipedia': expected one of python-stdlib"),
])
def test_bad_specs(spec, message):
    with pytest.raises(LmscaleError, match=message):
        get_source(spec)


def test_missing_package_names_it(monkeypatch, tmp_path):
    monkeypatch.setattr(corpora, "GCIDE_PATHS", (tmp_path / "gcide.dict.dz",))
    with pytest.raises(LmscaleError, match="apt-get install dict-gcide"):
        get_source("gcide")
    row = [i for i in list_sources() if i.name == "gcide"][0]
    assert not row.available and "dict-gcide" in row.hint


def test_list_sources_matches_what_is_installed():
    infos = {i.name: i for i in list_sources()}
    for name, b in BUILTIN.items():
        assert infos[name].available == (b.locate() is not None)
    assert "dir:PATH" in infos and "hf:NAME[:CONFIG[:SPLIT[:FIELD]]]" in infos


def test_source_object_from_a_function():
    def read(stats):
        yield "one"
        yield ""
        yield "two"

    stats = SourceStats()
    assert list(Source("mine", "mine", "test", read).documents(stats)) == ["one", "two"]
    assert stats.warnings == {"empty documents skipped": 1}
