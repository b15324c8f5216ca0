"""``lmscale data``: sources, prepare, info; errors exit with 2 and one line."""

from __future__ import annotations

import json

from lmscale.cli import main
from lmscale.data import PreparedData


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sources_json(capsys):
    code, out, _ = run(capsys, "data", "sources", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["python-stdlib"]["available"] is True
    assert "apt-get install" in rows["gcide"]["hint"] or rows["gcide"]["available"]
    code, out, _ = run(capsys, "data", "sources")
    assert code == 0 and "bible-kjv" in out and "jsonl:PATH[:FIELD]" in out


def test_prepare_then_info(tmp_path, capsys):
    src = tmp_path / "txt"
    src.mkdir()
    for i in range(12):
        (src / f"{i}.txt").write_text(f"note {i}: " + "some words here. " * (i + 5))
    (src / "blob.bin").write_bytes(bytes(range(256)) * 4)
    out = tmp_path / "shards"
    code, stdout, err = run(capsys, "data", "prepare", "--source", f"notes=dir:{src}", "--source",
                            "python-docs", "--tokenizer", "byte", "--max-mb-per-source", "0.05",
                            "--out", str(out), "--json")
    assert code == 0, err
    info = json.loads(stdout)
    assert [r["name"] for r in info["distributions"]] == ["notes", "python-docs"]
    assert "warning: source 'notes': 1 binary files skipped" in err
    data = PreparedData.open(out)
    assert data.vocab_size == 256 and data.train_distribution == "notes"
    code, stdout, _ = run(capsys, "data", "info", str(out), "--verify")
    assert code == 0 and "notes" in stdout and "verified" in stdout and "bytes/token" in stdout
    code, stdout, _ = run(capsys, "data", "info", str(out), "--json")
    rows = json.loads(stdout)["distributions"]
    assert rows[1]["test"]["bytes_per_token"] == data.bytes_per_token("python-docs")


def test_errors_are_one_line_with_status_2(tmp_path, capsys):
    code, _, err = run(capsys, "data", "prepare", "--source", "dir:/no/such/dir", "--tokenizer", "byte",
                       "--out", str(tmp_path / "o"))
    assert code == 2 and err.strip() == ("lmscale data: error: source 'dir:/no/such/dir': "
                                         "directory /no/such/dir does not exist")
    code, _, err = run(capsys, "data", "info", str(tmp_path))
    assert code == 2 and "manifest.json is missing" in err
    code, _, err = run(capsys, "data", "prepare", "--source", "python-docs", "--out", str(tmp_path / "o"))
    assert code == 2 and "vocab_size = None" in err
    assert not (tmp_path / "o").exists()


def test_help_teaches(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["data", "prepare", "--help"])
    out = capsys.readouterr().out
    assert "Example" in out and "--max-mb-per-source" in out and "hf:NAME" in out
