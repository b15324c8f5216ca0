"""Runs from a CSV file: one row per curve point (a ``run`` column names the run) or one per run.

Every numeric column is a metric over the rows of its run, indexed by the
``step`` column (MAP ``step``, else a column named ``step`` or ``_step``,
else the row's position in the run); a column that is constant within a run
is also a ``param`` of it.
"""

from __future__ import annotations

from pathlib import Path

from lmscale.errors import LmscaleError
from lmscale.importers.mapping import ImportMap
from lmscale.importers.source import SourceRun


def read(source: str | Path, m: ImportMap) -> tuple[str, str, list[SourceRun]]:
    """``(uri, default group, runs)`` of a CSV file."""
    import pandas as pd

    from lmscale.tables import read_rows, split_sheet

    path, sheet = split_sheet(source)
    if not path.is_file():
        raise LmscaleError(f"{path}: no such CSV file")
    frame = read_rows(source)  # a CSV (separator from its header) or an Excel sheet
    if frame.empty:
        raise LmscaleError(f"{path}: no data rows")
    columns = [str(c) for c in frame.columns]
    if m.run is not None and m.run not in columns:
        raise LmscaleError(f"{m.where}: run = {m.run!r}: {path} has no such column; columns: {', '.join(columns)}")
    step_col = m.step or next((c for c in ("step", "_step") if c in columns), None)
    if step_col is not None and step_col not in columns:
        raise LmscaleError(f"{m.where}: step = {step_col!r}: {path} has no such column; columns: "
                           f"{', '.join(columns)}")
    numeric = {c: pd.to_numeric(frame[c], errors="coerce") for c in columns}
    if m.run is None:
        groups = [(f"row {i + 1}", frame.iloc[[i]]) for i in range(len(frame))]
    else:
        groups = [(str(name), part) for name, part in frame.groupby(m.run, sort=False, dropna=False)]
    uri = str(path.resolve()) + (f"#{sheet}" if sheet else "")
    runs = []
    for name, part in groups:
        if step_col is not None:
            steps = numeric[step_col].loc[part.index]
            if steps.isna().any():
                bad = int(steps.index[steps.isna()][0])
                raise LmscaleError(f"{path}: row {bad + 1} (line {bad + 2}), column {step_col!r} (the step) = "
                                   f"{frame.at[bad, step_col]!r}: expected a number")
            steps = steps.tolist()
        else:
            steps = list(range(len(part)))
        series = {}
        for col in columns:
            values = numeric[col].loc[part.index]
            if values.notna().any():
                series[col] = [(s, v) for s, v in zip(steps, values.tolist()) if v == v]
        params = {c: part[c].iloc[0] for c in columns}
        varying = {c for c in columns if part[c].nunique(dropna=False) > 1}
        runs.append(SourceRun(run_id=name, name=name, params=params, series=series, status="finished",
                              key=f"{uri}\0{name}", varying=varying, metric_names=set(columns)))
    return uri, path.stem, runs
