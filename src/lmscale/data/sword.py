"""Reader for SWORD Bible modules in the zText format (e.g. Debian's sword-text-web).

A module is described by ``mods.d/<name>.conf`` (INI-like: ``DataPath``,
``ModDrv``, ``CompressType``, ``SourceType``) under a SWORD root. A zText
module keeps each testament in three files:

- ``ot.bzs`` / ``nt.bzs``: one 12-byte record per compressed block:
  offset in ``.bzz``, compressed size, uncompressed size (little-endian uint32);
- ``ot.bzz`` / ``nt.bzz``: the blocks, each a zlib stream;
- ``ot.bzv`` / ``nt.bzv``: one 10-byte record per verse slot in canonical
  order: block number (uint32), offset in the decompressed block (uint32),
  length (uint16); empty slots have length 0.

The verse texts are OSIS XML fragments. :func:`osis_to_text` turns them into
plain text (footnotes dropped, titles and paragraphs on their own lines) and
:func:`chapters` groups them into one document per chapter, using the
``<chapter sID=...>`` milestones of the text itself (no versification table
is needed).
"""

from __future__ import annotations

import html
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lmscale.errors import LmscaleError


def sword_roots() -> list[Path]:
    """Where SWORD modules are looked for: ``$SWORD_PATH``, /usr/share/sword, ~/.sword."""
    roots = [Path(p) for p in os.environ.get("SWORD_PATH", "").split(os.pathsep) if p]
    return roots + [Path("/usr/share/sword"), Path("/usr/local/share/sword"), Path.home() / ".sword"]


@dataclass(frozen=True)
class SwordModule:
    """One installed module: its name, data directory and configuration."""

    name: str
    data_dir: Path
    conf: dict[str, str]


def _parse_conf(path: Path) -> tuple[str, dict[str, str]]:
    name, conf = "", {}
    for line in path.read_text("utf-8", errors="replace").splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]") and not name:
            name = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            conf.setdefault(key.strip(), value.strip())
    return name, conf


def find_module(name: str, roots: list[Path] | None = None) -> SwordModule | None:
    """The installed module called ``name`` (case-insensitive), or ``None``."""
    for root in roots if roots is not None else sword_roots():
        mods = root / "mods.d"
        if not mods.is_dir():
            continue
        for conf_path in sorted(mods.glob("*.conf")):
            mod_name, conf = _parse_conf(conf_path)
            if mod_name.lower() == name.lower():
                data = (root / conf.get("DataPath", "").lstrip("./")).resolve()
                return SwordModule(mod_name, data, conf)
    return None


def verses(module: SwordModule) -> Iterator[tuple[tuple[str, int], str]]:
    """``((testament, block), OSIS text)`` of every non-empty verse slot, Old then New Testament."""
    where = f"SWORD module {module.name} ({module.data_dir})"
    driver = module.conf.get("ModDrv", "").lower()
    compress = module.conf.get("CompressType", "ZIP").upper()
    if driver != "ztext" or compress != "ZIP":
        raise LmscaleError(f"{where}: ModDrv={driver or '?'} CompressType={compress}: "
                           "only zText modules with ZIP compression can be read")
    found = False
    for testament in ("ot", "nt"):
        paths = [module.data_dir / f"{testament}.{ext}" for ext in ("bzs", "bzv", "bzz")]
        if not all(p.is_file() for p in paths):
            continue
        found = True
        bzs, bzv = paths[0].read_bytes(), paths[1].read_bytes()
        blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs) - 11, 12)]
        cached, data = -1, b""
        with open(paths[2], "rb") as bzz:
            for i in range(0, len(bzv) - 9, 10):
                block, start, size = struct.unpack_from("<IIH", bzv, i)
                if size == 0:
                    continue
                if block >= len(blocks):
                    raise LmscaleError(f"{where}: {paths[1].name} names block {block} of {len(blocks)}")
                if block != cached:
                    offset, csize, _ = blocks[block]
                    bzz.seek(offset)
                    try:
                        data = zlib.decompress(bzz.read(csize))
                    except zlib.error as exc:
                        raise LmscaleError(f"{where}: block {block}: {exc}") from None
                    cached = block
                yield (testament, block), data[start:start + size].decode("utf-8", errors="replace")
    if not found:
        raise LmscaleError(f"{where}: no ot.bzs/bzv/bzz or nt.bzs/bzv/bzz files")


_NOTE = re.compile(r"<note\b[^>]*/>|<note\b.*?</note>", re.S)
_NOTE_BEFORE_WORD = re.compile(r"(?:<note\b[^>]*/>|<note\b.*?</note>)(?=<w\b)", re.S)
_BREAK = re.compile(r"<(?:lb|l|/l|lg|/lg|p|/p|title|/title|item|/item|list|/list)\b[^>]*>"
                    r"|<div\b[^>]*type=\"(?:x-p|paragraph|section|book|introduction)\"[^>]*>")
_TAG = re.compile(r"<[^>]*>")
_UNCLOSED = re.compile(r"<[^>]*$")  # a tag cut off at the end of a verse slot
_SPACES = re.compile(r"[ \t\r\f\v]+")
_CHAPTER = re.compile(r"<chapter\b[^>]*\bsID=")
_BOOK = re.compile(r"<div\b[^>]*type=\"book\"[^>]*\bsID=|<div\b[^>]*\bsID=[^>]*type=\"book\"")


def osis_to_text(osis: str) -> str:
    """Plain text of an OSIS fragment: notes dropped, line breaks kept, entities decoded."""
    text = _NOTE.sub("", _NOTE_BEFORE_WORD.sub(" ", _UNCLOSED.sub("", osis)))  # a footnote mark between words
    text = _TAG.sub("", _BREAK.sub("\n", text))
    lines = (_SPACES.sub(" ", line).strip() for line in html.unescape(text).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


#: A book introduction shorter than this (in OSIS characters) joins the first chapter.
SHORT_INTRO = 2000


def chapters(module: SwordModule) -> Iterator[str]:
    """One plain-text document per chapter.

    A chapter starts at its ``<chapter sID=...>`` milestone; a book starts with
    a new compressed block (zText modules of ``BlockType=BOOK``) or a book
    division. A book's title or short introduction joins its first chapter;
    a long one (a preface) is a document of its own.
    """
    parts: list[str] = []
    current, has_chapter = None, False
    for block, raw in verses(module):
        chapter = bool(_CHAPTER.search(raw))
        new_book = block != current or bool(_BOOK.search(raw))
        if parts and (new_book or (chapter and (has_chapter or sum(map(len, parts)) > SHORT_INTRO))):
            text = osis_to_text(" ".join(parts))
            if text:
                yield text
            parts, has_chapter = [], False
        parts.append(_UNCLOSED.sub("", raw))
        current, has_chapter = block, has_chapter or chapter
    text = osis_to_text(" ".join(parts))
    if text:
        yield text
