"""Text sources: named distributions of documents.

A source is given by a string:

- a built-in name (:data:`BUILTIN`): ``python-stdlib``, ``python-docs``,
  ``bible-kjv``, ``bible-web``, ``jargon``, ``gcide``, ``vim-help``;
- ``dir:PATH``: every file under a directory (hidden ones skipped);
- ``glob:PATTERN``: the files a glob matches (``**`` recurses);
- ``jsonl:PATH[:FIELD]``: JSON Lines (optionally .gz), one document per
  line from string field FIELD (default ``text``);
- ``hf:NAME[:CONFIG[:SPLIT[:FIELD]]]``: a Hugging Face dataset, streamed
  (optional extra ``lmscale[hf]``; NAME may be a local folder of data files;
  defaults: no config, split ``train``, field ``text``);
- ``sword:MODULE``: an installed SWORD zText Bible module.

``NAME=SPEC`` gives the distribution another name (``books=dir:~/books``).
Text files are read as UTF-8: binary files are skipped and invalid bytes
replaced, both counted (:class:`~lmscale.data.textio.SourceStats`).
"""

from __future__ import annotations

import glob as globlib
import gzip
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lmscale.data import corpora, sword
from lmscale.data.textio import (
    EMPTY_SKIPPED,
    NUL_REMOVED,
    SourceStats,
    decode,
    hashed_order,
    read_text_file,
)
from lmscale.errors import LmscaleError

Reader = Callable[[SourceStats], Iterator[str]]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Builtin:
    """A built-in distribution.

    Attributes:
        name: the source name.
        kind: what the text is (code, technical prose, scripture, ...).
        description: one line about the text.
        package: the Debian package that provides it (``None``: ships with Python).
        locate: returns where the text is on this machine, or ``None``.
        read: the document reader.
    """

    name: str
    kind: str
    description: str
    package: str | None
    locate: Callable[[], Path | None]
    read: Reader


BUILTIN: dict[str, Builtin] = {b.name: b for b in (
    Builtin("python-stdlib", "code", "source files of this Python's standard library, one per file",
            None, corpora.stdlib_root, corpora.python_stdlib),
    Builtin("python-docs", "technical prose", "docstrings of the standard library (read with ast) "
            "and pydoc's topic help", None, corpora.stdlib_root, corpora.python_docs),
    Builtin("bible-kjv", "scripture (1611 English)", "King James Bible, one document per chapter",
            "bible-kjv-text", corpora.locate_kjv, corpora.bible_kjv),
    Builtin("bible-web", "scripture (modern English)", "World English Bible with deuterocanon "
            "(SWORD zText), one document per chapter", "sword-text-web", corpora.locate_web,
            corpora.bible_web),
    Builtin("jargon", "informal technical prose", "the Jargon File, one document per entry",
            "jargon-text", corpora.locate_jargon, corpora.jargon),
    Builtin("gcide", "dictionary", "GNU Collaborative International Dictionary of English, "
            "one document per entry", "dict-gcide", corpora.locate_gcide, corpora.gcide),
    Builtin("vim-help", "technical documentation", "Vim's help files, one document per section",
            "vim-runtime", corpora.locate_vim, corpora.vim_help),
)}

#: The forms a source string may take besides a built-in name: (form, meaning).
SPEC_FORMS = (
    ("dir:PATH", "every file under a directory (binary files skipped, counted)"),
    ("glob:PATTERN", "the files a glob pattern matches (** recurses)"),
    ("jsonl:PATH[:FIELD]", "JSON Lines (.jsonl or .jsonl.gz), text from FIELD (default 'text')"),
    ("hf:NAME[:CONFIG[:SPLIT[:FIELD]]]", "Hugging Face dataset, streamed (pip install 'lmscale[hf]')"),
    ("sword:MODULE", "an installed SWORD zText Bible module"),
    ("NAME=SPEC", "any of the above under another distribution name"),
)


@dataclass(frozen=True)
class Source:
    """A named text distribution.

    Attributes:
        name: distribution name (used in file names and the manifest).
        spec: the string it was made from.
        description: what the text is.
        reader: yields raw documents, counting problems in a ``SourceStats``.
        size_hint: approximate bytes of text, if cheap to know (progress bars).
    """

    name: str
    spec: str
    description: str
    reader: Reader
    size_hint: int | None = None

    def documents(self, stats: SourceStats | None = None, max_bytes: int | None = None
                  ) -> Iterator[str]:
        """Non-empty documents, in the source's fixed order.

        Stops once ``max_bytes`` UTF-8 bytes were yielded (the last document may
        cross the limit) and sets ``stats.truncated``. NUL characters are
        removed (they separate documents for the byte tokenizer) and counted.
        """
        stats = stats if stats is not None else SourceStats()
        for doc in self.reader(stats):
            if max_bytes is not None and stats.bytes >= max_bytes:
                stats.truncated = True
                return
            if "\0" in doc:
                doc = doc.replace("\0", "")
                stats.warn(NUL_REMOVED)
            if not doc.strip():
                stats.warn(EMPTY_SKIPPED)
                continue
            stats.documents += 1
            stats.bytes += len(doc.encode("utf-8"))
            yield doc


