"""``lmscale fit``: fit a scaling law to a table of runs, with bootstrap intervals."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lmscale.cli._common import (
    LAST_PER_HELP,
    WHERE_HELP,
    add_parser,
    print_json,
    print_notes,
    runs_table,
)
from lmscale.errors import LmscaleError

DESCRIPTION = """\
Fit a scaling law to a table of runs: minimise the Huber loss (delta 1e-3)
of log-residuals by L-BFGS from a grid of starts, the way Hoffmann et al.
2022 fit L = E + A/N^alpha + B/D^beta ([H] eq. 2, appendix D.2), with
bootstrap percentile intervals and goodness of fit (RMSE and R^2 of log loss).

INPUT is a CSV (comma, semicolon or tab separated, the separator read from
the header; decimal commas in a semicolon table are read as numbers), an
Excel sheet (runs.xlsx, its first sheet, or runs.xlsx#SHEET; pip install
'lmscale[excel]'), a Parquet file, or a results store (SQLite; its final
points); a table may also be an http(s) address, fetched first. Columns: N
(parameters), D (tokens), C (FLOPs), loss, and S, B, L, t, L_train, X where
a law needs them; rows sharing a run_id are one run (the bootstrap resamples
whole runs). When only C and N are given, D = C / (6 N), and the output says
so. Rows with missing, NaN or non-positive values are dropped, and the
output names them (rows numbered from 1, the header not counted) and the bad
columns.

Laws: kaplan_n L(N) [K] 1.1, kaplan_d L(D) 1.2, kaplan_c L(C) fixed batch,
kaplan_cmin L(C_min) 1.3, kaplan_nd L(N,D) 1.5, kaplan_ns L(N,S_min) 1.6,
bcrit B_crit(L) 1.4, chinchilla [H] eq. 2, chinchilla_tied [H] eq. 2 with
alpha = beta (Gadre et al. 2024), data_constrained L(N, D, U) (Muennighoff et
al. 2023; columns U or epochs), power_offset E + (X_0/X)^alpha, position
L(t), transfer L_other = slope L_train + offset.

Examples:
  # the Chinchilla fit on Epoch AI's digitised points (Besiroglu et al. 2024)
  lmscale fit svg_extracted_data.csv --law chinchilla \\
      --columns N="Model Size",C="Training FLOP" --drop-highest-loss 5 --bootstrap 1000
  # which law extrapolates best from the smaller runs to the largest 20%?
  lmscale fit runs.csv --select extrapolation --holdout 0.2 --json
  # L(N) from a results store, saved for the planner
  lmscale fit study.sqlite --law kaplan_n --out fit.json
  # audit every candidate L(N, D) on rolling cuts through the model sizes;
  # save the chosen forecast (with 200 bootstrap draws) for predict and plan
  lmscale fit runs.csv --audit --bootstrap 200 --out forecast.json

