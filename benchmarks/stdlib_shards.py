"""Token shards of the Python standard library for the throughput benchmarks, prepared once per machine."""

from __future__ import annotations

from pathlib import Path


def stdlib_shards(vocab: int, max_bytes: int = 20_000_000) -> Path:
    """The folder of Python standard library shards in a ``vocab``-id BPE (lmscale's cache)."""
    from lmscale.data import PreparedData, prepare
    from lmscale.training.hardware import cache_dir

    out = cache_dir() / f"bench-shards-python-stdlib-bpe{vocab}"
    try:
        return Path(PreparedData.open(out).path)
    except Exception:
        prepare(["python-stdlib"], out, vocab_size=vocab, max_bytes_per_source=max_bytes,
                progress=False, overwrite=True)
        return out
