"""Where a study's token shards come from: a prepared directory, or a ``[data]``
table that lmscale prepares once and caches by the hash of its specification.

The identity of the data in a run id does not depend on where the files lie:
a directory is named by its path relative to the study file, a ``[data]``
table by the hash of its content (``prepared:<key>``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmscale.errors import LmscaleError, SpecError

#: How runs name data prepared from a ``[study] data`` table: ``prepared:<key>``.
PREPARED = "prepared:"

def prepared_cache() -> Path:
    """The folder of lmscale's cache that holds data prepared from study tables, one folder per key."""
    from lmscale.training.hardware import cache_dir

    return cache_dir() / "data"


#: Keys of a ``[study.data]`` table and their meaning.
DATA_KEYS = {
    "sources": "list of source names for lmscale.data.prepare (the first is the training distribution)",
    "optional_sources": "sources added after 'sources' when this machine has them (e.g. Debian texts); "
                        "the ones missing are skipped, and the data's identity says which were used",
    "vocab_size": "tokenizer vocabulary size (also the default n_vocab of the models)",
    "tokenizer": "bpe, byte or gpt2 (default bpe)",
    "max_mb_per_source": "cap on the text read from each source, in MB",
    "test_fraction": "fraction of documents held out for test (default: lmscale.data's)",
    "seed": "seed of the document order (default 0)",
    "cache_dir": "where prepared data is kept (relative to the study file); default $LMSCALE_CACHE/data",
}


