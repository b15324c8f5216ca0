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

The rows of one setting: ``--where`` (:func:`parse_where`,
:func:`select_rows`) keeps them, and :func:`mixed_settings` finds the text
columns (data set, schedule, ...) in which runs of one N and D differ in
loss: a table that mixes settings.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
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


def parse_pairs(text: str | Mapping[str, str] | None, flag: str, form: str) -> list[tuple[str, str]]:
    """``'a=b,c=d'`` (or a mapping) -> ``[("a", "b"), ("c", "d")]``; quotes around either side dropped,
    and a comma inside quotes is part of the name or value (``run="a,b"``)."""
    if text is None:
        return []
    if isinstance(text, Mapping):
        return [(str(k), str(v)) for k, v in text.items()]
    items = []
    for part in _split_outside_quotes(str(text), flag):
        if not part.strip():
            continue
        if "=" not in part:
            raise LmscaleError(f"{flag} {part.strip()!r}: expected {form}")
        key, value = (s.strip().strip('"').strip("'") for s in part.split("=", 1))
        items.append((key, value))
    return items


def _split_outside_quotes(text: str, flag: str) -> list[str]:
    """``text`` split at the commas outside quotes (a quote opens only where a name or value starts,
    so ``O'Brien`` is a value)."""
    parts, current, quote, start = [], [], None, 0
    for ch in text:
        if quote is None and ch in "\"'" and not "".join(current[start:]).strip():
            quote = ch
        elif ch == quote:
            quote = None
        elif ch == "," and quote is None:
            parts.append("".join(current))
            current, start = [], 0
            continue
        elif ch == "=" and quote is None:
            start = len(current) + 1
        current.append(ch)
    if quote is not None:
        raise LmscaleError(f"{flag} {text!r}: a {quote} quote is not closed")
    return [*parts, "".join(current)]


def parse_fields(text: str | Mapping[str, str] | None, flag: str, fields: Iterable[str], form: str) -> dict[str, str]:
    """:func:`parse_pairs` whose keys must be among ``fields`` (``--columns N="Model Size"``)."""
    allowed = tuple(fields)
    mapping: dict[str, str] = {}
    for key, value in parse_pairs(text, flag, form):
        if key not in allowed:
            raise LmscaleError(f"{flag} {key!r}: expected one of {', '.join(allowed)}")
        mapping[key] = value
    return mapping


#: Column names people give each field of a run, normalised (lower case, ``_`` for other characters).
COLUMN_ALIASES = {
    "N": ("n", "n_params", "params", "num_params", "nparams", "parameters", "n_parameters", "param_count",
          "model_size", "non_embedding_params", "n_params_non_embedding"),
    "D": ("d", "tokens", "d_tokens", "total_tokens", "train_tokens", "training_tokens", "num_tokens",
          "n_tokens", "tokens_seen", "dataset_size", "data_size"),
    "C": ("c", "flops", "compute", "total_flops", "training_flop", "training_flops", "train_flops",
          "total_training_flops", "compute_flops"),
    "loss": ("loss", "val_loss", "eval_loss", "test_loss", "valid_loss", "validation_loss", "final_loss",
             "loss_val", "ce", "nll", "cross_entropy"),
    "U": ("u", "unique_tokens", "u_unique_tokens", "unique", "u_tokens"),
    "epochs": ("epochs", "epoch", "n_epochs", "num_epochs"),
}
#: Endings that mark a column as a loss (``c4_en_CE``, ``eval/pile_loss``).
_LOSS_ENDINGS = ("_loss", "_ce", "_nll")


