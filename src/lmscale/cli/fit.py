"""``lmscale fit``: fit a scaling law to a table of runs, with bootstrap intervals."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lmscale.cli._common import add_parser, print_json
from lmscale.errors import LmscaleError

DESCRIPTION = """\
Fit a scaling law to a table of runs: minimise the Huber loss (delta 1e-3)
of log-residuals by L-BFGS from a grid of starts, the way Hoffmann et al.
2022 fit L = E + A/N^alpha + B/D^beta ([H] eq. 2, appendix D.2), with
bootstrap percentile intervals and goodness of fit (RMSE and R^2 of log loss).

INPUT is a CSV or Parquet file, or a results store (SQLite; its final
points). Columns: N (parameters), D (tokens), C (FLOPs), loss, and S, B, L,
t, L_train, X where a law needs them; rows sharing a run_id are one run
(the bootstrap resamples whole runs). When only C and N are given,
D = C / (6 N), and the output says so. Rows with missing, NaN or
non-positive values are dropped, and the output names them (rows numbered
from 1, the header not counted) and the bad columns.

Laws: kaplan_n L(N) [K] 1.1, kaplan_d L(D) 1.2, kaplan_c L(C) fixed batch,
kaplan_cmin L(C_min) 1.3, kaplan_nd L(N,D) 1.5, kaplan_ns L(N,S_min) 1.6,
bcrit B_crit(L) 1.4, chinchilla [H] eq. 2, power_offset E + (X_0/X)^alpha,
position L(t), transfer L_other = slope L_train + offset.

Examples:
  # the Chinchilla fit on Epoch AI's digitised points (Besiroglu et al. 2024)
  lmscale fit svg_extracted_data.csv --law chinchilla \\
      --columns N="Model Size",C="Training FLOP" --drop-highest-loss 5 --bootstrap 1000
  # which law extrapolates best from the smaller runs to the largest 20%?
  lmscale fit runs.csv --select extrapolation --holdout 0.2 --json
  # L(N) from a results store, saved for the planner
  lmscale fit study.sqlite --law kaplan_n --out fit.json
"""


def register(sub: Any) -> None:
    p = add_parser(sub, "fit", help="fit a scaling law (Huber, L-BFGS, bootstrap)", description=DESCRIPTION)
    p.add_argument("input", metavar="INPUT", help="CSV, Parquet, or a results store (SQLite)")
    p.add_argument("--law", default="chinchilla", help="law form to fit (see the list above)")
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
    from lmscale.laws.io import parse_columns, read_table

    if args.bootstrap < 0:
        raise LmscaleError(f"--bootstrap {args.bootstrap}: expected 0 or more replicates")
    columns = parse_columns(args.columns)
    frame = read_table(args.input)
    result = fit(
        frame, law=args.law, huber_delta=args.huber_delta, reduction=args.reduction,
        bootstrap=args.bootstrap, seed=args.seed, columns=columns,
        drop_highest_loss=args.drop_highest_loss, holdout=args.holdout, select=args.select,
        n_jobs=args.jobs, progress=args.bootstrap > 0 and sys.stderr.isatty(),
    )
    result.notes["input"] = str(args.input)
    if args.out:
        result.to_json(args.out)
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
