"""``prepare``: text sources -> one tokenizer -> train and test shards per distribution.

For each source, in one streaming pass:

1. documents are read in batches (a background thread reads while the
   tokenizer encodes the previous batch on every core);
2. a document goes to the test split when a hash of its text falls below
   ``test_fraction`` (the same text always lands on the same side, whatever
   the source, seed or size limit);
3. train documents are spilled to disk buckets keyed by a seeded hash of
   their text, then written out in ascending key order: one fixed shuffled
   order, so the first D tokens are a prefix and smaller data sets are
   contained in larger ones.

If the hashed test split holds fewer than ``min_test_tokens``, the train
documents with the smallest split hashes move to it (never more than half
of the source). Everything is written in ``<out>.partial-<pid>`` and renamed
to ``out`` when complete; on failure the partial directory is removed, and a
directory without ``manifest.json`` is never opened as prepared data.
"""

from __future__ import annotations

import datetime
import hashlib
import heapq
import json
import os
import queue
import shutil
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmscale.data.prepared import FORMAT, FORMAT_VERSION, MANIFEST, TOKENIZER, PreparedData
from lmscale.data.shards import ShardWriter, Spill, token_dtype
from lmscale.data.sources import Source, check_names, get_source
from lmscale.data.textio import DataWarning, SourceStats
from lmscale.data.tokenizer import (
    ByteTokenizer,
    Tokenizer,
    default_threads,
    load_tokenizer,
    train_bpe,
)
from lmscale.errors import LmscaleError, SpecError
from lmscale.files import write_text_atomic

SPLIT_PERSON = b"lmscale-split"


