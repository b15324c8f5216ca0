"""Tables in, fit-ready points out: reading, column names, derived columns, cleaning.

Column names the fits understand (``FIT_FIELDS``): ``N`` (parameters), ``D``
(tokens), ``C`` (FLOPs), ``C_min``, ``S`` (steps, S_min for ``kaplan_ns``),
``B`` (critical batch, tokens), ``L`` (loss as an input of ``bcrit``), ``t``
(context position), ``L_train`` (training-distribution loss), ``X`` (the input
of ``power_offset``), ``U`` (unique tokens, for repeated data) or ``epochs``,
``loss`` (the output of loss laws), and ``run_id``
(rows sharing it are one run: the bootstrap resamples whole runs).
Other names are mapped with ``columns={"N": "Model Size", ...}``.

Derived columns, always recorded in the notes: ``D = C / (6 N)`` when a law
needs D and only C and N are given ([K] section 2.1, C = 6 N D); ``C = 6 N D``
when a law needs C and only N and D are given; ``D = tokens`` for learning
curves that name the tokens seen so far ``tokens``; ``U = D / epochs`` when
a law needs unique tokens and the table gives epochs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmscale.errors import LmscaleError
from lmscale.laws.forms import LawForm
from lmscale.tables import (
    columns_hint,
    download,
    is_url,
    parse_fields,
    read_rows,
    split_sheet,
)

FIT_FIELDS = ("N", "D", "C", "C_min", "S", "B", "L", "t", "L_train", "X", "U", "epochs", "loss", "run_id")

#: Inputs whose larger values mean a *smaller* model or run (losses).
_LOSS_INPUTS = ("L", "L_train")


def parse_columns(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``'N="Model Size",C="Training FLOP"'`` -> ``{"N": "Model Size", "C": "Training FLOP"}``."""
    return parse_fields(text, "--columns", FIT_FIELDS, 'FIELD=COLUMN, e.g. N="Model Size"')


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` is an SQLite file (a results store); False for a missing file (its reader says so)."""
    if not Path(path).is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(16) == b"SQLite format 3\x00"


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, an Excel sheet (``runs.xlsx``, ``runs.xlsx#SHEET``), a Parquet file, or a
    results store (SQLite: its final points); a local path or an http(s) address."""
    if is_url(path):
        import tempfile

        address = str(path).split("?", 1)[0].split("#", 1)[0]
        with tempfile.TemporaryDirectory(prefix="lmscale-download-") as folder:
            local, sheet = download(str(path), Path(folder))
            if is_sqlite(local):
                raise LmscaleError(f"{address}: a results store; download it and give its path (a store is "
                                   "read with its runs' settings, which an address does not carry)")
            try:
                frame = read_table(f"{local}#{sheet}" if sheet else local)
            except LmscaleError as exc:  # its messages name the address, not the temporary copy
                raise LmscaleError(str(exc).replace(str(local), address)) from None
        frame.attrs["source"] = address + (f"#{sheet}" if sheet else "")
        return frame
    spec = path
    path, sheet = split_sheet(path)
    if not path.exists():
        raise LmscaleError(f"{path}: no such file")
    if path.is_dir():
        raise LmscaleError(f"{path}: is a folder; expected a CSV, Excel, Parquet or store file")
    if is_sqlite(path):
        from lmscale.store import Store

        try:
            with Store(path, create=False) as store:
                return store.final_points()
        except sqlite3.DatabaseError as exc:
            raise LmscaleError(f"{path}: not a readable lmscale store ({exc})") from None
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except (ValueError, OSError) as exc:
            raise LmscaleError(f"{path}: could not read as Parquet ({exc})") from None
    else:
        frame = read_rows(spec)
    frame.attrs["source"] = source_name(path, frame)  # messages about its rows name the file (and sheet)
    return frame


def source_name(path: Path, frame: pd.DataFrame) -> str:
    """How messages name a table: the file, its sheet, and the others where the first was taken."""
    sheet, sheets = frame.attrs.get("sheet"), frame.attrs.get("sheets") or []
    if sheet is None:
        return path.name
    others = "" if len(sheets) < 2 or frame.attrs.get("sheet_given") else \
        f" (the first of its sheets {', '.join(sheets)}; choose one with {path.name}#SHEET)"
    return f"{path.name}#{sheet}{others}"


def rename_columns(frame: pd.DataFrame, columns: Mapping[str, str] | None, where: str = "data") -> pd.DataFrame:
    """Rename the user's columns to lmscale's fields (``{"N": "Model Size"}``)."""
    if not columns:
        return frame
    missing = [col for col in columns.values() if col not in frame.columns]
    if missing:
        raise LmscaleError(
            f"{where}: column(s) {', '.join(map(repr, missing))} not found; columns: "
            f"{', '.join(map(str, frame.columns))}"
        )
    clash = [k for k, col in columns.items() if k in frame.columns and col != k]
    frame = frame.drop(columns=clash)
    return frame.rename(columns={col: key for key, col in columns.items()})


@dataclass
class Points:
    """The rows a law is fitted to, as arrays.

    Attributes:
        X: input name -> values (n,).
        y: the output (loss, or B for ``bcrit``), positive (n,).
        size: the "size" of each row for extrapolation checks: C (given or
            6 N D), else the product of the inputs (losses inverted).
        size_by: what ``size`` is, in words.
        groups: run ids when rows repeat a run (learning curves), else None.
        frame: the kept rows (original index), with derived columns.
        notes: derived columns and dropped rows, in words and counts.
    """

    X: dict[str, np.ndarray]
    y: np.ndarray
    size: np.ndarray
    size_by: str
    groups: np.ndarray | None
    frame: pd.DataFrame
    notes: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> Points:
        """The rows where ``mask`` is true (boolean or integer index)."""
        return Points(
            X={k: v[mask] for k, v in self.X.items()}, y=self.y[mask], size=self.size[mask],
            size_by=self.size_by, groups=None if self.groups is None else self.groups[mask],
            frame=self.frame.iloc[np.flatnonzero(mask) if np.asarray(mask).dtype == bool else mask],
            notes=dict(self.notes),
        )


def derive_columns(frame: pd.DataFrame, needed: tuple[str, ...]) -> tuple[pd.DataFrame, list[str]]:
    """Add D, C (or D from tokens) when a law needs them and they can be computed."""
    derived: list[str] = []
    frame = frame.copy()
    if "D" in needed and "D" not in frame.columns and "tokens" in frame.columns:
        frame["D"] = frame["tokens"]
        derived.append("D = tokens (tokens seen so far)")
    if "D" in needed and "D" not in frame.columns and {"C", "N"} <= set(frame.columns):
        frame["D"] = pd.to_numeric(frame["C"], errors="coerce") / (6.0 * pd.to_numeric(frame["N"], errors="coerce"))
        derived.append("D = C / (6 N) (no D column; C = 6 N D, [K] section 2.1)")
    if "U" in needed and "U" not in frame.columns and {"D", "epochs"} <= set(frame.columns):
        frame["U"] = pd.to_numeric(frame["D"], errors="coerce") / pd.to_numeric(frame["epochs"], errors="coerce")
        derived.append("U = D / epochs (unique tokens from the epochs of data seen)")
    if "C" in needed and "C" not in frame.columns and {"N", "D"} <= set(frame.columns):
        frame["C"] = 6.0 * pd.to_numeric(frame["N"], errors="coerce") * pd.to_numeric(frame["D"], errors="coerce")
        derived.append("C = 6 N D (no C column, [K] section 2.1)")
    return frame, derived


def modal_batch(runs: pd.DataFrame) -> int | None:
    """The batch size (tokens) most of ``runs`` use: a study's reference batch (None: not recorded)."""
    if runs.empty or "batch_tokens" not in runs or not runs["batch_tokens"].notna().any():
        return None
    return int(runs["batch_tokens"].dropna().astype(int).value_counts().index[0])


def at_batch(table: pd.DataFrame, batch: int | None, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows of runs that hold the batch fixed: where the study's runs of one N differ in batch
    size (a batch-size sweep), only those at ``batch``, the reference.

    ``runs``: the study's runs the variation is judged on (default: ``table``
    itself). L(C) at fixed batch, approach 1 and the [H] form use these: the
    batch moves the loss at equal N and D, and the forms have no term for
    it. A study that scales the batch with N (one batch per size) keeps
    every run.
    """
    runs = table if runs is None else runs
    if batch is None or table.empty or not {"batch_tokens", "N"} <= set(table) or "batch_tokens" not in runs:
        return table
    per_n = runs["batch_tokens"].fillna(batch).astype(int).groupby(runs["N"]).nunique()
    varied = table["N"].map(per_n).fillna(1) > 1
    b = table["batch_tokens"].fillna(batch).astype(int)
    return table[~varied | (b == batch)]


def prepare_points(
    frame: pd.DataFrame, form: LawForm, columns: Mapping[str, str] | None = None,
    drop_highest_loss: int = 0, where: str = "data",
) -> Points:
    """Check, derive and clean the columns ``form`` needs; drop bad rows (counted).

    Rows with a missing, NaN, infinite or non-positive value in a needed
    column are dropped and counted in ``notes["dropped_rows"]``; an error is
    raised when none remain or when fewer rows than the law's parameters do.
    ``drop_highest_loss`` then drops that many rows with the highest output
    (as Besiroglu et al. do with the 5 highest Chinchilla losses).
    """
    if not isinstance(frame, pd.DataFrame):
        raise LmscaleError(f"{where}: expected a pandas DataFrame, got {type(frame).__name__}")
    if where == "data" and frame.attrs.get("source"):
        where = str(frame.attrs["source"])
    if not form.fittable:
        raise LmscaleError(f"law {form.name} is derived, not fitted: {form.formula}")
    frame = rename_columns(frame, columns, where)
    needed = (*form.inputs, form.output)
    frame, derived = derive_columns(frame, needed)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        hint = " (or C and N, to derive D = C / (6 N))" if "D" in missing else ""
        raise LmscaleError(
            f"{where}: law {form.name} needs column(s) {', '.join(missing)}{hint}; columns: "
            f"{', '.join(map(str, frame.columns))}; map other names with --columns / columns="
            + columns_hint(frame, missing)
        )
    values = {c: _numbers(frame[c], c, where) for c in needed}
    ok = np.ones(len(frame), dtype=bool)
    bad: dict[str, int] = {}
    for c, v in values.items():
        col_bad = ~(np.isfinite(v) & (v > 0))
        if col_bad.any():
            bad[c] = int(col_bad.sum())
        ok &= ~col_bad
    notes: dict[str, Any] = {"rows_read": int(len(frame))}
    if derived:
        notes["derived"] = derived
    if bad:
        examples = bad_rows(frame, values, ~ok, {d.split(" ")[0] for d in derived})
        count = int((~ok).sum())
        notes["dropped_rows"] = {
            "count": count, "reason": "NaN, infinite or non-positive value", "per_column": bad,
            "rows": examples,
            "message": f"dropped {count} of {len(frame)} rows of {where}: " + describe_rows(examples, count),
        }
    if not ok.any():
        raise LmscaleError(
            f"{where}: no usable rows for law {form.name}: every row has a NaN, infinite or non-positive "
            f"value in {', '.join(bad) or ', '.join(needed)} ({notes['dropped_rows']['message'].split(': ', 1)[1]})"
            if bad else f"{where}: no rows (law {form.name} needs {', '.join(needed)})"
        )
    kept = frame.loc[ok]
    values = {c: v[ok] for c, v in values.items()}
    if drop_highest_loss:
        k = int(drop_highest_loss)
        if k < 0 or k >= len(kept):
            raise LmscaleError(f"drop_highest_loss = {k}: expected 0 <= k < {len(kept)} (the usable rows)")
        order = np.argsort(values[form.output], kind="stable")
        keep = np.sort(order[: len(kept) - k])
        kept = kept.iloc[keep]
        values = {c: v[keep] for c, v in values.items()}
        notes["dropped_highest"] = {"count": k, "column": form.output}
    n_params = len(form.params)
    if len(kept) < n_params:
        raise LmscaleError(
            f"{where}: law {form.name} has {n_params} parameters ({', '.join(form.params)}) but only "
            f"{len(kept)} usable row(s) remain"
        )
    X = {c: values[c] for c in form.inputs}
    size, size_by = _size(kept, X)
    groups = None
    if "run_id" in kept.columns and kept["run_id"].duplicated().any():
        # plain str objects (a missing id is its own run "nan"): pandas may keep missing ids as NA
        groups = np.array([str(v) for v in kept["run_id"]], dtype=object)
        notes["groups"] = f"{len(np.unique(groups))} runs (run_id); the bootstrap resamples whole runs"
    return Points(X=X, y=values[form.output], size=size, size_by=size_by, groups=groups, frame=kept, notes=notes)


#: Bad rows named in a message (the rest are counted).
SHOWN_ROWS = 5


def _numbers(column: pd.Series, name: str, where: str) -> np.ndarray:
    """A column as floats: what is not a number becomes NaN (and is reported by row)."""
    if isinstance(column, pd.DataFrame):  # two columns of the same name
        raise LmscaleError(f"{where}: {column.shape[1]} columns are named {name!r}; rename or drop all but one")
    with np.errstate(all="ignore"):
        numeric = pd.to_numeric(column, errors="coerce")
        try:
            return numeric.to_numpy(dtype=float)
        except (TypeError, ValueError, OverflowError):  # e.g. complex, or ints beyond float
            return np.array([_float(v) for v in numeric], dtype=float)


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")
    return out


def _problem(raw: Any, value: float) -> str:
    if np.isnan(value):
        missing = raw is None or (isinstance(raw, float) and np.isnan(raw)) or raw is pd.NA or raw is pd.NaT
        return "missing" if missing else "not a number"
    if np.isinf(value):
        return "infinite"
    return "not positive"


def bad_rows(frame: pd.DataFrame, values: Mapping[str, np.ndarray], bad: np.ndarray,
             derived: set[str] = frozenset()) -> list[dict[str, Any]]:
    """The first :data:`SHOWN_ROWS` bad rows: row number (1-based, header not counted), column,
    the value as given, and what is wrong with it (every bad column of each row)."""
    out = []
    for i in np.flatnonzero(bad)[:SHOWN_ROWS]:
        for c, v in values.items():
            if np.isfinite(v[i]) and v[i] > 0:
                continue
            raw = frame[c].iloc[i]
            out.append({"row": int(i) + 1, "column": c, "value": _plain(raw),
                        "problem": _problem(raw, v[i]) + (" (derived)" if c in derived else "")})
    return out


def _plain(value: Any) -> Any:
    """A JSON-friendly version of a cell (numpy scalars become Python numbers)."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def describe_rows(rows: list[dict[str, Any]], count: int) -> str:
    """``row 4 (D = 'abc', not a number), row 9 (N = -1, not positive), ... and 3 more``."""
    by_row: dict[int, list[str]] = {}
    for r in rows:
        value = r["value"]
        text = repr(value) if isinstance(value, str) else ("missing" if value is None else f"{value:g}"
                                                            if isinstance(value, float) else str(value))
        what = f"{r['column']} = {text}, {r['problem']}" if r["problem"] != "missing" else f"{r['column']} missing"
        by_row.setdefault(r["row"], []).append(what)
    parts = [f"row {row} ({'; '.join(whats)})" for row, whats in by_row.items()]
    more = count - len(by_row)
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def _size(frame: pd.DataFrame, X: Mapping[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """Row size for extrapolation checks: C, else the product of the inputs."""
    if "C" in frame.columns:
        c = pd.to_numeric(frame["C"], errors="coerce").to_numpy(dtype=float)
        if np.all(np.isfinite(c) & (c > 0)):
            return c, "compute C"
    if {"N", "D"} <= set(frame.columns):
        n = pd.to_numeric(frame["N"], errors="coerce").to_numpy(dtype=float)
        d = pd.to_numeric(frame["D"], errors="coerce").to_numpy(dtype=float)
        if np.all(np.isfinite(n * d) & (n * d > 0)):
            return 6.0 * n * d, "compute 6 N D"
    size = np.ones(len(frame))
    names = []
    for name, v in X.items():
        size = size * (1.0 / v if name in _LOSS_INPUTS else v)
        names.append(f"1/{name}" if name in _LOSS_INPUTS else name)
    return size, " * ".join(names)
