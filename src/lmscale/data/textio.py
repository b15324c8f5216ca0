"""Reading text robustly: binary files skipped, invalid UTF-8 replaced, both counted.

Every source reads its files through :func:`read_text_file` and reports what
it had to skip or repair in a :class:`SourceStats`; :func:`lmscale.data.prepare`
writes those counts into the manifest and warns with a :class:`DataWarning`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: Bytes looked at to decide whether a file is binary.
SNIFF_BYTES = 8192
#: A file longer than this is cut into several documents at line boundaries.
MAX_DOCUMENT_BYTES = 1 << 20

# Names of the counters in SourceStats.warnings.
BINARY_SKIPPED = "binary files skipped"
INVALID_UTF8 = "documents with invalid UTF-8 (replaced by U+FFFD)"
UNREADABLE = "unreadable files skipped"
EMPTY_SKIPPED = "empty documents skipped"
NUL_REMOVED = "documents with NUL characters removed"


class DataWarning(UserWarning):
    """Something in the input was skipped or repaired; the count is in the manifest."""


@dataclass
class SourceStats:
    """What reading one source found.

    Attributes:
        files: files read as text (binary and unreadable ones excluded).
        documents: documents yielded.
        bytes: UTF-8 bytes of the documents yielded.
        truncated: reading stopped at ``max_bytes`` before the source ended.
        warnings: counts of things skipped or repaired, by description.
    """

    files: int = 0
    documents: int = 0
    bytes: int = 0
    truncated: bool = False
    warnings: dict[str, int] = field(default_factory=dict)

    def warn(self, what: str, count: int = 1) -> None:
        """Count one more occurrence of ``what``."""
        self.warnings[what] = self.warnings.get(what, 0) + count

    def summary(self) -> str:
        """One line: the warning counts, or an empty string."""
        return ", ".join(f"{n} {what}" for what, n in sorted(self.warnings.items()))

    def to_json(self) -> dict:
        return {"files": self.files, "documents": self.documents, "bytes": self.bytes,
                "truncated": self.truncated, "warnings": dict(sorted(self.warnings.items()))}


def is_binary(head: bytes) -> bool:
    """True for data that is not text: a NUL byte, or mostly invalid UTF-8 (like git and grep)."""
    if b"\0" in head:
        return True
    if not head:
        return False
    text = head.decode("utf-8", errors="replace")
    # A multi-byte character cut at the end of ``head`` gives at most 3 replacements.
    return text.count("\ufffd") > 3 + len(text) // 10


def decode(data: bytes, stats: SourceStats) -> str:
    """UTF-8 text of ``data``; invalid sequences become U+FFFD and are counted."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        stats.warn(INVALID_UTF8)
        return data.decode("utf-8", errors="replace")


def _cut(block: bytes) -> int:
    """Where to end a document inside ``block``: a paragraph, else a line, else a character."""
    half = len(block) // 2
    for sep in (b"\n\n", b"\n"):
        i = block.rfind(sep, half)
        if i >= 0:
            return i + len(sep)
    i = len(block)
    while i > half and (block[i - 1] & 0xC0) == 0x80:  # back off UTF-8 continuation bytes
        i -= 1
    return i - 1 if i > half and block[i - 1] >= 0xC0 else i


def read_text_file(path: Path, stats: SourceStats, max_document_bytes: int = MAX_DOCUMENT_BYTES
                   ) -> Iterator[str]:
    """Documents of one text file: the whole file, or pieces of at most ``max_document_bytes``.

    Binary files yield nothing and count as skipped; unreadable files likewise.
    Memory stays bounded by ``max_document_bytes`` whatever the file size.
    """
    try:
        f = open(path, "rb")
    except OSError:
        stats.warn(UNREADABLE)
        return
    with f:
        try:
            buf = f.read(max_document_bytes + 1)
            if is_binary(buf[:SNIFF_BYTES]):
                stats.warn(BINARY_SKIPPED)
                return
            stats.files += 1
            bad = False
            while buf:
                if len(buf) <= max_document_bytes:  # top up to see whether more follows
                    buf += f.read(max_document_bytes + 1 - len(buf))
                if len(buf) <= max_document_bytes:
                    piece, buf = buf, b""
                else:
                    i = _cut(buf[:max_document_bytes])
                    piece, buf = buf[:i], buf[i:]
                try:
                    text = piece.decode("utf-8")
                except UnicodeDecodeError:
                    bad = True
                    text = piece.decode("utf-8", errors="replace")
                if text:
                    yield text
        except OSError:
            stats.warn(UNREADABLE)
            return
        if bad:
            stats.warn(INVALID_UTF8)


def split_lines(lines: Iterable[str], starts: Callable[[str], bool]) -> Iterator[list[str]]:
    """Group lines into documents; a new one begins at each line where ``starts(line)``."""
    doc: list[str] = []
    for line in lines:
        if starts(line) and any(s.strip() for s in doc):
            yield doc
            doc = []
        doc.append(line)
    if any(s.strip() for s in doc):
        yield doc


def hashed_order(paths: Iterable[Path], root: Path) -> list[Path]:
    """Files in a fixed pseudo-random order (hash of the path relative to ``root``).

    A prefix of this order (``max_bytes``) is then a fair sample of a directory
    instead of its alphabetically first files.
    """
    def key(p: Path) -> tuple[bytes, str]:
        rel = p.relative_to(root).as_posix() if p.is_relative_to(root) else p.as_posix()
        return hashlib.blake2b(rel.encode(), digest_size=8).digest(), rel

    return sorted(paths, key=key)
