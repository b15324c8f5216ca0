"""``lmscale demo``: the paper's study at the scale of this machine."""

from __future__ import annotations

import argparse
from typing import Any

from lmscale.cli._common import add_parser, print_json

DESCRIPTION = """\
Reproduce the method of Kaplan et al. 2020 on this machine, from real text:

  1. prepare token shards (Python's standard library as the training
     distribution; its docstrings and the Debian texts that are installed
     as other distributions),
  2. train the shipped study kaplan-cpu (Transformers spanning 2.6 decades
     of N, dataset sizes, IsoFLOP budgets, a batch-size sweep, shapes at
     fixed N, LSTMs and Universal Transformers) into runs/kaplan-cpu.sqlite,
  3. fit every law the runs support, with bootstrap intervals, and judge
     whether its runs identify it (enough distinct inputs, exponents known to
     +-25%, scales to 2 decades); a law they do not identify is listed as
     "not identified" with the runs it would need, never with its intervals,
  4. write the report (runs/kaplan-cpu-report/index.html) and print each
     identified constant beside the paper's, the held-out check (the largest
     model's loss predicted from the smaller ones, with its interval), the
     compute-optimal exponent three ways, B_crit two ways, and the [K] 6.3
     crossing with how far beyond the data it lies.

Resumable: run it again after an interruption and it continues where it
stopped (finished runs are never trained twice).

examples:
  lmscale demo                      # the full study, about 20 minutes on 2 cores
  lmscale demo --quick              # a reduced study for a first look (< 3 minutes)
  lmscale demo --study studies/kaplan-gpu.toml --workers 1
  lmscale demo --quick --flops exact  # compute counted with attention and logits
"""


def register(sub: Any) -> None:
    p = add_parser(sub, "demo", "run the shipped study end to end: data, training, fits, report", DESCRIPTION)
    p.add_argument("--quick", action="store_true", help="run the reduced study kaplan-quick instead")
    p.add_argument("--study", help="a study file or shipped study name (default kaplan-cpu)")
    p.add_argument("--store", help="results store (default runs/<study>.sqlite)")
    p.add_argument("--out", help="report folder (default runs/<study>-report)")
    p.add_argument("--workers", type=int, help="runs in parallel (default: sized to the machine)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates per law for the intervals")
    p.add_argument("--flops", choices=("6N", "exact"), default="6N",
                   help="count training compute as 6 N D or with the attention and logits terms")
    p.add_argument("--no-report", action="store_true", help="fit and summarise only")
    p.add_argument("--open", action="store_true", help="open the report in a browser when done")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmscale.demo import run_demo
    from lmscale.errors import LmscaleError
    from lmscale.extras import TRAIN_MODULES, require

    require(*TRAIN_MODULES, what="lmscale demo")

    if args.quick and args.study:
        raise LmscaleError("--quick and --study: give one of them")
    if args.bootstrap < 0:
        raise LmscaleError(f"--bootstrap {args.bootstrap}: expected 0 or more replicates")
    study = "kaplan-quick" if args.quick else (args.study or "kaplan-cpu")
    result = run_demo(study, store=args.store, out=args.out, workers=args.workers,
                      bootstrap=args.bootstrap, report=not args.no_report, progress=True, flops=args.flops)
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.summary())
    if args.open and result.report is not None:
        import webbrowser

        webbrowser.open(result.report.resolve().as_uri())
    return 0