def _sanitize(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return name or "source"


def _files_source(spec: str, name: str, files: list[Path], root: Path, what: str) -> Source:
    if not files:
        raise LmscaleError(f"source {spec!r}: {what} has no files")
    ordered = hashed_order(files, root)
    size = 0
    for p in ordered:
        try:
            size += p.stat().st_size
        except OSError:
            pass

    def read(stats: SourceStats) -> Iterator[str]:
        for path in ordered:
            yield from read_text_file(path, stats)

    return Source(name, spec, f"{len(files)} files from {what}", read, size)


def _dir_source(spec: str, path_str: str) -> Source:
    root = Path(path_str).expanduser()
    if not root.exists():
        raise LmscaleError(f"source {spec!r}: directory {root} does not exist")
    if not root.is_dir():
        raise LmscaleError(f"source {spec!r}: {root} is not a directory")
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
    files = [f for f in files if f.is_file()]
    return _files_source(spec, _sanitize(root.resolve().name), files, root, f"directory {root}")


def _glob_source(spec: str, pattern: str) -> Source:
    pattern = os.path.expanduser(pattern)
    files = [Path(p) for p in globlib.glob(pattern, recursive=True) if Path(p).is_file()]
    if not files:
        raise LmscaleError(f"source {spec!r}: the pattern {pattern!r} matches no files")
    fixed = Path(pattern.split("*")[0].split("?")[0].split("[")[0])
    root = fixed if fixed.is_dir() else fixed.parent
    stem = root.resolve().name or Path(pattern).stem
    return _files_source(spec, _sanitize(stem), files, root, f"pattern {pattern}")


def _row_text(row: object, field: str, where: str, stats: SourceStats) -> str | None:
    """The text of a record's ``field`` (``where`` names the record in messages); ``None``, counted, if null."""
    if not isinstance(row, dict) or field not in row:
        keys = ", ".join(map(str, row)) if isinstance(row, dict) else type(row).__name__
        raise LmscaleError(f"{where}: no field {field!r} (found: {keys})")
    text = row[field]
    if text is None:
        stats.warn(f"rows with null {field!r} skipped")
        return None
    if not isinstance(text, str):
        raise LmscaleError(f"{where}: field {field!r} is {type(text).__name__}, expected a string")
    return text


def _jsonl_source(spec: str, rest: str) -> Source:
    path_str, field = rest, "text"
    if not Path(rest).expanduser().is_file() and ":" in rest:
        path_str, field = rest.rsplit(":", 1)
    path = Path(path_str).expanduser()
    if not path.is_file():
        raise LmscaleError(f"source {spec!r}: file {path} does not exist")

    def read(stats: SourceStats) -> Iterator[str]:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            stats.files += 1
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(decode(raw, stats))
                except json.JSONDecodeError as exc:
                    raise LmscaleError(f"{path}, line {lineno}: not valid JSON ({exc.msg})") from None
                text = _row_text(row, field, f"{path}, line {lineno}", stats)
                if text is not None:
                    yield text

    name = _sanitize(path.name.removesuffix(".gz").removesuffix(".jsonl").removesuffix(".json"))
    return Source(name, spec, f"JSON Lines {path}, field {field!r}", read, path.stat().st_size)


def _hf_source(spec: str, rest: str) -> Source:
    parts = rest.split(":")
    if len(parts) > 4 or not parts[0]:
        raise LmscaleError(f"source {spec!r}: expected hf:NAME[:CONFIG[:SPLIT[:FIELD]]]")
    parts += [""] * (4 - len(parts))
    dataset, config, split, field = parts[0], parts[1] or None, parts[2] or "train", parts[3] or "text"
    if not _has_datasets():  # checked without importing it (slow)
        raise LmscaleError(f"source {spec!r} needs the optional package 'datasets': "
                           "pip install 'lmscale[hf]'")

    def read(stats: SourceStats) -> Iterator[str]:
        import datasets

        try:
            ds = datasets.load_dataset(dataset, config, split=split, streaming=True)
        except Exception as exc:  # datasets raises many kinds for a bad name or split
            raise LmscaleError(f"source {spec!r}: cannot open dataset: {exc}") from None
        stats.files += 1
        for i, row in enumerate(ds):
            text = _row_text(row, field, f"source {spec!r}, row {i}", stats)
            if text is not None:
                yield text

    name = _sanitize(Path(dataset).name + (f"-{config}" if config else ""))
    return Source(name, spec, f"Hugging Face dataset {dataset} ({config or 'default'}, {split}, "
                  f"field {field!r})", read)


def _sword_source(spec: str, module_name: str) -> Source:
    module = sword.find_module(module_name)
    if module is None:
        roots = ", ".join(str(r / "mods.d") for r in sword.sword_roots())
        raise LmscaleError(f"source {spec!r}: no SWORD module {module_name!r} in {roots}")

    def read(stats: SourceStats) -> Iterator[str]:
        stats.files += 1
        yield from sword.chapters(module)

    return Source(_sanitize(f"sword-{module.name.lower()}"), spec,
                  f"SWORD module {module.name}: {module.conf.get('Description', '')}", read)


def install_hint(builtin: Builtin) -> str:
    """How to get a missing built-in source."""
    if builtin.package is None:
        return "ships with Python"
    return f"apt-get install {builtin.package} (or: make system-packages)"


def _builtin_source(spec: str, b: Builtin) -> Source:
    where = b.locate()
    if where is None or not where.exists():
        raise LmscaleError(f"source {b.name!r} is not installed here: {install_hint(b)}")
    size = None
    if where.is_file():
        size = where.stat().st_size
    return Source(b.name, spec, b.description, b.read, size)


def get_source(spec: str) -> Source:
    """The source a string names (see the module docstring); LmscaleError if unusable.

    Checks that files exist now, so a bad spec fails before any work starts.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise LmscaleError(f"source {spec!r}: expected a source name or KIND:VALUE")
    spec = spec.strip()
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)=(.+)$", spec)
    if m and not Path(spec).exists():
        inner = get_source(m.group(2))
        return Source(m.group(1), spec, inner.description, inner.reader, inner.size_hint)
    if spec in BUILTIN:
        return _builtin_source(spec, BUILTIN[spec])
    kind, _, rest = spec.partition(":")
    handlers = {"dir": _dir_source, "glob": _glob_source, "jsonl": _jsonl_source,
                "hf": _hf_source, "sword": _sword_source}
    if kind in handlers and rest:
        return handlers[kind](spec, rest)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _dir_source(spec, spec)
    if path.is_file():
        if path.name.endswith((".jsonl", ".jsonl.gz")):
            return _jsonl_source(spec, spec)
        return _files_source(spec, _sanitize(path.stem), [path], path.parent, f"file {path}")
    names = ", ".join(BUILTIN)
    forms = ", ".join(form for form, _ in SPEC_FORMS)
    raise LmscaleError(f"unknown source {spec!r}: expected one of {names}, an existing path, "
                       f"or {forms}")


def check_names(sources: list[Source]) -> None:
    """Distribution names must be distinct (they name files)."""
    seen: dict[str, str] = {}
    for s in sources:
        if not _NAME.match(s.name):
            raise LmscaleError(f"source {s.spec!r}: distribution name {s.name!r} must be letters, "
                               "digits, '.', '_' or '-'")
        if s.name in seen:
            raise LmscaleError(f"sources {seen[s.name]!r} and {s.spec!r} have the same name "
                               f"{s.name!r}: rename one with NAME=SPEC")
        seen[s.name] = s.spec


@dataclass(frozen=True)
class SourceInfo:
    """One line of ``lmscale data sources``.

    Attributes:
        name: source name or spec form.
        kind: what the text is.
        description: one line about it.
        available: whether it can be read on this machine now.
        location: where its files are (or ``None``).
        hint: how to get it when missing.
    """

    name: str
    kind: str
    description: str
    available: bool
    location: str | None
    hint: str

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _has_datasets() -> bool:
    import importlib.util

    return importlib.util.find_spec("datasets") is not None


def list_sources() -> list[SourceInfo]:
    """Every built-in source and spec form, with whether it is available here."""
    out = []
    for b in BUILTIN.values():
        where = b.locate()
        ok = where is not None and where.exists()
        out.append(SourceInfo(b.name, b.kind, b.description, ok, str(where) if ok else None,
                              "" if ok else install_hint(b)))
    for form, meaning in SPEC_FORMS:
        ok = _has_datasets() if form.startswith("hf:") else True
        hint = "" if ok else "pip install 'lmscale[hf]'"
        out.append(SourceInfo(form, "pattern", meaning, ok, None, hint))
    return out
