"""Token shards on disk: an appending writer, and an external sort of documents by key.

A shard is a flat binary file of token ids (``uint16`` when the vocabulary
has at most 65,536 ids, else ``uint32``), read back with ``numpy.memmap``.
:class:`ShardWriter` writes to ``<name>.partial`` and renames on
:meth:`~ShardWriter.commit`, so a file under its final name is complete.

:class:`Spill` puts documents in 256 bucket files by the top byte of a 64-bit
key and reads them back in ascending key order (ties in the order added),
one bucket at a time; a bucket larger than the memory budget is split again
by the next byte. Memory stays bounded whatever the corpus size, and the
order depends only on the keys, never on the budget.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

INDEX_DTYPE = np.dtype([("key", "<u8"), ("tokens", "<u8"), ("bytes", "<u8")])


def token_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` for vocabularies of at most 65,536 ids, else ``uint32``."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


class ShardWriter:
    """Appends token arrays to ``<path>.partial``; :meth:`commit` renames it to ``path``.

    Keeps counts (documents, tokens, UTF-8 bytes) and the SHA-256 of the file.
    """

    def __init__(self, path: Path, dtype: np.dtype, buffer_bytes: int = 8 << 20):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self._file = open(self.partial, "wb")
        self._sha = hashlib.sha256()
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._limit = buffer_bytes
        self.documents = 0
        self.tokens = 0
        self.bytes = 0

    def write(self, tokens: np.ndarray, nbytes: int) -> None:
        """Append one document's tokens (separator included) of ``nbytes`` UTF-8 bytes."""
        tokens = np.asarray(tokens).astype(self.dtype, copy=False)
        self._buffer.append(tokens)
        self._buffered += tokens.nbytes
        self.documents += 1
        self.tokens += len(tokens)
        self.bytes += nbytes
        if self._buffered >= self._limit:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            data = np.concatenate(self._buffer).tobytes()
            self._sha.update(data)
            self._file.write(data)
            self._buffer, self._buffered = [], 0

    def commit(self) -> dict:
        """Finish the file, rename it to its final name, and return its manifest entry."""
        self._flush()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial, self.path)
        return {"file": self.path.name, "documents": self.documents, "tokens": self.tokens,
                "bytes": self.bytes, "sha256": self._sha.hexdigest()}

    def abort(self) -> None:
        """Close and delete the partial file."""
        if not self._file.closed:
            self._file.close()
        self.partial.unlink(missing_ok=True)


class Spill:
    """Documents kept on disk in key buckets, read back sorted by key.

    Args:
        directory: where the bucket files go (created; removed when read back).
        dtype: token dtype.
        buffer_bytes: tokens held in memory before the buckets are appended to.
        level: which byte of the key picks the bucket (0 = most significant).
    """

    def __init__(self, directory: Path, dtype: np.dtype, buffer_bytes: int = 32 << 20, level: int = 0):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dtype = np.dtype(dtype)
        self.level = level
        self._shift = 56 - 8 * level
        self._limit = buffer_bytes
        self._tokens: dict[int, list[np.ndarray]] = {}
        self._index: dict[int, list[tuple[int, int, int]]] = {}
        self._buffered = 0

    def add(self, key: int, tokens: np.ndarray, nbytes: int) -> None:
        """Keep one document (its tokens and UTF-8 size) under a 64-bit key."""
        b = (key >> self._shift) & 0xFF
        tokens = np.asarray(tokens).astype(self.dtype, copy=False)
        self._tokens.setdefault(b, []).append(tokens)
        self._index.setdefault(b, []).append((key, len(tokens), nbytes))
        self._buffered += tokens.nbytes
        if self._buffered >= self._limit:
            self._flush()

    def _paths(self, b: int) -> tuple[Path, Path]:
        return self.dir / f"{b:03d}.tok", self.dir / f"{b:03d}.idx"

    def _flush(self) -> None:
        for b, arrays in self._tokens.items():
            tok_path, idx_path = self._paths(b)
            with open(tok_path, "ab") as f:
                np.concatenate(arrays).tofile(f)
            with open(idx_path, "ab") as f:
                np.array(self._index[b], dtype=INDEX_DTYPE).tofile(f)
        self._tokens, self._index, self._buffered = {}, {}, 0

    def sorted_documents(self, max_bucket_bytes: int = 64 << 20) -> Iterator[tuple[int, np.ndarray, int]]:
        """``(key, tokens, nbytes)`` of every document in ascending key order; deletes the files."""
        self._flush()
        for b in range(256):
            tok_path, idx_path = self._paths(b)
            if not idx_path.exists():
                continue
            index = np.fromfile(idx_path, dtype=INDEX_DTYPE)
            if tok_path.stat().st_size > max_bucket_bytes and self.level < 7:
                yield from self._split(b, index, max_bucket_bytes)
            else:
                data = np.fromfile(tok_path, dtype=self.dtype)
                starts = np.concatenate([[0], np.cumsum(index["tokens"])[:-1]]).astype(np.int64)
                for i in np.argsort(index["key"], kind="stable"):
                    n = int(index["tokens"][i])
                    yield int(index["key"][i]), data[starts[i]:starts[i] + n], int(index["bytes"][i])
                del data
            tok_path.unlink()
            idx_path.unlink()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _split(self, b: int, index: np.ndarray, max_bucket_bytes: int
               ) -> Iterator[tuple[int, np.ndarray, int]]:
        tok_path, _ = self._paths(b)
        sub = Spill(self.dir / f"{b:03d}.sub", self.dtype, self._limit, self.level + 1)
        data = np.memmap(tok_path, dtype=self.dtype, mode="r")
        start = 0
        for key, n, nbytes in index.tolist():
            sub.add(key, np.array(data[start:start + n]), nbytes)
            start += n
        del data
        yield from sub.sorted_documents(max_bucket_bytes)
