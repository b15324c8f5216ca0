"""``lmscale predict``: the loss of runs not yet trained, with calibrated 80% and 95% intervals."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lmscale.cli._common import LAST_PER_HELP, WHERE_HELP, add_parser, print_json, runs_table
from lmscale.errors import LmscaleError

DESCRIPTION = """\
Forecast the loss of runs before anyone pays for them.

RUNS is a table of finished runs (CSV, Excel sheet, Parquet or a results
store) with N, D (or C) and loss (and U or epochs when runs repeat data), or
a forecast saved with --save (or 'lmscale fit --audit --out'). From a table
the forecast is made here: every candidate law the columns support (the [H]
form with free and with tied exponents, [K]'s L(N, D), the data-constrained
form), each with its fitting variants, is fitted below rolling cuts through
the model sizes (or the compute budgets, where POINTS lie further beyond the
runs in compute than in size) and scored on the larger runs; the one with
the lowest validated error (the simplest on ties) is refitted on all runs
with bootstrap draws. The intervals combine those draws with the
extrapolation error measured on the cuts, growing with the distance beyond
the data.

From a results store the forecast is of single-pass runs at one batch
size: the runs of a batch-size sweep off the batch most runs use, and runs
that repeat their data, are left out (the laws have no term for either) and
a note says how many; --every-run keeps them (repeated data as U).

POINTS is a CSV (or Excel sheet, or Parquet) with columns N and D (or C, and
D = C / (6 N)), or inline: 'N=7e10,D=1.4e12;N=1e9,D=2e10'. Output, one row
per point: N, D, loss, lo80, hi80, lo95, hi95 (nats/token). A warning
follows where the chosen law's refit on all runs did not converge or its
parameters are not identified by the runs (the predictions and their
intervals stand; the parameters then mean little), and for points beyond the
distances the cuts measured.

Examples:
  lmscale predict runs.csv --at "N=3.2e9,D=6.3e10"
  lmscale predict study.sqlite --at big_runs.csv --json
  lmscale predict runs.csv --at points.csv --law chinchilla_tied --save forecast.json
  lmscale predict forecast.json --at points.csv --out predictions.csv
  lmscale plan --compute 1e22 --law forecast.json     # a plan with error bars
