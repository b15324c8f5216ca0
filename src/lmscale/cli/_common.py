"""Helpers shared by the sub-commands: JSON output and help formatting."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the layout of descriptions and shows defaults that say something.

    An option whose help already names its default, or whose default is
    None, False or empty (a flag off, a value chosen at run time), gets no
    "(default: ...)" of argparse's.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or action.default == []:
            return text
        return super()._get_help_string(action) or text


def add_parser(sub: Any, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """Add a sub-command parser with lmscale's formatter."""
    return sub.add_parser(name, help=help, description=description, formatter_class=HelpFormatter)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _jsonable(value.item())
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return value


def print_json(data: Any) -> None:
    """Print data as JSON (NaN -> null, numpy -> Python) on stdout."""
    json.dump(_jsonable(data), sys.stdout, indent=2)
    sys.stdout.write("\n")


WHERE_HELP = ("keep only the rows whose columns hold these values, e.g. dataset=rw,hparams=tuned "
              "(a table of several settings: a law of N and D fitted across them describes none); "
              "quote a value that holds a comma: run=\"a,b\"")


LAST_PER_HELP = ("the table holds learning curves, one run per value of COLUMN: take each run's last row "
                 "(largest D) as its final point; without it, such a table gets a note")


def runs_table(path: Any, columns: dict[str, str], where: str | None, last_per: str | None = None) -> Any:
    """The runs table at ``path`` (CSV, Excel sheet, Parquet or store) with ``--where`` applied, and
    with ``--last-per`` each run's last row only (:func:`lmscale.tables.last_rows`); a table whose
    runs at one N and D differ in a setting that moves the loss, or whose rows are points of
    learning curves, gets a line in ``attrs["notes"]`` (a forecast and ``next`` carry it into
    their text and JSON; :func:`print_notes` prints it)."""
    from pathlib import Path

    from lmscale.errors import LmscaleError
    from lmscale.laws.io import derive_columns, is_sqlite, read_table, rename_columns
    from lmscale.tables import curves_note, last_rows, parse_where, select_rows, settings_note

    frame = select_rows(read_table(path), parse_where(where), str(path))
    if is_sqlite(Path(path)):  # a store's runs are one study's; its sweeps are handled where it is read
        if last_per is not None:
            raise LmscaleError(f"{path}: --last-per takes a table's learning curves; a store's runs are runs")
        return frame
    try:
        named, _ = derive_columns(rename_columns(frame, columns, str(path)), ("N", "D"))
    except LmscaleError:  # the fit itself says what is wrong with the columns
        if last_per is not None:
            raise
        return frame
    if last_per is not None:
        keep = last_rows(named, last_per, str(path)).index
        frame, named = frame.loc[keep], named.loc[keep]
    notes = [settings_note(named, str(path)),
             curves_note(named, str(path), "every checkpoint is fitted as a run's final loss, losses "
                                          "mid-schedule included")]
    frame.attrs["notes"] = list(frame.attrs.get("notes", [])) + [n for n in notes if n]  # a workbook's own
    return frame


def print_notes(frame: Any) -> None:
    """The notes a table carries (:func:`runs_table`), on stderr."""
    for note in getattr(frame, "attrs", {}).get("notes", []):
        print(f"note: {note}", file=sys.stderr)
