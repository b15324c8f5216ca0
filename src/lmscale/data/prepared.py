"""Reading prepared token shards: :class:`PreparedData`.

A prepared directory holds ``manifest.json``, ``tokenizer.json`` and, for
each distribution NAME, ``NAME.train.bin`` and ``NAME.test.bin``. Opening it
checks the manifest, that the tokenizer file is the one the shards were
written with (content hash), and that every shard has the size the manifest
says; anything else is refused with an :class:`~lmscale.errors.LmscaleError`.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lmscale.data.tokenizer import Tokenizer, content_hash, tokenizer_from_json
from lmscale.errors import LmscaleError, SpecError

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
FORMAT = "lmscale-prepared-data"
FORMAT_VERSION = 1
SPLITS = ("train", "test")


def _need(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise LmscaleError(f"{where}: missing key {key!r}")
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise LmscaleError(f"{where}: key {key!r} = {value!r} has the wrong type")
    return value


class PreparedData:
    """Token shards of one or more distributions, written with one tokenizer.

    Use :meth:`open`. The first distribution is the training distribution;
    every distribution has a train and a test split. Token arrays are
    read-only memory maps: slicing them copies nothing.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], tokenizer_content: dict[str, Any]):
        self.path = path
        self.manifest = manifest
        self._tokenizer_content = tokenizer_content
        self._maps: dict[tuple[str, str], np.ndarray] = {}
        self._entries = {d["name"]: d for d in manifest["distributions"]}

    # -- opening ------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, tokenizer_hash: str | None = None) -> PreparedData:
        """Open and validate a prepared directory (or its ``manifest.json``).

        Args:
            path: the directory.
            tokenizer_hash: if given, refuse shards written with any other
                tokenizer (e.g. the hash a model checkpoint recorded).
        """
        path = Path(path)
        if path.name == MANIFEST and path.is_file():
            path = path.parent
        mpath = path / MANIFEST
        if not path.is_dir():
            raise LmscaleError(f"no prepared data at {path}: the directory does not exist "
                               "(make it with 'lmscale data prepare')")
        if not mpath.is_file():
            raise LmscaleError(f"no prepared data at {path}: {MANIFEST} is missing (an "
                               "unfinished prepare, or not a prepared directory)")
        try:
            manifest = json.loads(mpath.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise LmscaleError(f"{mpath}: not readable JSON ({exc})") from None
        cls._validate(manifest, str(mpath))
        tpath = path / manifest["tokenizer"]["file"]
        try:
            content = json.loads(tpath.read_text("utf-8"))
        except FileNotFoundError:
            raise LmscaleError(f"{tpath}: tokenizer file missing (the shards need it)") from None
        except (OSError, ValueError) as exc:
            raise LmscaleError(f"{tpath}: not readable JSON ({exc})") from None
        expected = manifest["tokenizer"]["hash"]
        actual = content_hash(content) if isinstance(content, dict) else "?"
        if actual != expected:
            raise LmscaleError(
                f"{tpath}: this tokenizer (hash {actual[:19]}) is not the one the shards in {path} "
                f"were written with ({expected[:19]}): refusing to read them with it")
        data = cls(path, manifest, content)
        if tokenizer_hash is not None:
            data.check_tokenizer(tokenizer_hash)
        for entry in manifest["distributions"]:
            for split in SPLITS:
                data._check_file(entry, split)
        return data

    @staticmethod
    def _validate(m: Any, where: str) -> None:
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise LmscaleError(f"{where}: not an lmscale manifest (format {FORMAT!r} expected)")
        if m.get("format_version") != FORMAT_VERSION:
            raise LmscaleError(f"{where}: format_version {m.get('format_version')!r}; this "
                               f"lmscale reads {FORMAT_VERSION}")
        tok = _need(m, "tokenizer", dict, where)
        for key, kind in (("kind", str), ("hash", str), ("vocab_size", int), ("eot", int), ("file", str)):
            _need(tok, key, kind, f"{where}, tokenizer")
        if _need(m, "dtype", str, where) not in ("uint16", "uint32"):
            raise LmscaleError(f"{where}: dtype {m['dtype']!r} (expected uint16 or uint32)")
        dists = _need(m, "distributions", list, where)
        if not dists:
            raise LmscaleError(f"{where}: no distributions")
        for i, d in enumerate(dists):
            w = f"{where}, distributions[{i}]"
            _need(d, "name", str, w)
            for split in SPLITS:
                s = _need(d, split, dict, w)
                for key, kind in (("file", str), ("tokens", int), ("documents", int), ("bytes", int),
                                  ("tokenizer_hash", str)):
                    _need(s, key, kind, f"{w}.{split}")
                if s["tokenizer_hash"] != tok["hash"]:
                    raise LmscaleError(f"{w}.{split}: written with tokenizer {s['tokenizer_hash'][:19]}, "
                                       f"not the manifest's {tok['hash'][:19]}")

    def _check_file(self, entry: dict, split: str) -> None:
        info = entry[split]
        path = self.path / info["file"]
        expected = info["tokens"] * self.dtype.itemsize
        if not path.is_file():
            raise LmscaleError(f"{path}: shard missing ({entry['name']} {split})")
        size = path.stat().st_size
        if size != expected:
            raise LmscaleError(f"{path}: {size} bytes, the manifest says {info['tokens']} tokens "
                               f"({expected} bytes): the shard is damaged or from another prepare")

    # -- facts --------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of token ids of the tokenizer."""
        return int(self.manifest["tokenizer"]["vocab_size"])

    @property
    def tokenizer_hash(self) -> str:
        """``sha256:...`` of the tokenizer the shards were written with."""
        return str(self.manifest["tokenizer"]["hash"])

    @property
    def eot(self) -> int:
        """Id that ends every document in the shards."""
        return int(self.manifest["tokenizer"]["eot"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.manifest["dtype"])

    @property
    def distributions(self) -> list[str]:
        """Distribution names, the training distribution first."""
        return [d["name"] for d in self.manifest["distributions"]]

    @property
    def train_distribution(self) -> str:
        """Name of the first source (the one models train on)."""
        return self.distributions[0]

    def entry(self, name: str | None = None) -> dict[str, Any]:
        """The manifest entry of a distribution (default: the training one)."""
        name = self.train_distribution if name is None else name
        if name not in self._entries:
            raise LmscaleError(f"{self.path}: no distribution {name!r} (have: "
                               f"{', '.join(self.distributions)})")
        return self._entries[name]

    # -- tokens -------------------------------------------------------------
    def tokens(self, name: str | None = None, split: str = "train") -> np.ndarray:
        """All tokens of one split of a distribution (read-only memory map)."""
        if split not in SPLITS:
            raise SpecError("split", split, "'train' or 'test'")
        entry = self.entry(name)
        key = (entry["name"], split)
        if key not in self._maps:
            n = entry[split]["tokens"]
            path = self.path / entry[split]["file"]
            if n == 0:
                self._maps[key] = np.zeros(0, dtype=self.dtype)
            else:
                self._maps[key] = np.memmap(path, dtype=self.dtype, mode="r", shape=(n,))
        return self._maps[key]

    def train_tokens(self, n: int | None = None, name: str | None = None) -> np.ndarray:
        """The first ``n`` training tokens (all if ``None``): a view, no copy.

        The train split is in one fixed shuffled document order, so the first
        1e5 tokens are contained in the first 1e6 (nested data set sizes).
        """
        data = self.tokens(name, "train")
        if n is None:
            return data
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise SpecError("n", n, "a non-negative integer number of tokens")
        if n > len(data):
            raise LmscaleError(f"{self.path}: asked for {n:,} training tokens of "
                               f"{self.entry(name)['name']!r} but it has only {len(data):,}")
        return data[:n]

    def test_tokens(self, name: str | None = None) -> np.ndarray:
        """The test split of a distribution (default: the training distribution)."""
        return self.tokens(name, "test")

    def num_train_tokens(self, name: str | None = None) -> int:
        return int(self.entry(name)["train"]["tokens"])

    def num_test_tokens(self, name: str | None = None) -> int:
        return int(self.entry(name)["test"]["tokens"])

    def bytes_per_token(self, name: str | None = None, split: str = "test") -> float:
        """UTF-8 bytes of text per token of a split (tokens include one separator per document).

        Converts a loss in nats per token to bits per byte:
        ``bpb = loss / (bytes_per_token * ln 2)``.
        """
        if split not in SPLITS:
            raise SpecError("split", split, "'train' or 'test'")
        info = self.entry(name)[split]
        return info["bytes"] / info["tokens"] if info["tokens"] else float("nan")

    # -- checks -------------------------------------------------------------
    def check_vocab(self, n_vocab: int) -> None:
        """Refuse a model whose vocabulary cannot hold every token id of these shards."""
        if n_vocab < self.vocab_size:
            raise LmscaleError(f"model n_vocab = {n_vocab} is smaller than the tokenizer's "
                               f"{self.vocab_size} ids of {self.path}")

    def check_min_tokens(self, n: int, split: str = "train", name: str | None = None) -> None:
        """Refuse if a split has fewer than ``n`` tokens (e.g. ``n_ctx + 1`` for one sequence)."""
        have = len(self.tokens(name, split))
        if have < n:
            raise LmscaleError(
                f"{self.path}: the {split} split of {self.entry(name)['name']!r} has {have:,} tokens, "
                f"fewer than the {n:,} needed (one context window plus one token needs n_ctx + 1): "
                "prepare more text or use a shorter context")

    def check_tokenizer(self, expected: str | Tokenizer) -> None:
        """Refuse if these shards were written with another tokenizer."""
        want = expected.hash if isinstance(expected, Tokenizer) else str(expected)
        if want != self.tokenizer_hash:
            raise LmscaleError(f"{self.path}: shards were written with tokenizer "
                               f"{self.tokenizer_hash[:19]}, not {want[:19]}: refusing to read them")

    def verify(self) -> None:
        """Recompute every shard's SHA-256 against the manifest (reads all files)."""
        for entry in self.manifest["distributions"]:
            for split in SPLITS:
                info = entry[split]
                if "sha256" not in info:
                    continue
                digest = hashlib.sha256()
                with open(self.path / info["file"], "rb") as f:
                    while chunk := f.read(1 << 24):
                        digest.update(chunk)
                if digest.hexdigest() != info["sha256"]:
                    raise LmscaleError(f"{self.path / info['file']}: SHA-256 differs from the "
                                       "manifest: the shard is damaged")

    # -- the tokenizer and a summary ---------------------------------------
    @cached_property
    def _tokenizer(self) -> Tokenizer:
        return tokenizer_from_json(self._tokenizer_content, str(self.path / TOKENIZER))

    def tokenizer(self) -> Tokenizer:
        """The tokenizer (``encode``, ``decode``, ``vocab_size``, ``hash``)."""
        return self._tokenizer

    def info(self) -> dict[str, Any]:
        """A summary: tokenizer, and tokens / documents / bytes per token of each split."""
        rows = []
        for entry in self.manifest["distributions"]:
            row = {"name": entry["name"], "source": entry.get("source", "")}
            for split in SPLITS:
                s = entry[split]
                row[split] = {"tokens": s["tokens"], "documents": s["documents"], "bytes": s["bytes"],
                              "bytes_per_token": self.bytes_per_token(entry["name"], split)}
            row["warnings"] = entry.get("stats", {}).get("warnings", {})
            rows.append(row)
        return {"path": str(self.path), "tokenizer": dict(self.manifest["tokenizer"]),
                "dtype": self.manifest["dtype"], "train_distribution": self.train_distribution,
                "settings": self.manifest.get("settings", {}),
                "lmscale_version": self.manifest.get("lmscale_version"), "distributions": rows}

    def __repr__(self) -> str:
        return (f"PreparedData({str(self.path)!r}, vocab_size={self.vocab_size}, "
                f"distributions={self.distributions})")
