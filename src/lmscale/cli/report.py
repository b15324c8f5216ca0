"""``lmscale report``: the paper's figures and fitted laws of a study, as one HTML page."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lmscale.cli._common import add_parser, print_json

DESCRIPTION = """\
Fit every law a study's runs support, draw the figures of Kaplan et al.
2020 that the runs allow, and write one self-contained HTML page:

  DIR/index.html          figures (embedded), a table of every fitted law
                          with its 95% interval beside the paper's values,
                          the held-out check, how each number was computed
                          (which runs each law used, N and FLOP accounting)
                          and the run table
  DIR/fits.json           the fitted laws (use with lmscale plan --law)
  DIR/figures/*.png,svg   every figure, PNG and SVG

A figure the study has no runs for is listed with the runs it would need.
The page needs no network: open it from disk or copy it anywhere.

Examples:
  lmscale sweep run studies/smoke.toml --store smoke.sqlite
  lmscale report smoke.sqlite --out smoke-report --open
  lmscale report --store smoke.sqlite --out smoke-report --bootstrap 0 --json
  lmscale report --store smoke.sqlite --out smoke-exact --flops exact   # C with attention and logits
  lmscale plan --law smoke-report/fits.json --compute 1e18
  # a store that also holds runs of an earlier version of the study file
  lmscale report runs/kaplan-cpu.sqlite --study kaplan-cpu --out report
"""


def register(sub: Any) -> None:
    p = add_parser(sub, "report", help="the paper's figures and fitted laws of a study, as HTML",
                   description=DESCRIPTION)
    p.add_argument("store_path", nargs="?", default=None, metavar="STORE",
                   help="the study's results store (.sqlite); or give it as --store")
    p.add_argument("--store", default=None, metavar="PATH", help="the study's results store (.sqlite)")
    p.add_argument("--study", default=None, metavar="FILE",
                   help="fit and draw only the runs this study file (or shipped study name) plans; other "
                        "runs in the store (an earlier version of the file, another study) are left out "
                        "and counted (default: every run in the store)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the report into")
    p.add_argument("--bootstrap", type=int, default=200, metavar="K",
                   help="bootstrap refits per law for the 95%% intervals (0: none, fastest)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--flops", choices=("6N", "exact"), default="6N",
                   help="count training compute as C = 6 N D ([K] 2.1) or with every term of [K] table 1 "
                        "(attention, logits); the page gives the other count too where it differs")
    p.add_argument("--no-holdout", action="store_true",
                   help="skip the held-out check (the largest model predicted from the others)")
    p.add_argument("--link-figures", action="store_true",
                   help="link figures/*.png from the page instead of embedding them")
    p.add_argument("--open", action="store_true", help="open the report in the web browser")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lmscale.errors import LmscaleError
    from lmscale.report import ReportOptions, build_report

    if (args.store is None) == (args.store_path is None):
        raise LmscaleError("give the results store once: lmscale report STORE --out DIR (or --store STORE)")
    store = Path(args.store or args.store_path)
    if not store.exists():
        raise LmscaleError(f"--store {store}: no such file (run 'lmscale sweep run STUDY --store {store}')")
    options = ReportOptions(bootstrap=args.bootstrap, holdout=not args.no_holdout, seed=args.seed,
                            embed=not args.link_figures, progress=not args.json, flops=args.flops)
    from lmscale.laws.study import StudyFrames

    source = StudyFrames.load(store)  # read once: the note below, the study's runs and the report
    left_out: list[str] = []
    if args.study is None:
        mixed = studies_in(source.runs)
        if len(mixed) > 1:
            print(f"note: {store} holds the runs of {len(mixed)} studies ("
                  + ", ".join(f"{name} {count}" for name, count in mixed.items())
                  + "), all fitted together; --study FILE fits one", file=sys.stderr)
    else:
        from lmscale.demo import resolve_study, study_frames
        from lmscale.sweeps import load_study

        source, left_out = study_frames(source, load_study(resolve_study(args.study)))
        if source.runs.empty:
            raise LmscaleError(f"--study {args.study}: none of its runs is in {store} (run 'lmscale sweep run "
                               f"{args.study} --store {store}')")
    report = build_report(source, args.out, options)
    if args.json:
        print_json({**summary(report), "left_out": left_out})
    else:
        if left_out:
            print(f"left out: {len(left_out)} run(s) in {store} that --study {args.study} does not plan")
        print(f"report: {report.index}")
        print(f"fits:   {report.fits_json}  ({len(report.fits.laws.laws)} laws)")
        print(f"figures drawn: {len(report.drawn)}; not drawn: {len(report.not_drawn)}")
        for key, why in report.not_drawn.items():
            print(f"  {key}: {'; '.join(why)}")
    if args.open:
        import webbrowser

        webbrowser.open(report.index.resolve().as_uri())
    return 0


def studies_in(runs: Any) -> dict[str, int]:
    """Runs per study name in a store's runs table (runs without a study are not counted)."""
    if runs.empty or "study" not in runs:
        return {}
    return {str(k): int(v) for k, v in runs["study"].dropna().value_counts().sort_index().items()}


def summary(report: Any) -> dict[str, Any]:
    fits = report.fits
    return {
        "index": str(report.index),
        "fits": str(report.fits_json),
        "laws": sorted(fits.laws.laws),
        "not_fitted": dict(fits.missing),
        "holdout": fits.holdout.to_dict() if fits.holdout is not None else None,
        "figures": report.drawn,
        "figures_not_drawn": report.not_drawn,
    }
