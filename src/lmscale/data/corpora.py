"""The built-in text distributions: Python's own files and Debian text packages.

Each reader takes a :class:`SourceStats` and yields documents. Where a reader
finds its files is documented by its ``locate_*`` function; the Debian
package that provides them is named in :data:`lmscale.data.sources.BUILTIN`.
"""

from __future__ import annotations

import ast
import gzip
import os
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from lmscale.data import lzw, sword
from lmscale.data.textio import (
    MAX_DOCUMENT_BYTES,
    SourceStats,
    decode,
    hashed_order,
    read_text_file,
    split_lines,
)
from lmscale.errors import LmscaleError

# -- Python's standard library -------------------------------------------


def stdlib_root() -> Path:
    """The running interpreter's standard library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


#: Test-suite folders, left out of ``python-docs`` (kept in ``python-stdlib``).
TEST_DIRS = frozenset({"test", "tests", "idle_test", "unittest_test"})


def stdlib_files(tests: bool = True) -> list[Path]:
    """Every ``.py`` file of the standard library (site-packages excluded), in hashed order."""
    root = stdlib_root()
    skip = {"site-packages", "dist-packages", "__pycache__"} | (set() if tests else TEST_DIRS)
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        files.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return hashed_order(files, root)


def python_stdlib(stats: SourceStats) -> Iterator[str]:
    """Source code: one document per standard-library file."""
    for path in stdlib_files():
        yield from read_text_file(path, stats)


def docstrings(source: bytes) -> list[str]:
    """Docstrings of a module, its classes and functions, in source order (no import)."""
    tree = ast.parse(source)
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    nodes = [n for n in ast.walk(tree) if isinstance(n, kinds)]
    nodes.sort(key=lambda n: getattr(n, "lineno", 0))
    found = (ast.get_docstring(n, clean=True) for n in nodes)
    return [d for d in found if d and d.strip()]


def pydoc_topics() -> dict[str, str]:
    """The ``pydoc_data.topics`` help texts, read with ``ast`` (empty if absent)."""
    path = stdlib_root() / "pydoc_data" / "topics.py"
    if not path.is_file():
        return {}
    for node in ast.parse(path.read_bytes()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "topics" for t in node.targets):
            value = ast.literal_eval(node.value)
            return {str(k): str(v) for k, v in value.items()}
    return {}


def python_docs(stats: SourceStats) -> Iterator[str]:
    """English technical prose: the docstrings of each stdlib module, then pydoc's topics.

    Test suites are left out (their docstrings describe tests, and parsing
    them would triple the time this takes).
    """
    for path in stdlib_files(tests=False):
        try:
            data = path.read_bytes()
            found = docstrings(data)
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError, MemoryError, RecursionError):
            stats.warn("stdlib files that do not parse skipped")
            continue
        stats.files += 1
        if found:
            yield "\n\n".join(found)
    topics = pydoc_topics()
    for name in sorted(topics):
        if topics[name].strip():
            yield topics[name]


# -- Debian text packages -------------------------------------------------

KJV_PATHS = (Path("/usr/lib/bible.data"), Path("/usr/share/bible-kjv/bible.data"))
WEB_MODULE = "engWEB2015eb"
JARGON_PATHS = (Path("/usr/share/doc/jargon-text/jargon.txt.gz"),
                Path("/usr/share/doc/jargon-text/jargon.txt"))
GCIDE_PATHS = (Path("/usr/share/dictd/gcide.dict.dz"), Path("/usr/share/dictd/gcide.dict"))


def _need(path: Path | None, source: str, looked: tuple[Path, ...]) -> Path:
    if path is None:
        raise LmscaleError(f"source {source!r}: its files are missing (looked in "
                           f"{', '.join(map(str, looked))})")
    return path


def _first(paths: tuple[Path, ...]) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def locate_kjv() -> Path | None:
    """``bible.data`` of bible-kjv-text (``/usr/lib``)."""
    return _first(KJV_PATHS)


def locate_web() -> Path | None:
    """Data directory of the SWORD module engWEB2015eb (sword-text-web)."""
    module = sword.find_module(WEB_MODULE)
    return module.data_dir if module and module.data_dir.is_dir() else None


def locate_jargon() -> Path | None:
    """``jargon.txt.gz`` of jargon-text."""
    return _first(JARGON_PATHS)


def locate_gcide() -> Path | None:
    """``gcide.dict.dz`` (dictzip, readable as gzip) of dict-gcide."""
    return _first(GCIDE_PATHS)


def vim_doc_dirs() -> list[Path]:
    """``$VIMRUNTIME/doc`` if set, else the newest ``/usr/share/vim/vim*/doc``."""
    if os.environ.get("VIMRUNTIME"):
        d = Path(os.environ["VIMRUNTIME"]) / "doc"
        return [d] if d.is_dir() else []
    found = sorted(Path("/usr/share/vim").glob("vim[0-9]*/doc"))
    return found[-1:]


def locate_vim() -> Path | None:
    """The Vim help directory of vim-runtime."""
    dirs = [d for d in vim_doc_dirs() if any(d.glob("*.txt"))]
    return dirs[0] if dirs else None


_VERSE = re.compile(r"^([1-4]?[A-Za-z]+)(\d+):\d+ ?(.*)$")


def bible_kjv(stats: SourceStats) -> Iterator[str]:
    """The King James Bible, one document per chapter (verse references removed)."""
    path = _need(locate_kjv(), "bible-kjv", KJV_PATHS)
    stats.files += 1
    verses: list[str] = []
    chapter = None
    tail = b""
    for window in lzw.bible_data_windows(path):
        data = tail + window
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        for line in decode(data[:cut], stats).splitlines():
            m = _VERSE.match(line)
            if not m:
                continue  # the title line
            if (m.group(1), m.group(2)) != chapter and verses:
                yield "\n".join(verses)
                verses = []
            chapter = (m.group(1), m.group(2))
            verses.append(m.group(3))
    if verses:
        yield "\n".join(verses)


def bible_web(stats: SourceStats) -> Iterator[str]:
    """The World English Bible (SWORD zText module), one document per chapter."""
    module = sword.find_module(WEB_MODULE)
    if module is None:
        _need(None, "bible-web", tuple(r / "mods.d" for r in sword.sword_roots()))
    stats.files += 1
    yield from sword.chapters(module)


def _gz_lines(path: Path, stats: SourceStats) -> Iterator[str]:
    opener = gzip.open if path.suffix in (".gz", ".dz") else open
    with opener(path, "rb") as f:
        stats.files += 1
        for raw in f:
            yield decode(raw, stats).rstrip("\n")


_JARGON_ENTRY = re.compile(r"^   :[^:]+:")
_JARGON_HEADING = re.compile(r"^[A-Za-z(]")


def jargon(stats: SourceStats) -> Iterator[str]:
    """The Jargon File: one document per entry or chapter section."""
    path = _need(locate_jargon(), "jargon", JARGON_PATHS)
    starts = lambda line: bool(_JARGON_ENTRY.match(line) or _JARGON_HEADING.match(line))  # noqa: E731
    for lines in split_lines(_gz_lines(path, stats), starts):
        yield "\n".join(line[3:] if line.startswith("   ") else line for line in lines).strip()


def gcide(stats: SourceStats) -> Iterator[str]:
    """GCIDE (Webster's 1913 + WordNet): one document per dictionary entry.

    An entry starts at a non-indented line after a blank line; the
    ``00-database-*`` header entries are left out.
    """
    path = _need(locate_gcide(), "gcide", GCIDE_PATHS)
    doc: list[str] = []
    size = 0
    blank = True
    for line in _gz_lines(path, stats):
        starts = blank and line[:1] not in ("", " ", "\t")
        if (starts or size > MAX_DOCUMENT_BYTES) and doc:
            text = "\n".join(doc).strip()
            if text and not text.startswith("00-database") and not text.startswith("00database"):
                yield text
            doc, size = [], 0
        doc.append(line)
        size += len(line) + 1
        blank = not line.strip()
    text = "\n".join(doc).strip()
    if text and not text.startswith("00-database"):
        yield text


_VIM_SECTION = re.compile(r"^={20,}\s*$")


def vim_help(stats: SourceStats) -> Iterator[str]:
    """Vim's help files, one document per section (``====`` separator lines)."""
    root = _need(locate_vim(), "vim-help", (Path("/usr/share/vim/vim*/doc"),))
    for path in hashed_order(root.glob("*.txt"), root):
        for text in read_text_file(path, stats):
            for lines in split_lines(text.split("\n"), lambda line: bool(_VIM_SECTION.match(line))):
                doc = "\n".join(x for x in lines if not _VIM_SECTION.match(x)).strip()
                if doc:
                    yield doc
