"""Reading a user's table of runs, CSV or Excel: one reader for every command that takes one.

Spreadsheets and locales write CSV in more than one way. The reader takes
the field separator from the header line (comma, semicolon, tab or bar; a
table exported in a locale whose decimal mark is a comma is written with
semicolons), reads a UTF-8 byte-order mark as nothing, and refuses what it
would otherwise have to guess: a column named twice in the header, and rows
with more fields than the header names (pandas would take the first column
as the index and move every value one column to the left). A trailing
separator on every line is harmless. Every refusal is an
:class:`~lmscale.errors.LmscaleError` that names the file.

Excel workbooks (``.xlsx``, ``.xlsm``; ``pip install 'lmscale[excel]'``) are
read from their first sheet, or the one named after a ``#``:
``runs.xlsx#ladder``. The empty columns and rows around a table are
dropped; the header is the first row of text only that fills the most
cells, so a title above it is left out. What was passed over (other
sheets, title rows) is said in ``attrs["notes"]``; a column of values
without a name, and the same name twice, are refused as in a CSV.

An ``http(s)://`` address is fetched first (:func:`download`): a published
table can be fitted where it lies, ``.../svg_extracted_data.csv``.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lmscale.errors import LmscaleError

if TYPE_CHECKING:
    import pandas as pd

SEPARATORS = (",", ";", "\t", "|")
#: Workbook suffixes read with openpyxl.
WORKBOOKS = (".xlsx", ".xlsm")
#: Spreadsheet formats read by neither: save as one of the others.
OTHER_SPREADSHEETS = (".xls", ".ods", ".numbers")
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
    _refuse_repeated_names(path, next(csv.reader([first], delimiter=sep), []))
    if sep == ";":  # the separator of locales whose decimal mark is a comma (elsewhere 1,234 may be 1234)
        frame = _decimal_commas(frame)
    if sep != ",":
        frame.attrs["separator"] = sep
    return frame


def _refuse_repeated_names(where: Path | str, header: list) -> None:
    names = [str(h).strip() for h in header if str(h).strip()]  # CSV: strings; workbook: its named cells
    twice = sorted(name for name, n in Counter(names).items() if n > 1)
    if twice:
        raise LmscaleError(f"{where}: column(s) {', '.join(map(repr, twice))} named more than once in the header; "
                           "rename them so each column has one name")


#: The largest table :func:`download` fetches.
MAX_DOWNLOAD_BYTES = 512 * 2**20


def is_url(spec: str | Path) -> bool:
    """Whether ``spec`` is an http(s) address (a Path never is)."""
    return isinstance(spec, str) and spec.lower().startswith(("http://", "https://"))


def download(url: str, folder: Path, timeout: float = 60.0) -> tuple[Path, str | None]:
    """Fetch ``url`` into ``folder`` under its own file name: (the file, the address's ``#`` part, a
    workbook's sheet). An LmscaleError names the address when the server or the network fails."""
    import urllib.error
    import urllib.request
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    target = Path(folder) / (Path(unquote(parts.path)).name or "download")
    fetched = 0
    try:
        with urllib.request.urlopen(url.split("#", 1)[0], timeout=timeout) as response, open(target, "wb") as out:
            while chunk := response.read(1 << 20):
                fetched += len(chunk)
                if fetched > MAX_DOWNLOAD_BYTES:
                    raise LmscaleError(f"{url}: larger than {MAX_DOWNLOAD_BYTES / 2**20:.0f} MiB; download it "
                                       "and give the file")
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise LmscaleError(f"{url}: the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise LmscaleError(f"{url}: could not download ({getattr(exc, 'reason', exc)})") from None
    return target, parts.fragment or None


def split_sheet(spec: str | Path) -> tuple[Path, str | None]:
    """``runs.xlsx#ladder`` -> (``runs.xlsx``, ``"ladder"``); any other path -> (path, None)."""
    path = Path(spec)
    text = str(spec)
    if not path.exists() and "#" in text:
        base, sheet = text.rsplit("#", 1)
        if Path(base).suffix.lower() in WORKBOOKS:
            return Path(base), sheet
    return path, None


def read_rows(spec: str | Path) -> pd.DataFrame:
    """The table in a CSV file or an Excel workbook's sheet (``FILE.xlsx#SHEET``), by its suffix."""
    path, sheet = split_sheet(spec)
    suffix = path.suffix.lower()
    if suffix in WORKBOOKS:
        return read_workbook(path, sheet)
    if suffix in OTHER_SPREADSHEETS:
        raise LmscaleError(f"{path}: a {suffix} spreadsheet, which lmscale does not read; save the sheet as "
                           ".xlsx or as CSV")
    return read_csv(path)


def read_workbook(path: str | Path, sheet: str | None = None) -> pd.DataFrame:
    """One sheet of an Excel workbook (the first when ``sheet`` is None) as a table."""
    import zipfile

    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise LmscaleError(f"{path}: no such file")
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        raise LmscaleError(f"{path}: reading Excel workbooks needs openpyxl: pip install 'lmscale[excel]' "
                           "(or save the sheet as CSV)") from None
    try:
        book = pd.ExcelFile(path, engine="openpyxl")
        names = [str(n) for n in book.sheet_names]
        if not names:
            raise LmscaleError(f"{path}: the workbook has no sheets")
        chosen = names[0] if sheet is None else sheet
        if chosen not in names:
            raise LmscaleError(f"{path}: no sheet {chosen!r}; its sheets: {', '.join(names)}")
        raw = pd.read_excel(book, sheet_name=chosen, header=None)
    except LmscaleError:
        raise
    except (zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
        raise LmscaleError(f"{path}: not a readable Excel workbook ({exc})") from None
    raw = raw.dropna(how="all").dropna(axis=1, how="all")  # the empty rows and columns around the table
    where = f"{path}#{chosen}"
    if raw.empty:
        raise LmscaleError(f"{where}: the sheet is empty")
    filled = raw.notna()
    text = raw.map(lambda v: isinstance(v, str)) | ~filled
    # the header: of the rows holding only text (titles above it hold one cell), the first that fills the most
    width = np.where(text.all(axis=1).to_numpy(), filled.sum(axis=1).to_numpy(), -1)
    if width.max() < 1:
        raise LmscaleError(f"{where}: no header row (a row of column names above the values)")
    top = int(np.argmax(width))
    named = filled.iloc[top].to_numpy()
    if filled.iloc[top + 1:, ~named].any().any():
        raise LmscaleError(f"{where}: a column with values has no name in the header row (row {top + 1} of the "
                           "table)")
    header = raw.iloc[top][named].tolist()
    _refuse_repeated_names(where, header)
    frame = raw.iloc[top + 1:].loc[:, named].reset_index(drop=True)
    frame.columns = [str(h).strip() for h in header]
    for col in frame.columns:  # cells of a header row's column arrive as objects: numbers where all are
        try:
            frame[col] = pd.to_numeric(frame[col])
        except (ValueError, TypeError):
            pass
    frame.attrs["sheet"], frame.attrs["sheets"] = chosen, names
    frame.attrs["sheet_given"] = sheet is not None  # or the first was taken
    notes = []
    if len(names) > 1 and sheet is None:
        notes.append(f"{path.name}: read its first sheet, {chosen!r}, of {len(names)} ({', '.join(names)}); "
                     f"another: {path.name}#SHEET")
    if top:
        notes.append(f"{where}: the {top} row(s) above the header row ({', '.join(map(str, header))}) were "
                     "taken for titles and left out")
    if notes:
        frame.attrs["notes"] = notes
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


__all__ = ["MAX_DOWNLOAD_BYTES", "OTHER_SPREADSHEETS", "SEPARATORS", "WORKBOOKS", "download", "header_separator",
           "is_url", "read_csv", "read_rows", "read_workbook", "split_sheet"]