"""


def register(sub: Any) -> None:
    p = add_parser(sub, "predict", "forecast the loss of new runs, with 80%%/95%% intervals", DESCRIPTION)
    p.add_argument("runs", metavar="RUNS",
                   help="CSV, Excel sheet (FILE.xlsx#SHEET), Parquet, results store, or a saved forecast (JSON)")
    p.add_argument("--at", required=True, metavar="POINTS",
                   help="CSV/Excel/Parquet with N and D (or C), or inline 'N=...,D=...;N=...,D=...'")
    p.add_argument("--law", default=None, metavar="NAME",
                   help="force one candidate (e.g. chinchilla, chinchilla_tied, kaplan_nd, chinchilla+linear); "
                        "default: the validated choice")
    p.add_argument("--bootstrap", type=int, default=200, metavar="K", help="bootstrap replicates of the final fit")
    p.add_argument("--cuts", type=int, default=None, metavar="K",
                   help="validation cuts (default: up to 3, leaving 3 model sizes to fit on)")
    p.add_argument("--by", choices=("N", "C"), default=None,
                   help="cut by model size N or compute C (default: C where the points lie further beyond the "
                   "runs in compute than in size, else N)")
    p.add_argument("--columns", default=None, metavar="MAP", help='map your column names, e.g. N="Model Size"')
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of the predictive draws")
    p.add_argument("--jobs", type=int, default=None, metavar="J", help="bootstrap worker threads")
    p.add_argument("--save", default=None, metavar="FORECAST.json", help="write the forecast (for plan/predict)")
    p.add_argument("--out", default=None, metavar="PRED.csv", help="write the predictions as CSV")
    p.add_argument("--where", default=None, metavar="COL=VALUE,...", help=WHERE_HELP)
    p.add_argument("--last-per", default=None, metavar="COLUMN", help=LAST_PER_HELP)
    p.add_argument("--every-run", action="store_true",
                   help="from a store: keep batch-sweep runs and runs that repeat their data")
    p.add_argument("--json", action="store_true",
                   help="print {law, reason, cuts_by, predictions, validation, fit_warnings, notes} as JSON")
    p.set_defaults(func=run)


def read_points(spec: str):
    """POINTS as a DataFrame: a CSV/Parquet file, or inline ``N=..,D=..;N=..,D=..``."""
    import pandas as pd

    from lmscale.laws.io import read_table
    from lmscale.tables import is_url

    path = Path(spec)
    if is_url(spec) or path.exists() or "=" not in spec:  # an address may hold '=' in its query
        frame = read_table(spec)
        if frame.empty:
            raise LmscaleError(f"--at {spec}: no rows")
        return frame, str(path)
    rows = []
    for i, part in enumerate(p for p in spec.split(";") if p.strip()):
        row = {}
        for item in part.split(","):
            key, eq, value = item.partition("=")
            if not eq or key.strip() not in ("N", "D", "C", "U"):
                raise LmscaleError(f"--at point {i + 1}: {item.strip()!r}: expected N=..., D=... (or C=..., U=...)")
            try:
                row[key.strip()] = float(value)
            except ValueError:
                raise LmscaleError(f"--at point {i + 1}: {key.strip()} = {value.strip()!r} is not a number") from None
        rows.append(row)
    return pd.DataFrame(rows), "--at"


def load_or_fit(args: argparse.Namespace, at=None):
    """The forecast: read from a saved JSON, or made from the runs table (cut by compute where the
    points ``at`` lie further beyond the runs in compute than in size, unless --by says)."""
    from lmscale.laws.forecast import Forecast, forecast, store_runs
    from lmscale.laws.io import is_sqlite, parse_columns

    path = Path(args.runs)
    if path.suffix.lower() == ".json":
        if args.law or args.every_run or args.where:
            flag = f"--law {args.law}" if args.law else ("--every-run" if args.every_run else "--where")
            raise LmscaleError(f"{flag}: {path} is a saved forecast; its law and runs are fixed "
                               "(forecast again from the runs table)")
        return Forecast.from_json(path)
    if args.bootstrap < 0:
        raise LmscaleError(f"--bootstrap {args.bootstrap}: expected 0 or more replicates")
    frame = runs_table(args.runs, parse_columns(args.columns), args.where, args.last_per)
    if is_sqlite(path):  # a store: D = tokens trained, U = unique tokens where data repeats
        frame = store_runs(frame, every_run=args.every_run)
    return forecast(frame, law=args.law, cuts=args.cuts, by=args.by, bootstrap=args.bootstrap, seed=args.seed,
                    at=at, columns=parse_columns(args.columns), n_jobs=args.jobs,
                    progress=args.bootstrap > 0 and sys.stderr.isatty())


def run(args: argparse.Namespace) -> int:
    from lmscale.laws.forecast import points_frame

    points, where = read_points(args.at)
    try:
        points_frame(points)  # bad points fail before any fitting
    except LmscaleError as exc:
        raise LmscaleError(f"{where}: {exc}") from None
    fc = load_or_fit(args, points)
    try:
        table = fc.table(points, seed=args.seed)
    except LmscaleError as exc:
        raise LmscaleError(f"{where}: {exc}") from None
    cols = ["N", "D", "loss", "lo80", "hi80", "lo95", "hi95"]
    if args.save:
        fc.to_json(args.save)
    if args.out:
        _write_csv(table[cols], Path(args.out))
    skipped = dict(fc.audit.get("skipped") or {})
    unused = unused_point_columns(fc, points)
    if args.json:
        print_json({"law": fc.law, "reason": fc.reason, "cuts_by": fc.data.get("by"),
                    "predictions": table[cols].to_dict(orient="records"),
                    "validation": fc.validation, "fit_warnings": fc.warnings + unused,
                    "not_candidates": skipped, "notes": list(fc.notes.get("runs", []))})
        return 0
    print(f"forecast: {fc.law}: {fc.reason}")
    for line in fc.notes.get("runs", []):
        print(f"note: {line}")
    for name, why in skipped.items():
        if "perhaps --columns" in why:  # the table seems to hold what it needs (all of them: --json)
            print(f"not a candidate: {name}: {why}")
    print(" ".join(f"{c:>11}" for c in cols))
    for _, row in table.iterrows():
        print(" ".join(f"{row[c]:>11.4g}" if c in ("N", "D") else f"{row[c]:>11.4f}" for c in cols))
    e = fc.error
    print(f"intervals: {fc.fit.stats.get('n_bootstrap', 0)} bootstrap draws of {fc.law} plus the extrapolation "
          f"error measured on {e.n_cuts} cut(s): s(d) = sqrt({e.s0:.4f}^2 + ({e.k:.4f} d)^2) in log loss")
    for line in [*fc.warnings, *unused, *far_warnings(table, e.max_distance)]:
        print(f"warning: {line}")
    if args.save:
        print(f"wrote {args.save}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def unused_point_columns(fc, points) -> list[str]:
    """A line for each of the points' U and epochs columns that no law of the forecast takes (the
    repetition they describe is then ignored)."""
    taken = {name for _, fit in fc.members.values() for name in fit.form.inputs}
    return [f"the points give {col}, which {fc.law} does not take: ignored (the data-constrained form "
            "takes U, and needs it in the runs too: --columns U=... where the table names it otherwise)"
            for col in ("U", "epochs") if col in points.columns and "U" not in taken]


def far_warnings(table, seen: float) -> list[str]:
    """A line per point beyond the distances the validation cuts measured."""
    out = []
    for i, d in enumerate(table["distance_decades"]):
        if d > max(seen, 0.0) + 1e-9:
            out.append(f"point {i + 1} lies {d:.2f} decades beyond the fitted data; the cuts measured errors "
                       f"up to {max(seen, 0.0):.2f} decades out, so its interval extrapolates the error too")
    return out


def _write_csv(frame, path: Path) -> None:
    from lmscale.files import atomic_path

    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
