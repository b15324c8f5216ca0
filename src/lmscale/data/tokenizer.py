"""Tokenizers: byte-level BPE (trained here or GPT-2's) and a plain byte tokenizer.

Every tokenizer has ``encode(str) -> list[int]``, ``decode(ids) -> str``,
``vocab_size``, ``eot`` (the id written after each document in the shards)
and ``hash``: the SHA-256 of its canonical JSON, which the shard manifest
records so that shards are never read with another tokenizer.

- :class:`ByteTokenizer`: the 256 byte values, no dependency; documents are
  separated by byte 0 (NUL, which sources remove from text).
- :class:`BPETokenizer`: byte-level BPE. :func:`train_bpe` trains it with
  Hugging Face ``tokenizers``; encoding uses ``tiktoken`` built from the same
  ranks (identical ids, several times faster, parallel over documents).
  ``<|endoftext|>`` is the document separator. The pre-tokenizer pattern
  :data:`PATTERN` splits like GPT-2's but without its look-ahead on white
  space (which costs tiktoken about 2.5x in speed): a run of spaces is one
  piece, and a word keeps a single leading space.

Tokenizer files are JSON (:meth:`BPETokenizer.save`, :func:`load_tokenizer`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lmscale.errors import LmscaleError, SpecError
from lmscale.files import write_text_atomic

FORMAT = "lmscale-tokenizer"
FORMAT_VERSION = 1
EOT_TEXT = "<|endoftext|>"
#: Pre-tokenizer of trained BPE tokenizers (GPT-2's, without the ``\s+(?!\S)`` look-ahead).
PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+"""
#: GPT-2's pre-tokenizer (Radford et al. 2019), used with its 50,257-token vocabulary.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def default_threads() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def content_hash(content: dict[str, Any]) -> str:
    """``sha256:<hex>`` of a tokenizer's canonical JSON (the ``hash`` key left out)."""
    body = {k: v for k, v in content.items() if k != "hash"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte (the byte-level alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


BYTE_TO_UNICODE = _byte_to_unicode()
UNICODE_TO_BYTE = {c: b for b, c in BYTE_TO_UNICODE.items()}


def unicode_to_bytes(token: str) -> bytes:
    """Bytes of a token written in the byte-level alphabet (as in GPT-2 and HF files)."""
    try:
        return bytes(UNICODE_TO_BYTE[c] for c in token)
    except KeyError as exc:
        raise LmscaleError(f"token {token!r} is not in the byte-level alphabet") from exc


def bytes_to_unicode(token: bytes) -> str:
    return "".join(BYTE_TO_UNICODE[b] for b in token)


class Tokenizer:
    """What every tokenizer offers (see the module docstring)."""

    kind: str
    vocab_size: int
    eot: int

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @cached_property
    def hash(self) -> str:
        """Content hash (``sha256:...``) of the canonical JSON."""
        return content_hash(self.to_json())

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        raise NotImplementedError

    def encode_arrays(self, texts: Sequence[str], threads: int | None = None) -> list[np.ndarray]:
        """Token ids of each text, as unsigned integer arrays (no separator added)."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write the JSON file (to a temporary name, then renamed)."""
        path = Path(path)
        content = self.to_json()
        content["hash"] = self.hash
        write_text_atomic(path, json.dumps(content, separators=(",", ":")) + "\n")
        return path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size}, hash={self.hash[:19]})"


class ByteTokenizer(Tokenizer):
    """The 256 byte values of UTF-8 text; byte 0 (NUL) separates documents."""

    kind = "byte"
    vocab_size = 256
    eot = 0

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": FORMAT_VERSION, "kind": "byte",
                "vocab_size": 256, "eot": 0}

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return bytes(np.asarray(ids, dtype=np.int64).astype(np.uint8)).decode("utf-8", errors="replace")

    def encode_arrays(self, texts: Sequence[str], threads: int | None = None) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]


