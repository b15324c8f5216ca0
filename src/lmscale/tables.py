"""Reading a user's CSV file: one reader for every command that takes one.

Spreadsheets and locales write CSV in more than one way. The reader takes
the field separator from the header line (comma, semicolon, tab or bar; a
table exported in a locale whose decimal mark is a comma is written with
semicolons), reads a UTF-8 byte-order mark as nothing, and refuses what it
would otherwise have to guess: a column named twice in the header, and rows
with more fields than the header names (pandas would take the first column
as the index and move every value one column to the left). A trailing
separator on every line is harmless. Every refusal is an
:class:`~lmscale.errors.LmscaleError` that names the file.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from lmscale.errors import LmscaleError

if TYPE_CHECKING:
    import pandas as pd

SEPARATORS = (",", ";", "\t", "|")
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d*,\d+(?:[eE][-+]?\d+)?\s*$")


def header_separator(header: str) -> str:
    """The separator of a CSV header line: the one of :data:`SEPARATORS` it holds most of (``,`` if none)."""
    counts = {sep: header.count(sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: counts[sep])
    return best if counts[best] > 0 else ","


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        return fh.readline()


def read_csv(path: str | Path) -> pd.DataFrame:
    """The table in the CSV file ``path`` (separator from its header line); an LmscaleError naming the file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise LmscaleError(f"{path}: no such file")
    first = _first_line(path)
    sep = header_separator(first)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(path, sep=sep, index_col=False, encoding="utf-8-sig")
        except pd.errors.ParserWarning:
            raise LmscaleError(f"{path}: some rows have more fields than the header names columns; "
                               "refusing to guess which value belongs where") from None
        except pd.errors.EmptyDataError:
            raise LmscaleError(f"{path}: empty file (no header line)") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise LmscaleError(f"{path}: not a readable CSV ({exc})") from None
    header = next(csv.reader([first], delimiter=sep), [])
    twice = sorted(name for name, n in Counter(h.strip() for h in header).items() if n > 1 and name)
    if twice:
        raise LmscaleError(f"{path}: column(s) {', '.join(map(repr, twice))} named more than once in the header; "
                           "rename them so each column has one name")
    if sep != ",":
        frame = _decimal_commas(frame)
        frame.attrs["separator"] = sep
    return frame


def _decimal_commas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns whose every value is a number written with a decimal comma, as numbers."""
    import pandas as pd

    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        text = values.dropna().astype(str)
        if len(text) and text.str.match(_DECIMAL_COMMA).all():
            frame[col] = pd.to_numeric(values.astype(str).str.replace(",", ".", regex=False), errors="coerce")
    return frame


__all__ = ["SEPARATORS", "header_separator", "read_csv"]