--audit: for every candidate the columns support (chinchilla, chinchilla_tied
(alpha = beta, Gadre et al. 2024), kaplan_nd, data_constrained when runs
repeat data, each with the fitting variants huber, huber_1e-2, linear,
e_bound, compute_weighted), cut k = 1..K fits the runs below the k-th
largest model size and scores the larger ones: mean and worst relative
error per cut. The forecast uses the lowest validated error, the simplest
candidate on ties (within 10%), and says which and why.
"""


def register(sub: Any) -> None:
    p = add_parser(sub, "fit", help="fit a scaling law (Huber, L-BFGS, bootstrap)", description=DESCRIPTION)
    p.add_argument("input", metavar="INPUT", help="CSV, Parquet, or a results store (SQLite)")
    p.add_argument("--law", default=None,
                   help="law form to fit (see the list above; default chinchilla); with --audit: force one")
    p.add_argument("--bootstrap", type=int, default=0, metavar="K",
                   help="bootstrap replicates for 95%% percentile intervals (0: none)")
    p.add_argument("--huber-delta", type=float, default=1e-3, metavar="X",
                   help="Huber threshold on log-residuals")
    p.add_argument("--reduction", choices=("sum", "mean"), default="sum",
                   help="sum ([H]) or mean of the per-point losses; same optimum")
    p.add_argument("--select", choices=("extrapolation",), default=None,
                   help="choose the law and variant that best predicts the largest runs")
    p.add_argument("--holdout", type=float, default=None, metavar="K",
                   help="also fit all but the K largest runs (by compute; K < 1: a fraction) and "
                        "report the relative error on them (default with --select: 0.2)")
    p.add_argument("--audit", action="store_true",
                   help="validate every candidate L(N, D) on rolling cuts by model size and forecast with the best")
    p.add_argument("--cuts", type=int, default=None, metavar="K",
                   help="with --audit: number of cuts (default: up to 3, leaving 3 model sizes to fit on)")
    p.add_argument("--by", choices=("N", "C"), default=None,
                   help="with --audit: cut by model size N, or by compute C (default: N, or C where the runs "
                        "form an IsoFLOP design, 3 or more compute budgets of 3 or more sizes each)")
    p.add_argument("--where", default=None, metavar="COL=VALUE,...", help=WHERE_HELP)
    p.add_argument("--last-per", default=None, metavar="COLUMN", help=LAST_PER_HELP)
    p.add_argument("--every-run", action="store_true",
                   help="with --audit on a store: keep batch-sweep runs and runs that repeat their data "
                        "(left out by default: the laws have no term for either)")
    p.add_argument("--columns", default=None, metavar="MAP",
                   help='map your column names, e.g. N="Model Size",C="Training FLOP"')
    p.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                   help="drop the K rows with the highest loss first")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--jobs", type=int, default=None, metavar="J", help="bootstrap worker threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print the fit as JSON")
    p.add_argument("--out", default=None, metavar="FIT.json", help="write the fit as JSON to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmscale.laws.api import fit
    from lmscale.laws.io import is_sqlite, parse_columns

    if args.bootstrap < 0:
        raise LmscaleError(f"--bootstrap {args.bootstrap}: expected 0 or more replicates")
    columns = parse_columns(args.columns)
    frame = runs_table(args.input, columns, args.where, args.last_per)
    if args.audit:
        if is_sqlite(Path(args.input)):  # a store: D = tokens trained, U = unique tokens where data repeats
            from lmscale.laws.forecast import store_runs

            frame = store_runs(frame, every_run=args.every_run)
        return run_audit(args, frame, columns)
    if args.cuts is not None or args.by is not None or args.every_run:
        raise LmscaleError("--cuts, --by and --every-run go with --audit")
    print_notes(frame)
    result = fit(
        frame, law=args.law or "chinchilla", huber_delta=args.huber_delta, reduction=args.reduction,
        bootstrap=args.bootstrap, seed=args.seed, columns=columns,
        drop_highest_loss=args.drop_highest_loss, holdout=args.holdout, select=args.select,
        n_jobs=args.jobs, progress=args.bootstrap > 0 and sys.stderr.isatty(),
    )
    result.notes["input"] = str(args.input)
    if args.out:
        result.to_json(args.out, include_bootstrap=True)
    if args.json:
        print_json(result.to_dict())
        return 0
    print(result.summary())
    for line in result.notes.get("derived", []):
        print(f"derived: {line}")
    dropped = result.notes.get("dropped_rows")
    if dropped:
        print(dropped["message"])
    small = result.notes.get("dropped_smallest")
    if small:
        print(f"left out the {small['rows']} smallest row(s) ({small['fraction']:.0%} of runs by {small['by']})")
    extra = result.stats.get("extrapolation")
    if extra:
        print(f"extrapolation: fit on {extra['train_rows']} rows, predicted the {extra['held_out_rows']} "
              f"largest ({extra['by']} >= {extra['threshold']:.3g}): mean |error| "
              f"{extra['mean_abs_rel_error']:.2%}, max {extra['max_abs_rel_error']:.2%}")
    sel = result.stats.get("selection")
    if sel:
        chosen = sel["chosen"]
        print(f"selected {chosen['law']} (huber_delta={chosen['huber_delta']:g}, drop_smallest="
              f"{chosen['drop_smallest']:g}): held-out error {sel['error']:.2%}")
        for row in sel["candidates"][:8]:
            print(f"  {row['law']:<14} delta={row['huber_delta']:<7g} drop={row['drop_smallest']:<5g} "
                  f"error {row['error']:.2%}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def run_audit(args: argparse.Namespace, frame: Any, columns: dict[str, str]) -> int:
    """``--audit``: every candidate at every cut, the choice, and the forecast refitted with bootstrap."""
    from lmscale.laws.fitting import FitOptions
    from lmscale.laws.forecast import forecast
    from lmscale.laws.validation import audit_text

    if args.select or args.holdout is not None:
        raise LmscaleError("--audit replaces --select and --holdout (it validates on rolling cuts)")
    options = FitOptions(huber_delta=args.huber_delta, reduction=args.reduction)
    fc = forecast(frame, law=args.law, cuts=args.cuts, by=args.by, bootstrap=args.bootstrap, seed=args.seed,
                  columns=columns, drop_highest_loss=args.drop_highest_loss, options=options, n_jobs=args.jobs,
                  progress=args.bootstrap > 0 and sys.stderr.isatty())
    fc.notes["input"] = str(args.input)
    if args.out:
        fc.to_json(args.out)
    if args.json:
        print_json(fc.to_dict())
        return 0
    print(audit_text(fc.audit))
    print()
    print(fc.summary())
    if not fc.has_draws:
        print("no bootstrap draws (--bootstrap 0): predict and plan cannot give intervals from this forecast")
    if args.out:
        print(f"wrote {args.out}")
    return 0