@dataclass(frozen=True)
class DataSpec:
    """The data of a study.

    Attributes:
        path: a prepared directory (absolute), or ``None`` for a ``[data]`` table.
        relpath: that directory relative to the study file (its identity).
        sources, vocab_size, tokenizer, max_mb_per_source, test_fraction,
            seed: arguments of :func:`lmscale.data.prepare`.
        cache_dir: directory that holds prepared data, one folder per key.
    """

    path: Path | None = None
    relpath: str | None = None
    sources: tuple[str, ...] = ()
    vocab_size: int | None = None
    tokenizer: str = "bpe"
    max_mb_per_source: float | None = None
    test_fraction: float | None = None
    seed: int = 0
    cache_dir: Path | None = None

    @classmethod
    def parse(cls, value: Any, study_dir: Path, where: str) -> DataSpec:
        """From the ``data`` value of ``[study]``: a path string, ``prepared:KEY`` (the prepared data
        of that key in lmscale's cache, as a store's runs name data prepared from a table), or a table."""
        if isinstance(value, str):
            if "\x00" in value:
                raise SpecError("study.data", value, "a directory path (without NUL characters)", where)
            if value.startswith(PREPARED):
                key = value[len(PREPARED):]
                if not re.fullmatch(r"[0-9a-f]{16}", key):
                    raise SpecError("study.data", value, "prepared:KEY with the 16 hex digits of a prepared "
                                    "data key (as a store's runs record it)", where)
                return cls(path=prepared_cache() / key, relpath=value)  # the runs' data_dir: the same
            path = (study_dir / value).resolve()
            return cls(path=path, relpath=Path(os.path.relpath(path, study_dir.resolve())).as_posix())
        if not isinstance(value, dict):
            raise SpecError("study.data", value, "a prepared data directory (string) or a table "
                            f"with keys {', '.join(DATA_KEYS)}", where)
        for key in value:
            if key not in DATA_KEYS:
                raise SpecError(f"study.data.{key}", value[key], f"one of the keys {', '.join(DATA_KEYS)}", where)
        sources = value.get("sources")
        if not (isinstance(sources, list) and sources and all(isinstance(s, str) and s for s in sources)):
            raise SpecError("study.data.sources", sources, "a non-empty list of source names", where)
        optional = value.get("optional_sources", [])
        if not (isinstance(optional, list) and all(isinstance(s, str) and s for s in optional)):
            raise SpecError("study.data.optional_sources", optional, "a list of source names", where)
        sources = sources + [s for s in optional if s not in sources and source_available(s)]
        vocab = value.get("vocab_size")
        if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 2:
            raise SpecError("study.data.vocab_size", vocab, "an integer >= 2", where)
        tokenizer = value.get("tokenizer", "bpe")
        if tokenizer not in ("bpe", "byte", "gpt2"):
            raise SpecError("study.data.tokenizer", tokenizer, "bpe, byte or gpt2", where)
        for key in ("max_mb_per_source", "test_fraction"):
            v = value.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v <= 0):
                raise SpecError(f"study.data.{key}", v, "a positive number", where)
        seed = value.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SpecError("study.data.seed", seed, "an integer", where)
        cache = value.get("cache_dir")
        if cache is not None and (not isinstance(cache, str) or "\x00" in cache):
            raise SpecError("study.data.cache_dir", cache, "a directory (string, without NUL characters)", where)
        return cls(
            sources=tuple(sources), vocab_size=vocab, tokenizer=tokenizer,
            max_mb_per_source=value.get("max_mb_per_source"), test_fraction=value.get("test_fraction"),
            seed=seed, cache_dir=(study_dir / cache).resolve() if cache else None,
        )

    # -- identity ----------------------------------------------------------
    def key(self) -> str:
        """Hash of what determines the prepared tokens (not where they live)."""
        blob = json.dumps(
            {"sources": list(self.sources), "vocab_size": self.vocab_size, "tokenizer": self.tokenizer,
             "max_mb_per_source": self.max_mb_per_source, "test_fraction": self.test_fraction,
             "seed": self.seed},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def canonical(self) -> str:
        """The ``data_dir`` written into the run ids (location independent)."""
        return self.relpath if self.path is not None else f"{PREPARED}{self.key()}"

    def target(self) -> Path:
        """The directory the shards are (or will be) in."""
        if self.path is not None:
            return self.path
        return (self.cache_dir or prepared_cache()) / self.key()

    # -- facts the plan needs ----------------------------------------------
    def vocab(self, where: str) -> int:
        """Tokenizer vocabulary size (reads a prepared directory's manifest)."""
        if self.path is None:
            return int(self.vocab_size or 0)
        return int(self.open(where).vocab_size)

    def open(self, where: str) -> Any:
        """The prepared data (``PreparedData``); a bad directory names ``study.data``."""
        if self.path is not None and not self.path.is_dir():
            raise SpecError("study.data", self.relpath, f"a prepared data directory ({self.path} does not exist; "
                            "make one with 'lmscale data prepare')", where)
        from lmscale.data import PreparedData

        try:
            return PreparedData.open(self.target())
        except LmscaleError as exc:
            if self.path is None:
                raise
            raise SpecError("study.data", self.relpath, f"a prepared data directory ({exc})", where) from None

    def resolve(self, *, progress: bool = True) -> Path:
        """The shard directory, preparing it first (once, under a file lock) if needed."""
        if self.path is not None:
            self.open(str(self.path))
            return self.path
        from lmscale.data import PreparedData, prepare

        out = self.target()
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.parent / f".{out.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                PreparedData.open(out)
                return out
            except LmscaleError:
                if out.exists():  # lmscale's own cache entry, unreadable: made again
                    shutil.rmtree(out)
            kwargs: dict[str, Any] = {"tokenizer": self.tokenizer, "seed": self.seed, "progress": progress}
            if self.max_mb_per_source is not None:
                kwargs["max_bytes_per_source"] = int(self.max_mb_per_source * 1_000_000)
            if self.test_fraction is not None:
                kwargs["test_fraction"] = self.test_fraction
            prepare(list(self.sources), out, self.vocab_size, **kwargs)
        return out


def check_identity(spec: DataSpec, store: Any, directory: Path) -> None:
    """Refuse shards whose tokenizer differs from the one the store's runs were trained on.

    The first sweep on a store records the tokenizer hash of its data (by the
    data's name in the run ids); later sweeps must find the same one, or
    finished runs would be mixed with, and interrupted ones resumed on,
    different tokens under the same run ids.
    """
    from lmscale.data import PreparedData

    data = PreparedData.open(directory)
    name = spec.canonical()
    known = store.data_identity(name)
    if known is None:
        store.record_data_identity(name, data.tokenizer_hash, data.vocab_size, str(directory))
        return
    if known["tokenizer_hash"] != data.tokenizer_hash:
        raise LmscaleError(
            f"{directory}: the data changed under the study: its shards were written with tokenizer "
            f"{data.tokenizer_hash}, but the runs in {store.path} were trained on {name} with tokenizer "
            f"{known['tokenizer_hash']} (recorded {known['recorded_at']} from {known['directory']}); "
            "prepare the data again as it was, or use a new store")


def source_available(name: str) -> bool:
    """Whether the built-in source ``name`` can be read on this machine now."""
    from lmscale.data.sources import list_sources

    return any(info.name == name and info.available for info in list_sources())
