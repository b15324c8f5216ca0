"""Export a store to CSV/Parquet; import another lab's results (N, D, loss) into one.

Imported rows become runs with ``source = "imported:<file name>"`` and
status ``finished``, so the fits read them through the same
``Store.final_points()`` as trained runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmscale.errors import LmscaleError
from lmscale.files import atomic_path
from lmscale.store.store import Store
from lmscale.tables import (
    columns_hint,
    curves_note,
    last_rows,
    parse_fields,
    select_rows,
    settings_note,
)

if TYPE_CHECKING:
    import pandas as pd

#: Tables written by :func:`export`, each a read method of :class:`Store`.
EXPORT_TABLES = (
    "runs", "final_points", "curves", "distribution_losses",
    "final_distribution_losses", "per_position", "noise_scale",
)
FORMATS = ("csv", "parquet")

#: Fields an imported CSV can provide; ``N`` and ``loss`` and one of ``D``/``C`` are required.
IMPORT_FIELDS = ("N", "D", "C", "loss")


def _write_atomic(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    with atomic_path(path) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)


def export(store: Store | str | Path, out: str | Path, fmt: str = "csv") -> list[Path]:
    """Write every table of the store to ``out/<table>.<fmt>``; returns the paths."""
    if fmt not in FORMATS:
        raise LmscaleError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    st = store if isinstance(store, Store) else Store(store, create=False)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LmscaleError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table in EXPORT_TABLES:
        path = out / f"{table}.{fmt}"
        _write_atomic(getattr(st, table)(), path, fmt)
        written.append(path)
    return written


def parse_columns(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``'N="Model Size",C="Training FLOP"'`` -> ``{"N": "Model Size", "C": "Training FLOP"}`` (quotes as
    ``lmscale fit --columns`` takes them)."""
    return parse_fields(text, "--columns", IMPORT_FIELDS, f"FIELD=COLUMN (fields: {', '.join(IMPORT_FIELDS)})")


def _resolve_columns(frame: pd.DataFrame, columns: Mapping[str, str], where: str) -> dict[str, str]:
    lower = {str(c).lower(): str(c) for c in frame.columns}
    resolved: dict[str, str] = {}
    for key in IMPORT_FIELDS:
        if key in columns:
            col = columns[key]
            if col not in frame.columns:
                raise LmscaleError(
                    f"{where}: column {col!r} (mapped to {key}) not found; columns: {', '.join(map(str, frame.columns))}"
                )
            resolved[key] = col
        elif key.lower() in lower:
            resolved[key] = lower[key.lower()]
    missing = [k for k in ("N", "loss") if k not in resolved]
    if missing or not ({"D", "C"} & set(resolved)):
        need = missing + ([] if {"D", "C"} & set(resolved) else ["D or C"])
        raise LmscaleError(
            f"{where}: missing column(s) for {', '.join(need)}; map them with --columns "
            f"N=...,D=...,C=...,loss=... (columns: {', '.join(map(str, frame.columns))})"
            + columns_hint(frame, [k for k in ("N", "D", "loss") if k not in resolved])
        )
    return resolved


def _named(frame: pd.DataFrame, cols: Mapping[str, str], values: list[dict[str, float]]) -> pd.DataFrame:
    """``frame``'s other columns beside each row's parsed N, D and loss, named as the fits name them."""
    named = frame.drop(columns=list(cols.values())).rename(columns=lambda c: f"{c} (column)" if c in IMPORT_FIELDS else c)
    return named.assign(**{key: [v[key] for v in values] for key in ("N", "D", "loss")})


def _refuse_curves_and_mixed_settings(named: pd.DataFrame, where: str) -> None:
    """Refuse rows that are points of learning curves (:func:`lmscale.tables.curve_column`), each of
    which a store of final points would take for a finished run; and rows whose text columns are
    settings (:func:`lmscale.tables.settings_note`)."""
    curves = curves_note(named, where, "a store of final points would take every checkpoint for a finished "
                                       "run, and its loss mid-schedule for a final loss",
                         "; or import the curves themselves with 'lmscale import csv FILE --store STORE --map "
                         "MAP.toml' (run = \"{column}\")")
    if curves:
        raise LmscaleError(curves)
    note = settings_note(named, where, "settings that a store of N, D and loss could not tell apart once imported")
    if note:
        raise LmscaleError(f"{note} (or import each setting into a --group of its own)")


def import_csv(
    store: Store | str | Path,
    csv_path: str | Path,
    columns: Mapping[str, str] | None = None,
    *,
    group: str | None = None,
    rule: str = "plain",
    study: str | None = None,
    where: Mapping[str, str] | None = None,
    last_per: str | None = None,
) -> int:
    """Import rows of N, D (or C, then D = C / 6N), loss from a CSV; returns the row count.

    ``columns`` maps the fields ``N``, ``D``, ``C``, ``loss`` to the CSV's
    column names (default: columns named so, any case); ``where`` keeps the
    rows whose columns hold the given values (``{"dataset": "rw"}``). Every
    value must be a positive finite number; an error names the row and
    column. A table whose runs at one N and D differ in loss by a text
    column (a data set, a schedule: :func:`lmscale.tables.mixed_settings`)
    is refused: the store keeps N, D and loss, and the settings could not be
    told apart once imported; so is a table of learning curves (a column
    naming runs, each at one N with D growing), unless ``last_per`` names
    that column: then each run's row of largest D is imported. Re-importing
    the same file replaces its rows (ids hash the file name and row).
    """
    from lmscale.tables import read_rows, split_sheet

    path, sheet = split_sheet(csv_path)
    if not path.is_file():
        raise LmscaleError(f"{path}: no such CSV file")
    name = path.name + (f"#{sheet}" if sheet else "")
    frame = read_rows(csv_path)  # a CSV, or an Excel sheet (FILE.xlsx#SHEET)
    if frame.empty:
        raise LmscaleError(f"{path}: no data rows")
    frame = select_rows(frame.reset_index(drop=True), where or {}, str(path))  # rows keep their place in the file
    cols = _resolve_columns(frame, columns or {}, str(path))
    group = group or path.stem
    parsed: list[dict[str, float]] = []
    for i, raw in zip(frame.index, frame.to_dict("records")):
        values: dict[str, float] = {}
        for key, col in cols.items():
            value = raw[col]
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not (math.isfinite(number) and number > 0):
                raise LmscaleError(
                    f"{path}: row {i + 1} (line {i + 2}), column {col!r} ({key}) = {value!r}: "
                    "expected a positive finite number"
                )
            values[key] = number
        if "D" not in values:
            values["D"] = values["C"] / (6.0 * values["N"])
        parsed.append(values)
    named = _named(frame, cols, parsed)
    if last_per is not None:
        keep = last_rows(named, last_per, str(path)).index
        kept = set(keep)
        parsed = [values for i, values in zip(frame.index, parsed) if i in kept]
        frame, named = frame.loc[keep], named.loc[keep]
    _refuse_curves_and_mixed_settings(named, str(path))
    rows: list[tuple[str, dict[str, Any]]] = []
    for i, values in zip(frame.index, parsed):
        spec = {"imported_from": name, "row": i + 1, **values}
        run_id = "imp-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
        rows.append((run_id, {
            "study": study, "grp": group, "rule": rule, "status": "finished",
            "source": f"imported:{name}", "spec_json": json.dumps(spec, sort_keys=True),
            "non_embedding_params": int(round(values["N"])), "tokens": int(round(values["D"])),
            "budget_flops": values.get("C"), "final_loss": values["loss"],
        }))
    st = store if isinstance(store, Store) else Store(store)
    return st.insert_rows(rows)
