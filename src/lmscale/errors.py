"""User-facing errors.

Every error caused by what the user gave (a spec, a file, a column, a flag)
is an :class:`LmscaleError`. Its message says what was wrong and where
(file, key, row). The command line prints it on one line and exits with 2;
the Python API simply raises it (it is a ``ValueError``).
"""

from __future__ import annotations

from typing import Any


class LmscaleError(ValueError):
    """A problem with the user's input, explained in the message."""


class DiskFullError(LmscaleError):
    """No space left where lmscale had to write (a checkpoint, the store, a record).

    Whatever was written before stays intact: writes go to a temporary file
    renamed into place, and store writes are transactions.
    """


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the quota) is full: ``ENOSPC``/``EDQUOT``,
    SQLite's "database or disk is full", or a library's wrapped "os error 28"."""
    import errno

    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return ("database or disk is full" in text or "No space left on device" in text
            or "os error 28" in text or "Disk quota exceeded" in text)


class SpecError(LmscaleError):
    """An invalid specification: names the field and the bad value."""

    def __init__(self, field: str, value: object, expected: str, where: str | None = None):
        self.field = field
        self.value = value
        self.expected = expected
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{field} = {value!r}: expected {expected}")


def build_from_fields(cls: Any, data: dict[str, Any], kind: str, where: str | None = None) -> Any:
    """``cls(**data)`` for a dataclass, refusing unknown keys and naming ``where`` in every SpecError.

    ``kind`` words the expectation ("model field", "run field").
    """
    from dataclasses import fields

    known = {f.name for f in fields(cls) if not f.name.startswith("_")}
    for key in data:
        if key not in known:
            raise SpecError(key, data[key], f"a known {kind} ({', '.join(sorted(known))})", where)
    try:
        return cls(**data)
    except SpecError as exc:
        if where and not exc.where:
            raise SpecError(exc.field, exc.value, exc.expected, where) from None
        raise
