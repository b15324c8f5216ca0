"""User-facing errors.

Every error caused by what the user gave (a spec, a file, a column, a flag)
is an :class:`LmscaleError`. Its message says what was wrong and where
(file, key, row). The command line prints it on one line and exits with 2;
the Python API simply raises it (it is a ``ValueError``).
"""

from __future__ import annotations


class LmscaleError(ValueError):
    """A problem with the user's input, explained in the message."""


class SpecError(LmscaleError):
    """An invalid specification: names the field and the bad value."""

    def __init__(self, field: str, value: object, expected: str, where: str | None = None):
        self.field = field
        self.value = value
        self.expected = expected
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{field} = {value!r}: expected {expected}")