@dataclass(frozen=True)
class PrepareSettings:
    """The knobs of :func:`prepare` that shape the shards (recorded in the manifest).

    Attributes:
        test_fraction: expected fraction of documents in the test split.
        min_test_tokens: the test split gets at least this many tokens if the
            source allows (at most half of its tokens).
        seed: seeds the shuffled train order (not the split).
        max_bytes_per_source: read at most about this many UTF-8 bytes of each
            source (``None``: all of it).
        tokenizer_max_bytes: BPE trains on at most this many bytes of the
            first source's train documents.
        batch_bytes: text encoded per batch.
        memory_bytes: tokens held in memory by the shuffle (its buckets are
            read back one at a time, each at most this large).
    """

    test_fraction: float = 0.02
    min_test_tokens: int = 16384
    seed: int = 0
    max_bytes_per_source: int | None = None
    tokenizer_max_bytes: int = 50_000_000
    batch_bytes: int = 4_000_000
    memory_bytes: int = 64 << 20

    def check(self) -> None:
        if not isinstance(self.test_fraction, int | float) or not 0 < self.test_fraction < 0.5:
            raise SpecError("test_fraction", self.test_fraction, "a number in (0, 0.5)")
        for name in ("min_test_tokens", "tokenizer_max_bytes", "batch_bytes", "memory_bytes", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or (v < 0 and name != "seed"):
                raise SpecError(name, v, "a non-negative integer" if name != "seed" else "an integer")
        m = self.max_bytes_per_source
        if m is not None and (isinstance(m, bool) or not isinstance(m, int | float) or m <= 0):
            raise SpecError("max_bytes_per_source", m, "a positive number of bytes, or None")


def split_hash(data: bytes) -> int:
    """64-bit hash of a document's text that decides its split (independent of the seed)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=SPLIT_PERSON).digest(), "big")


def order_hash(data: bytes, seed: int) -> int:
    """64-bit seeded hash of a document's text: the train order is ascending in it."""
    key = f"lmscale-order-{seed}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=key).digest(), "big")


def _batches(docs: Iterator[str], batch_bytes: int) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for doc in docs:
        batch.append(doc)
        size += len(doc)
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``items`` in a background thread, ``depth`` items ahead; errors re-raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def run() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((None, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((None, done))
        except BaseException as exc:  # handed to the consumer
            q.put((exc, None))

    thread = threading.Thread(target=run, daemon=True, name="lmscale-read")
    thread.start()
    try:
        while True:
            exc, item = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()


def _bar(progress: bool, desc: str, total: int | None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr,
                disable=not progress, leave=False, dynamic_ncols=True)


def _resolve_tokenizer(tokenizer: str | Tokenizer | Path, vocab_size: int | None, first: Source,
                       s: PrepareSettings, progress: bool, allow_download: bool) -> Tokenizer:
    if isinstance(tokenizer, Tokenizer):
        tok = tokenizer
    elif tokenizer == "byte":
        tok = ByteTokenizer()
    elif tokenizer == "gpt2":
        from lmscale.data.gpt2 import load_gpt2

        tok = load_gpt2(allow_download=allow_download)
    elif tokenizer == "bpe":
        if vocab_size is None:
            raise SpecError("vocab_size", None, "an integer >= 257 for a BPE tokenizer")
        limit = s.tokenizer_max_bytes
        if s.max_bytes_per_source is not None:
            limit = min(limit, int(s.max_bytes_per_source))
        threshold = int(s.test_fraction * 2**64)
        bar = _bar(progress, f"{first.name}: train BPE", min(limit, first.size_hint or limit))

        def train_docs() -> Iterator[str]:
            for doc in first.documents(SourceStats(), limit):
                bar.update(len(doc))
                if split_hash(doc.encode("utf-8")) >= threshold:
                    yield doc

        try:
            tok = train_bpe(train_docs(), vocab_size, progress=False)
        finally:
            bar.close()
        return tok
    elif isinstance(tokenizer, str | Path) and Path(tokenizer).exists():
        tok = load_tokenizer(tokenizer)
    else:
        raise SpecError("tokenizer", tokenizer, "'bpe', 'byte', 'gpt2', a tokenizer JSON file, "
                        "or a prepared directory")
    if vocab_size is not None and vocab_size != tok.vocab_size:
        raise SpecError("vocab_size", vocab_size, f"{tok.vocab_size} (the {tok.kind} tokenizer's "
                        "size) or None")
    return tok


def _prepare_source(source: Source, tok: Tokenizer, dtype: np.dtype, workdir: Path,
                    s: PrepareSettings, threads: int, progress: bool) -> dict[str, Any]:
    stats = SourceStats()
    threshold = int(s.test_fraction * 2**64)
    test = ShardWriter(workdir / f"{source.name}.test.bin", dtype)
    train = ShardWriter(workdir / f"{source.name}.train.bin", dtype)
    spill = Spill(workdir / f".spill-{source.name}", dtype, buffer_bytes=s.memory_bytes // 2)
    # Train documents with the smallest split hashes: candidates to top up the test split.
    candidates: list[tuple[int, int, int]] = []  # (-split hash, order key, tokens), a max-heap
    kept = spilled = 0
    total = min(s.max_bytes_per_source or 2**62, source.size_hint or 2**62)
    bar = _bar(progress, f"{source.name}: encode", None if total >= 2**62 else int(total))
    try:
        docs = source.documents(stats, int(s.max_bytes_per_source) if s.max_bytes_per_source else None)
        for batch in _prefetch(_batches(docs, s.batch_bytes)):
            arrays = tok.encode_arrays(batch, threads)
            batch_bytes = 0
            for text, ids in zip(batch, arrays):
                data = text.encode("utf-8")
                batch_bytes += len(data)
                doc = np.empty(len(ids) + 1, dtype=dtype)
                doc[:-1] = ids
                doc[-1] = tok.eot
                h = split_hash(data)
                if h < threshold:
                    test.write(doc, len(data))
                    continue
                key = order_hash(data, s.seed)
                spill.add(key, doc, len(data))
                spilled += len(doc)
                heapq.heappush(candidates, (-h, key, len(doc)))
                kept += len(doc)
                while len(candidates) > 1 and kept - candidates[0][2] >= s.min_test_tokens:
                    kept -= heapq.heappop(candidates)[2]
            bar.update(batch_bytes)
        bar.close()
        if stats.documents == 0:
            found = f" ({stats.summary()})" if stats.warnings else ""
            raise LmscaleError(f"source {source.spec!r}: no text found{found}")
        total_tokens = test.tokens + spilled
        promote = _promotions(candidates, test.tokens, test.documents, total_tokens,
                              stats.documents, s.min_test_tokens)
        moved = []  # promoted documents, written in split-hash order (independent of the seed)
        for key, doc, nbytes in spill.sorted_documents(s.memory_bytes):
            if key in promote:
                moved.append((promote[key], doc.copy(), nbytes))
            else:
                train.write(doc, nbytes)
        for _, doc, nbytes in sorted(moved, key=lambda m: m[0]):
            test.write(doc, nbytes)
        if train.documents == 0 or test.documents == 0:
            raise LmscaleError(
                f"source {source.spec!r}: {stats.documents} document(s) cannot be split into train "
                "and test; give it more text (several documents, e.g. several files)")
        entry = {"name": source.name, "source": source.spec, "description": source.description,
                 "train": train.commit(), "test": test.commit(), "stats": stats.to_json()}
    except BaseException:
        bar.close()
        train.abort()
        test.abort()
        raise
    for split in ("train", "test"):
        entry[split]["tokenizer_hash"] = tok.hash
    return entry


def _promotions(candidates: list[tuple[int, int, int]], test_tokens: int, test_docs: int,
                total_tokens: int, total_docs: int, min_test_tokens: int) -> dict[int, int]:
    """Train documents that move to the test split, smallest split hash first: order key -> hash."""
    promote: dict[int, int] = {}
    train_docs = total_docs - test_docs
    for neg_hash, key, n in sorted(candidates, reverse=True):  # ascending split hash
        if test_tokens >= min_test_tokens and test_docs > 0:
            break
        if train_docs <= 1 or (test_docs > 0 and test_tokens + n > total_tokens // 2):
            break
        promote[key] = -neg_hash
        test_tokens += n
        test_docs += 1
        train_docs -= 1
    return promote


def _check_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise LmscaleError(f"output {out} exists and is not a directory")
    if not any(out.iterdir()):
        return
    if not (out / MANIFEST).exists():
        raise LmscaleError(f"output {out} exists, is not empty and holds no prepared data: "
                           "choose another directory")
    if not overwrite:
        raise LmscaleError(f"output {out} already holds prepared data: choose another directory "
                           "or replace it (overwrite=True, --force)")


def _clean_stale(out: Path) -> None:
    """Remove ``<out>.partial-<pid>`` directories left by prepares that no longer run."""
    for p in out.parent.glob(f"{out.name}.partial-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue


def _install(work: Path, out: Path, overwrite: bool) -> None:
    """Move the finished directory into place (replacing an old prepared one)."""
    old = None
    if out.exists():
        if any(out.iterdir()):
            if not overwrite:
                raise LmscaleError(f"output {out} was created by another process during this "
                                   "prepare: leaving it as it is")
            old = out.with_name(f"{out.name}.old-{os.getpid()}")
            os.rename(out, old)
        else:
            out.rmdir()
    os.rename(work, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prepare(sources: Sequence[str | Source], out: str | Path, vocab_size: int | None = None,
            tokenizer: str | Tokenizer | Path = "bpe", max_bytes_per_source: int | float | None = None,
            test_fraction: float = 0.02, seed: int = 0, progress: bool = True, *,
            min_test_tokens: int = 16384, tokenizer_max_bytes: int = 50_000_000,
            threads: int | None = None, overwrite: bool = False, allow_download: bool = False,
            memory_bytes: int = 64 << 20) -> PreparedData:
    """Tokenize text sources into train/test shards with one tokenizer; return the opened data.

    Args:
        sources: source strings (see :mod:`lmscale.data.sources`) or ``Source``
            objects; the first is the training distribution (and trains the BPE).
        out: output directory (must not exist, be empty, or — with
            ``overwrite`` — hold earlier prepared data).
        vocab_size: ids of the tokenizer; required for ``bpe``; for ``byte``
            (256) and ``gpt2`` (50,257) it may be left ``None``.
        tokenizer: ``"bpe"`` (trained on the first source), ``"byte"``,
            ``"gpt2"`` (local files, :mod:`lmscale.data.gpt2`), a tokenizer
            JSON file or prepared directory (to share its tokenizer), or a
            ``Tokenizer``.
        max_bytes_per_source: read at most about this many bytes of each source.
        test_fraction: expected fraction of documents held out for test.
        seed: seeds the shuffled train order.
        progress: tqdm bars on stderr.
        min_test_tokens, tokenizer_max_bytes, memory_bytes: see :class:`PrepareSettings`.
        threads: encoding threads (default: every core this process may use).
        overwrite: replace ``out`` if it already holds prepared data.
        allow_download: let ``gpt2`` download its files if none are found.
    """
    settings = PrepareSettings(test_fraction=test_fraction, min_test_tokens=min_test_tokens, seed=seed,
                               max_bytes_per_source=max_bytes_per_source,
                               tokenizer_max_bytes=tokenizer_max_bytes, memory_bytes=memory_bytes)
    settings.check()
    if tokenizer == "bpe" and (isinstance(vocab_size, bool) or not isinstance(vocab_size, int)
                               or vocab_size < 257):
        raise SpecError("vocab_size", vocab_size, "an integer >= 257 for a BPE tokenizer "
                        "(256 bytes + <|endoftext|>)")
    if isinstance(sources, str | Source) or not sources:
        raise SpecError("sources", sources, "a non-empty list of sources")
    resolved = [s if isinstance(s, Source) else get_source(s) for s in sources]
    check_names(resolved)
    out = Path(out).expanduser().absolute()
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    work = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        tok = _resolve_tokenizer(tokenizer, vocab_size, resolved[0], settings, progress, allow_download)
        tok.save(work / TOKENIZER)
        if isinstance(vocab_size, int) and tok.vocab_size < vocab_size:
            warnings.warn(f"BPE on {resolved[0].name!r} found only {tok.vocab_size} tokens (asked "
                          f"for {vocab_size}): the text has too few distinct pairs", DataWarning,
                          stacklevel=2)
        dtype = token_dtype(tok.vocab_size)
        entries = []
        for src in resolved:
            entries.append(_prepare_source(src, tok, dtype, work, settings, threads or default_threads(),
                                           progress))
            if entries[-1]["stats"]["warnings"]:
                summary = ", ".join(f"{n} {w}" for w, n in entries[-1]["stats"]["warnings"].items())
                warnings.warn(f"source {src.name!r}: {summary}", DataWarning, stacklevel=2)
        from lmscale import __version__

        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "lmscale_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tokenizer": {"kind": tok.kind, "hash": tok.hash, "vocab_size": tok.vocab_size,
                          "eot": tok.eot, "file": TOKENIZER},
            "dtype": dtype.name, "settings": asdict(settings),
            "train_distribution": resolved[0].name, "distributions": entries,
        }
        write_text_atomic(work / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        _install(work, out, overwrite)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return PreparedData.open(out)