def _normalised(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")


def _numeric_columns(table: pd.DataFrame) -> list[str]:
    """The names of ``table``'s columns that hold numbers in most rows (one of two same-named columns is not one)."""
    import pandas as pd

    out = []
    for c in table.columns:
        column = table[c]
        if isinstance(column, pd.Series) and (len(column) == 0 or
                                              pd.to_numeric(column, errors="coerce").notna().mean() > 0.5):
            out.append(str(c))
    return out


def guess_columns(table: pd.DataFrame, fields: Iterable[str]) -> dict[str, list[str]]:
    """For each of ``fields``, the columns of ``table`` whose names say they hold it, likeliest first;
    columns of text are passed over."""
    names = _numeric_columns(table)
    out: dict[str, list[str]] = {}
    for key in fields:
        aliases = COLUMN_ALIASES.get(key, ())
        found = [c for c in names if _normalised(c) in aliases]
        if key == "loss":
            found += [c for c in names if c not in found and _normalised(c).endswith(_LOSS_ENDINGS)]
        if found:
            out[key] = found
    return out


def columns_hint(table: pd.DataFrame, missing: Iterable[str]) -> str:
    """``"; perhaps --columns 'N=N_params,D=total_tokens'"`` for the fields ``missing`` whose columns
    ``table`` seems to hold under other names ("" when none does); D missing, C is offered too
    (D = C / (6 N))."""
    missing = list(missing)
    if "D" in missing and "C" not in missing:
        missing.append("C")
    guesses = guess_columns(table, missing)
    if "D" in guesses:
        guesses.pop("C", None)
    if not guesses:
        return ""

    def quoted(name: str) -> str:
        return f'"{name}"' if re.search(r"[\s,=]", name) else name

    pairs = ",".join(f"{key}={quoted(cols[0])}" for key, cols in guesses.items())
    others = "; ".join(f"{key} could also be {', '.join(cols[1:6])}" + (" ..." if len(cols) > 6 else "")
                       for key, cols in guesses.items() if len(cols) > 1)
    return f"; perhaps --columns '{pairs}'" + (f" ({others})" if others else "")


def parse_where(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``'dataset=rw,hparams=tuned'`` -> ``{"dataset": "rw", "hparams": "tuned"}`` (rows to keep)."""
    return dict(parse_pairs(text, "--where", "COLUMN=VALUE, e.g. dataset=rw"))


def select_rows(frame: pd.DataFrame, where: Mapping[str, str], source: str = "data") -> pd.DataFrame:
    """The rows whose columns equal the values of ``where`` (numbers compared as numbers)."""
    import pandas as pd

    for col, value in where.items():
        if col not in frame.columns:
            raise LmscaleError(f"{source}: --where {col}={value}: no column {col!r}; columns: "
                               f"{', '.join(map(str, frame.columns))}")
        column = frame[col]
        keep = column.astype(str) == value
        if pd.api.types.is_numeric_dtype(column):
            try:
                keep |= np.isclose(pd.to_numeric(column, errors="coerce"), float(value), rtol=1e-9, atol=0.0)
            except ValueError:
                pass
        if not keep.any():
            values = sorted(map(str, column.dropna().unique()))
            shown = ", ".join(values[:12]) + (f", ... ({len(values)} values)" if len(values) > 12 else "")
            raise LmscaleError(f"{source}: --where {col}={value}: no row has it; {col} holds {shown}")
        frame = frame[keep]
    return frame


#: Text columns that are never a setting: the ids of runs.
NOT_SETTINGS = ("run_id",)
#: Most distinct values a column may hold and still be read as a setting (dataset, schedule, ...).
MAX_SETTING_VALUES = 12
#: Median spread of the loss between a column's values at one (N, D) above which they are settings,
#: not replicates (a rerun or another seed moves the loss by a fraction of this).
SETTING_LOSS_SPREAD = 0.01


def mixed_settings(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Text columns whose values, at the same N and D, move the loss: settings of the runs (data
    set, schedule, tuning, ...) that a law of N and D fitted across them cannot tell apart.
    ``frame`` names its columns as the fits do (``N``, ``D``, ``loss``).

    A column is one when rows of one (N, D) differ in it and the loss between its values
    there differs by more than ``SETTING_LOSS_SPREAD`` (median over such points, in log
    loss). Labels that follow N or D (a size name, a run path) never differ at one (N, D);
    replicates (``1xC`` and ``1xC-rerun``) differ in it but not in loss; a column of more
    than ``MAX_SETTING_VALUES`` values (run names) is not read as a setting.
    """
    import pandas as pd

    if not {"N", "D", "loss"} <= set(frame.columns) or len(frame) < 2:
        return {}
    n, d, loss = (pd.to_numeric(frame[c], errors="coerce") for c in ("N", "D", "loss"))
    ok = (n > 0) & (d > 0) & (loss > 0)
    key = pd.Series(list(zip(np.round(np.log10(n.where(ok)), 3), np.round(np.log10(d.where(ok)), 3))),
                    index=frame.index)[ok]
    log_loss = np.log(loss[ok])
    out = {}
    for col in frame.columns:
        column = frame[col]
        if col in NOT_SETTINGS or pd.api.types.is_numeric_dtype(column):
            continue
        values = column[ok].astype(str).where(column[ok].notna())
        if not 2 <= values.nunique() <= MAX_SETTING_VALUES:
            continue
        per_value = log_loss.groupby([key, values]).mean()
        spread = per_value.groupby(level=0).agg(lambda x: x.max() - x.min() if len(x) > 1 else np.nan).dropna()
        if len(spread) and float(spread.median()) > SETTING_LOSS_SPREAD:
            out[str(col)] = sorted(values.dropna().unique())
    return out


#: Fewest distinct D per run for rows to read as points of a learning curve: curves log tens of
#: points, while a ladder trains a size at a few budgets (OLMo's: 6 per size, each its own run).
CURVE_MIN_POINTS = 10


def curve_column(frame: pd.DataFrame) -> tuple[str, int] | None:
    """(column, runs) where ``frame``'s rows are points of learning curves: a text column whose
    values (2 or more, fewer than half the rows) each hold rows of one N and
    ``CURVE_MIN_POINTS`` or more D, in 80% of its values or more: each value one run's curve,
    whose rows a table of final points would each take for a run. Of several such columns, the
    one of most values (a run's path before its size's name). ``frame`` names its columns as the
    fits do (``N``, ``D``); None where no column is one."""
    import pandas as pd

    if not {"N", "D"} <= set(frame.columns) or len(frame) < 2 * CURVE_MIN_POINTS:
        return None
    n, d = (pd.to_numeric(frame[c], errors="coerce") for c in ("N", "D"))
    best: tuple[str, int] | None = None
    for col in frame.columns:
        column = frame[col]
        if col in ("N", "D", "loss") or pd.api.types.is_numeric_dtype(column):
            continue
        runs = column.astype(str).where(column.notna())
        k = runs.nunique()
        if not 2 <= k < len(frame) / 2:
            continue
        per_run = pd.DataFrame({"run": runs, "N": n.round(-1), "D": d}).dropna().groupby("run")
        curve = (per_run["N"].nunique() == 1) & (per_run["D"].nunique() >= CURVE_MIN_POINTS)
        if curve.mean() >= 0.8 and (best is None or k > best[1]):
            best = (str(col), int(k))
    return best


def curves_note(frame: pd.DataFrame, source: str, consequence: str, also: str = "") -> str | None:
    """A line for a table of learning curves (:func:`curve_column`): which column names the runs,
    ``consequence``, how to take each run's last row, and ``also`` (where ``{column}`` is that
    column); None for a table of runs."""
    found = curve_column(frame)
    if not found:
        return None
    column, runs = found
    return (f"{source}: the rows are points of learning curves (column {column!r} names {runs} runs of "
            f"{len(frame) / runs:.0f} rows on average, each at one N with D growing): {consequence}; take each "
            f"run's last row with --last-per {column}" + also.format(column=column))


def last_rows(frame: pd.DataFrame, column: str, where: str) -> pd.DataFrame:
    """Each run's last point: of the rows sharing a value of ``column`` (one run's learning curve),
    the one of largest ``D`` (``frame`` names its columns as the fits do)."""
    import pandas as pd

    if column not in frame.columns:
        raise LmscaleError(f"{where}: no column {column!r} to take each run's last row by (columns: "
                           f"{', '.join(map(str, frame.columns))})")
    d = pd.to_numeric(frame["D"], errors="coerce")
    return frame.loc[d.groupby(frame[column].astype(str)).idxmax().dropna().sort_values()]


#: What :func:`settings_note` says mixed settings do to a law fitted across them.
MIXED_SETTINGS_FIT = "settings a law of N and D cannot tell apart, so one fitted across them describes none of them"


def settings_note(frame: pd.DataFrame, source: str, consequence: str = MIXED_SETTINGS_FIT) -> str | None:
    """A line for a table that mixes settings (:func:`mixed_settings`): which, ``consequence``,
    and the ``--where`` to pick one."""
    mixed = mixed_settings(frame)
    if not mixed:
        return None
    listed = "; ".join(f"{col} ({', '.join(v)})" for col, v in mixed.items())
    common = frame.groupby(list(mixed), dropna=True).size().idxmax()  # the setting with the most runs
    common = common if isinstance(common, tuple) else (common,)
    pick = ",".join(f"{col}={value}" for col, value in zip(mixed, common))
    return f"{source}: runs at the same N and D differ in {listed}: {consequence}; choose one with --where {pick}"


__all__ = ["COLUMN_ALIASES", "MAX_DOWNLOAD_BYTES", "MAX_SETTING_VALUES", "MIXED_SETTINGS_FIT", "NOT_SETTINGS", "OTHER_SPREADSHEETS",
           "SEPARATORS", "SETTING_LOSS_SPREAD", "WORKBOOKS", "columns_hint", "download", "guess_columns",
           "curve_column", "curves_note", "header_separator", "is_url", "last_rows", "mixed_settings", "parse_fields", "parse_pairs", "parse_where", "read_csv",
           "read_rows", "read_workbook", "select_rows", "settings_note", "split_sheet"]