class BPETokenizer(Tokenizer):
    """Byte-level BPE; encoding by tiktoken with the same ranks.

    Args:
        kind: ``"bpe"`` (trained by lmscale) or ``"gpt2"``.
        tokens: the bytes of each token id; ``None`` at ``eot``.
        eot: id of ``<|endoftext|>``.
        pattern: pre-tokenizer regular expression.
        merges: the merges as pairs of ids, in training order (needed only
            to rebuild a Hugging Face tokenizer, :meth:`to_hf`).
    """

    def __init__(self, kind: str, tokens: list[bytes | None], eot: int, pattern: str,
                 merges: list[tuple[int, int]] | None = None):
        if not 0 <= eot < len(tokens) or tokens[eot] is not None:
            raise LmscaleError(f"tokenizer: end-of-text id {eot} must be a special slot")
        self.kind = kind
        self.tokens = tokens
        self.eot = eot
        self.pattern = pattern
        self.merges = merges
        self.vocab_size = len(tokens)

    def to_json(self) -> dict[str, Any]:
        content: dict[str, Any] = {
            "format": FORMAT, "version": FORMAT_VERSION, "kind": self.kind,
            "vocab_size": self.vocab_size, "eot": self.eot, "special": EOT_TEXT,
            "pattern": self.pattern,
            "tokens": [None if t is None else base64.b64encode(t).decode() for t in self.tokens],
        }
        if self.merges is not None:
            content["merges"] = [list(m) for m in self.merges]
        return content

    @classmethod
    def from_json(cls, content: dict[str, Any], where: str) -> BPETokenizer:
        try:
            tokens = [None if t is None else base64.b64decode(t, validate=True) for t in content["tokens"]]
            merges = content.get("merges")
            return cls(content["kind"], tokens, int(content["eot"]), str(content["pattern"]),
                       [tuple(m) for m in merges] if merges is not None else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise LmscaleError(f"{where}: not a valid BPE tokenizer file ({exc})") from None

    @cached_property
    def encoding(self) -> Any:
        """The ``tiktoken.Encoding`` (built on first use)."""
        import tiktoken

        ranks = {t: i for i, t in enumerate(self.tokens) if t is not None}
        if len(ranks) != self.vocab_size - 1:
            raise LmscaleError(f"tokenizer {self.hash[:19]}: duplicate token byte strings")
        return tiktoken.Encoding(f"lmscale-{self.hash[7:19]}", pat_str=self.pattern,
                                 mergeable_ranks=ranks, special_tokens={EOT_TEXT: self.eot})

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; the string ``<|endoftext|>`` in text is ordinary text."""
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        return self.encoding.decode(list(ids), errors="replace")

    def encode_arrays(self, texts: Sequence[str], threads: int | None = None) -> list[np.ndarray]:
        """Ids of each text as uint32 arrays, encoded on ``threads`` cores (tiktoken frees the GIL)."""
        enc = self.encoding

        def work(chunk: Sequence[str]) -> list[np.ndarray]:
            return [enc.encode_to_numpy(t, disallowed_special=()) for t in chunk]

        threads = threads or default_threads()
        if threads == 1 or len(texts) < 2:
            return work(texts)
        # Chunks of about equal size in bytes, a few per thread, in order.
        sizes = np.cumsum([len(t) for t in texts])
        bounds = np.searchsorted(sizes, np.linspace(0, sizes[-1], 4 * threads + 1)[1:-1])
        edges = [0, *sorted(set(int(b) + 1 for b in bounds)), len(texts)]
        chunks = [texts[a:b] for a, b in zip(edges, edges[1:]) if b > a]
        with ThreadPoolExecutor(threads) as pool:
            return [arr for part in pool.map(work, chunks) for arr in part]

    def to_hf(self) -> Any:
        """The same tokenizer as a Hugging Face ``tokenizers.Tokenizer`` (needs merges)."""
        from tokenizers import AddedToken, decoders, models
        from tokenizers import Tokenizer as HFTokenizer

        if self.merges is None:
            raise LmscaleError(f"{self.kind} tokenizer has no merge list: cannot build a HF tokenizer")
        vocab = {EOT_TEXT if t is None else bytes_to_unicode(t): i for i, t in enumerate(self.tokens)}
        names = {i: s for s, i in vocab.items()}
        merges = [(names[a], names[b]) for a, b in self.merges]
        hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
        hf.pre_tokenizer = _hf_pre_tokenizer(self.pattern)
        hf.decoder = decoders.ByteLevel()
        hf.add_special_tokens([AddedToken(EOT_TEXT, special=True)])
        return hf


def _hf_pre_tokenizer(pattern: str) -> Any:
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def train_bpe(texts: Iterable[str], vocab_size: int, *, progress: bool = False) -> BPETokenizer:
    """Train byte-level BPE with ``vocab_size`` ids (256 bytes, ``<|endoftext|>``, merges).

    Uses Hugging Face ``tokenizers`` (Rust, parallel); memory grows with the
    number of distinct pre-tokenized words, not with the amount of text.
    The result may have fewer ids than asked if the text runs out of pairs.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 257:
        raise SpecError("vocab_size", vocab_size, "an integer >= 257 for a BPE tokenizer "
                        "(256 bytes + <|endoftext|>); use tokenizer='byte' for 256")
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = _hf_pre_tokenizer(PATTERN)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOT_TEXT], show_progress=progress,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    hf.train_from_iterator(texts, trainer)
    model = json.loads(hf.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    tokens: list[bytes | None] = [None] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = None if text == EOT_TEXT else unicode_to_bytes(text)
    merges = []
    for m in model["merges"]:
        a, b = m.split(" ") if isinstance(m, str) else m
        merges.append((vocab[a], vocab[b]))
    return BPETokenizer("bpe", tokens, vocab[EOT_TEXT], PATTERN, merges)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer JSON file (or the ``tokenizer.json`` of a prepared directory).

    The stored hash is checked against the content: an edited or damaged file
    is refused.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    try:
        content = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise LmscaleError(f"tokenizer file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise LmscaleError(f"{path}: not a readable JSON tokenizer file ({exc})") from None
    return tokenizer_from_json(content, str(path))


def tokenizer_from_json(content: Any, where: str) -> Tokenizer:
    """Build a tokenizer from its JSON content, checking format and hash."""
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise LmscaleError(f"{where}: not an lmscale tokenizer file (format {FORMAT!r} expected)")
    if content.get("version") != FORMAT_VERSION:
        raise LmscaleError(f"{where}: tokenizer format version {content.get('version')!r}, "
                           f"this lmscale reads {FORMAT_VERSION}")
    stored = content.get("hash")
    actual = content_hash(content)
    if stored is not None and stored != actual:
        raise LmscaleError(f"{where}: content hash {actual[:19]} differs from the stored "
                           f"{str(stored)[:19]}: the file was changed or damaged")
    kind = content.get("kind")
    if kind == "byte":
        return ByteTokenizer()
    if kind in ("bpe", "gpt2"):
        return BPETokenizer.from_json(content, where)
    raise LmscaleError(f"{where}: unknown tokenizer kind {kind!r} (expected byte, bpe or gpt2)")
