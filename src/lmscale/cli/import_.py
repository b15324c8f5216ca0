"""``lmscale import``: runs from MLflow, TensorBoard, W&B or a CSV into a results store (thin over lmscale.importers)."""

from __future__ import annotations

import argparse
from typing import Any

from lmscale.cli._common import add_parser, print_json

DESCRIPTION = """\
Import runs trained elsewhere into a results store, with their full
learning curves, so that 'lmscale fit', 'report' and 'plan' work on them
as on runs lmscale trained. A MAP file (TOML) says which logged metric is
the test loss (and the other distributions' losses), where N comes from
(a parameter, a logged value, or the model config, counted by lmscale's
accounting), the token count (a logged counter, or steps x batch tokens)
and the FLOPs (logged, or C = 6 N D). Whatever lmscale derives is
labelled as derived in the store and the report.

Every run is read and checked first; then all are written in one
transaction (nothing is half-imported). Re-importing the same runs
replaces them: a run is keyed by its id in the source.

SOURCE by kind:
  mlflow       sqlite:///mlflow.db, an mlruns folder, or http(s)://server
  tensorboard  a log folder; every folder with event files below it is a run
  wandb        offline run folders (wandb/), one run-<id>.wandb file, an
               exported history .jsonl, or ENTITY/PROJECT (online)
  csv          a CSV or an Excel sheet (FILE.xlsx#SHEET): one row per curve point
               (MAP run = "column") or per run

MAP example (map.toml):
  loss = "eval/loss"            # nats/token on the training distribution
  [losses]
  books = "eval/books_loss"
  [N]
  param = "n_params"            # or: metric = "...", value = 1.2e8,
                                #     model = { n_layer = { param = "n_layer" }, d_model = ... }
  [tokens]
  metric = "train/tokens"       # or: batch_tokens = { param = "batch_tokens" }

Examples:
  lmscale import mlflow sqlite:///mlflow.db --store runs.sqlite --map map.toml
  lmscale import tensorboard logs/ --store runs.sqlite --map map.toml --json
  lmscale import wandb wandb/ --store runs.sqlite --map map.toml
  lmscale import csv curves.csv --store runs.sqlite --map map.toml
  lmscale fit runs.sqlite --law chinchilla
  lmscale report --store runs.sqlite --out report
"""

KIND_HELP = {
    "mlflow": "an MLflow tracking store (pip install 'lmscale[mlflow]')",
    "tensorboard": "a TensorBoard log folder (pip install 'lmscale[tensorboard]')",
    "wandb": "W&B offline runs, exported history, or a project (pip install 'lmscale[wandb]')",
    "csv": "a CSV of runs or curve points",
}


def register(sub: Any) -> None:
    p = add_parser(sub, "import", help="runs from MLflow, TensorBoard, W&B or a CSV -> a results store",
                   description=DESCRIPTION)
    p.add_argument("kind", choices=tuple(KIND_HELP), help="; ".join(f"{k}: {v}" for k, v in KIND_HELP.items()))
    p.add_argument("source", help="where the runs are (see SOURCE above)")
    p.add_argument("--store", required=True, metavar="PATH", help="the results store (.sqlite; created if missing)")
    p.add_argument("--map", required=True, metavar="MAP.toml", help="which logged values are loss, N, tokens, FLOPs")
    p.add_argument("--dry-run", action="store_true", help="read and check every run, write nothing")
    p.add_argument("--json", action="store_true", help="print what was imported as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from collections import Counter

    from lmscale.importers import build, import_runs

    if args.dry_run:
        uri, records, skipped = build(args.kind, args.source, args.map)
        info = {"kind": args.kind, "uri": uri, "store": None, "runs": len(records),
                "points": sum(len(r.record.curve) for r in records), "skipped": skipped,
                "statuses": dict(Counter(r.record.status for r in records)),
                "derived": dict(Counter(d for r in records for d in r.provenance.derived))}
        if args.json:
            print_json(info)
        else:
            print(f"dry run: {info['runs']} runs with {info['points']} curve points read from {args.kind} {uri}; "
                  "nothing written")
        return 0
    result = import_runs(args.kind, args.source, args.store, args.map)
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.summary())
    return 0
