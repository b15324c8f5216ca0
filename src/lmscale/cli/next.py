"""``lmscale next``: the runs that buy the most forecast certainty per FLOP."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lmscale.cli._common import LAST_PER_HELP, WHERE_HELP, add_parser, print_json, runs_table
from lmscale.errors import LmscaleError

DESCRIPTION = """\
Which runs to train next. A scaling study spends small runs to buy
certainty about a big one: given the runs you have, a target (a model size
and token count, or a compute budget whose compute-optimal point the fit
picks) and a budget of FLOPs, this proposes up to K new runs that shrink the
forecast interval at the target the most per FLOP spent.

How: the forecast is fitted with bootstrap refits (by default the
validated forecast that 'lmscale predict' gives: the law chosen by
validation at scale, its draws widened by the calibrated extrapolation
error; chinchilla, [H] eq. 2, where the runs hold too few model sizes to
validate); their predictions at the target and at every candidate run give
the spread the forecast has now. Measuring a candidate would remove
Cov(target, run)^2 / (Var(run) + noise^2) of the target's variance (a
linear-Gaussian update of those draws); runs are bought greedily by that
gain per FLOP (C = 6 N D), within the budget (lmscale.design.criterion).
Each proposal shows its cost and the expected narrowing of the interval.

Candidates: a log grid of N (from your smallest run up to the largest one
run the budget affords) times tokens per parameter (--tokens-per-param),
each with the Transformer shape the sweep's shape helper builds, [K]'s
LR(N) (or your study's lr) and the study's batch size. With --pool CSV the
candidates are runs that exist (N, D, loss, ...): how a design rule is
checked on real results.

--write-study FILE.toml writes the proposals as a [[group]] named
next-R@N=..,D=.. (round R, the target) of a study (your --study file, or
one rebuilt from the store), so 'lmscale sweep run' trains them into the
same store: fit, next, run, fit. 'lmscale report' then shows the rounds.

RUNS is a CSV, Excel sheet, Parquet file or results store (its finished
Transformer runs); at least 3 runs.

Examples:
  # three runs for the forecast at a model ten times the largest (studies/design-smoke.toml)
  lmscale next runs/design.sqlite --target 2e5,4e5 --budget 1e11 --k 3 \\
      --study studies/design-smoke.toml --write-study studies/design-smoke-next.toml
  lmscale sweep run studies/design-smoke-next.toml --store runs/design.sqlite
  # the target as a compute budget: the fit's compute-optimal point there
  lmscale next runs/design.sqlite --target-compute 1e12 --budget 1e11 --k 3
  # a given target, JSON out
  lmscale next results.csv --target 7e10,1.4e12 --budget 1e22 --json
  # choose among runs that already exist (the OLMo ladder's 1B runs)
  lmscale next small.csv --pool ladder-1b.csv --target 3.2e9,6.3e10 --budget 3e21
"""


def register(sub: Any) -> None:
    p = add_parser(sub, "next", help="the runs to train next for the most forecast certainty per FLOP",
                   description=DESCRIPTION)
    p.add_argument("runs", metavar="RUNS", help="CSV, Excel sheet, Parquet or results store of the runs you have")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--target", action="append", metavar="N,D",
                      help="target model size and tokens (repeat for several points)")
    what.add_argument("--target-compute", type=float, metavar="C",
                      help="target compute (FLOPs): the fit's compute-optimal point at C")
    p.add_argument("--budget", type=float, required=True, metavar="FLOPS", help="compute to spend on new runs")
    p.add_argument("--k", type=int, default=None, metavar="K", help="at most K runs (none given: as many as the budget affords)")
    p.add_argument("--law", default="auto",
                   help="law of N and D the forecast fits (chinchilla, chinchilla_tied, kaplan_nd, ...); "
                        "'forecast': the validated forecast, as 'lmscale predict' gives it (the law chosen by "
                        "validation at scale, with its calibrated extrapolation error; 4+ sizes); 'auto': the "
                        "validated forecast where the runs allow one, else chinchilla")
    p.add_argument("--by", choices=("N", "C"), default=None,
                   help="cut axis of the validated forecast (default: as predict chooses for the target: by "
                        "compute where the target lies further beyond the runs in compute than in model size, "
                        "as a --target-compute beyond the runs does)")
    p.add_argument("--bootstrap", type=int, default=64, metavar="B", help="bootstrap draws of the forecast")
    p.add_argument("--level", type=float, default=0.8, help="coverage of the forecast interval")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--pool", default=None, metavar="CSV", help="choose among these existing runs instead")
    p.add_argument("--tokens-per-param", default="2,200", metavar="LO,HI", help="range of D / N of the candidates")
    p.add_argument("--sizes", default=None, metavar="LO,HI", help="range of N of the candidates")
    p.add_argument("--max-run", type=float, default=None, metavar="C", help="largest compute of one new run")
    p.add_argument("--grid", default="14x9", metavar="NxR", help="candidate grid: sizes x ratios")
    p.add_argument("--columns", default=None, metavar="MAP", help='map column names, e.g. N="Model Size"')
    p.add_argument("--study", default=None, metavar="STUDY.toml", help="the study RUNS came from")
    p.add_argument("--write-study", default=None, metavar="FILE.toml",
                   help="write the proposals as a study group for 'lmscale sweep run'")
    p.add_argument("--where", default=None, metavar="COL=VALUE,...", help=WHERE_HELP)
    p.add_argument("--last-per", default=None, metavar="COLUMN", help=LAST_PER_HELP)
    p.add_argument("--every-run", action="store_true",
                   help="RUNS a store: keep its batch-sweep runs and runs that repeat their data (left out by "
                        "default: the law has no term for either)")
    p.add_argument("--json", action="store_true", help="print the proposal as JSON")
    p.set_defaults(func=run)


def _pair(text: str, flag: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise LmscaleError(f"{flag} {text!r}: expected two numbers LO,HI (e.g. 2,200)") from None
    if not (0 < a <= b):
        raise LmscaleError(f"{flag} {text!r}: expected 0 < LO <= HI")
    return a, b


def _grid(text: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise LmscaleError(f"--grid {text!r}: expected SIZESxRATIOS, e.g. 14x9") from None
    if a < 1 or b < 1:
        raise LmscaleError(f"--grid {text!r}: expected positive counts")
    return a, b


def _targets(items: list[str] | None) -> list[tuple[float, float]] | None:
    if items is None:
        return None
    out = []
    for item in items:
        try:
            N, D = (float(x) for x in item.split(","))
        except ValueError:
            raise LmscaleError(f"--target {item!r}: expected N,D (e.g. 7e10,1.4e12)") from None
        if not (N > 0 and D > 0):
            raise LmscaleError(f"--target {item!r}: N and D must be positive")
        out.append((N, D))
    return out


def run(args: argparse.Namespace) -> int:
    from lmscale.design import api
    from lmscale.design import study_file as sf
    from lmscale.laws.io import is_sqlite, parse_columns, read_table

    if args.k is not None and args.k < 1:
        raise LmscaleError(f"--k {args.k}: expected at least 1 run")
    columns = parse_columns(args.columns)
    store = Path(args.runs) if is_sqlite(Path(args.runs)) else None
    frame = api.runs_frame(runs_table(args.runs, columns, args.where, args.last_per), columns, where=str(args.runs),
                           store=store is not None, every_run=args.every_run)
    used = frame["run_id"].astype(str).tolist() if "run_id" in frame else None
    ctx = sf.context_from_store(store, used) if store else sf.StudyContext(name=Path(args.runs).stem)
    defaults = dict(ctx.defaults)
    max_tokens = ctx.train_tokens
    if args.study:
        defaults.update(sf.defaults_from_study(args.study))
        max_tokens = sf.train_tokens_of_study(args.study) or max_tokens
    pool = api.pool_frame(read_table(args.pool), columns, where=str(args.pool)) if args.pool else None
    space = None if pool is not None else api.default_space(
        frame, args.budget, args.max_run, _pair(args.sizes, "--sizes") if args.sizes else None,
        _pair(args.tokens_per_param, "--tokens-per-param"), _grid(args.grid), max_tokens)
    targets = _targets(args.target)
    forecaster = api.default_forecaster(args.law, args.bootstrap, args.level, args.seed, at=targets,
                                        at_compute=args.target_compute, by=args.by)
    trainable = _trainable(defaults) if pool is None and (store or args.study) else None
    prop = api.next_runs(frame, args.budget, target=targets, target_compute=args.target_compute,
                         k=args.k, pool=pool, space=space, forecaster=forecaster, trainable=trainable,
                         batch_tokens=defaults.get("batch_tokens") if trainable is not None else None)
    runs = prop.runs if pool is not None else sf.recipes(prop.runs, defaults)
    round_no = max(ctx.rounds, sf.rounds_in_study(args.study) if args.study else 0) + 1
    written = None
    if args.write_study:
        if pool is not None:
            raise LmscaleError("--write-study: the pool's runs exist already; nothing to train")
        if runs.empty:
            raise LmscaleError("--write-study: no run was proposed")
        how = f"for the forecast at the target ({prop.target.how}); criterion: variance reduction per FLOP"
        group = sf.group_toml(round_no, runs, prop.target.N, prop.target.D, how)
        written = sf.write_study(args.write_study, group, base=args.study, ctx=ctx if store else None)
    report = _report(prop, runs, frame, args, round_no, written, store, getattr(forecaster, "choice", ""))
    if args.json:
        print_json(report)
    else:
        _print(report)
    return 0


def _trainable(defaults: dict[str, Any]):
    """N of the Transformer the sweep's shape helper builds for a target N (None: no such shape)."""
    from lmscale.accounting import non_embedding_params
    from lmscale.models.shapes import shape_for_params

    helper = {k: defaults[k] for k in ("n_ctx", "n_vocab", "dropout", "tied_embeddings") if k in defaults}

    def built(N: float) -> float | None:
        try:
            return float(non_embedding_params(shape_for_params(float(N), **helper)))
        except LmscaleError:
            return None

    return built


def _report(prop: Any, runs: Any, frame: Any, args: argparse.Namespace, round_no: int, written: Path | None,
            store: Path | None, choice: str = "") -> dict[str, Any]:
    lo, hi = prop.interval
    fc = prop.forecast
    return {
        "runs_in": str(args.runs), "n_runs": len(frame), "notes": [*frame.attrs.get("notes", []), *prop.notes],
        "warnings": _warnings(fc.fit, args.target_compute is not None),
        "law": fc.fit.law, "law_choice": choice or f"--law {args.law}", "bootstrap_draws": fc.n_draws,
        "level": args.level,
        "noise_sd_log": fc.noise_sd,
        "target": {"N": prop.target.N.tolist(), "D": prop.target.D.tolist(), "C": prop.target.C.tolist(),
                   "how": prop.target.how},
        "forecast": {"loss": np.exp(fc.point(prop.target.N, prop.target.D)).tolist(),
                     "lo": lo.tolist(), "hi": hi.tolist(), "relative_width": prop.width.tolist()},
        "criterion": ("expected variance reduction of the forecast at the target per FLOP, from the bootstrap "
                      "draws (linear-Gaussian update; lmscale.design.criterion)"),
        "budget": args.budget, "cost": float(runs["C"].sum()) if len(runs) else 0.0,
        "expected_narrowing": prop.narrowing, "round": round_no,
        "proposals": runs.drop(columns=["candidate"], errors="ignore").to_dict(orient="records"),
        "study": str(written) if written else None,
        "next_command": (f"lmscale sweep run {written} --store {store}" if written and store else None),
    }


def _warnings(fit: Any, target_from_law: bool) -> list[str]:
    """What the reader must know of the law the proposal rests on: its runs do not identify it."""
    from lmscale.laws.identification import not_identified

    line = not_identified(fit.law, fit.identification)
    if line is None:
        return []
    if target_from_law:
        return [line + ": the compute-optimal target is that of a law the runs do not pin down; give the target "
                "as N,D (--target), or first train runs that identify the law"]
    return [line + ": the interval at the target and the runs proposed stand; the parameters mean little"]


def _print(r: dict[str, Any]) -> None:
    for note in r["notes"]:
        print(f"note: {note}")
    t, f = r["target"], r["forecast"]
    pct = int(round(r["level"] * 100))
    print(f"runs: {r['n_runs']} from {r['runs_in']}; forecast: {r['law']} with {r['bootstrap_draws']} predictive "
          f"draws, residual sd {r['noise_sd_log']:.3g} (log loss)")
    print(f"why: {r['law_choice']}")
    for i in range(len(t["N"])):
        print(f"target: N = {t['N'][i]:.3g}, D = {t['D'][i]:.3g} (C = {t['C'][i]:.3g} FLOPs; {t['how']}): "
              f"loss {f['loss'][i]:.4g}, {pct}% interval [{f['lo'][i]:.4g}, {f['hi'][i]:.4g}] "
              f"(width {f['relative_width'][i]:.2%})")
    for line in r["warnings"]:
        print(f"warning: {line}")
    print(f"criterion: {r['criterion']}")
    print(f"budget: {r['budget']:.3g} FLOPs; {len(r['proposals'])} run(s) cost {r['cost']:.3g} FLOPs; "
          f"expected narrowing of the interval: {r['expected_narrowing']:.1%}")
    if not r["proposals"]:
        return
    shapes = "n_layer" in r["proposals"][0]
    head = f"{'#':>3} {'N':>10} {'D':>10} {'D/N':>7} {'C (FLOPs)':>10}"
    if shapes:
        head += f" {'shape (layers x d_model, heads)':>32} {'lr':>9} {'batch':>7}"
    head += f" {'narrowing':>10}"
    extra = [k for k in r["proposals"][0] if k not in ("N", "D", "C", "gain", "narrowing", "n_layer", "d_model",
                                                       "n_head", "N_shape", "note", "lr", "lr_source",
                                                       "batch_tokens")]
    if extra:
        head += "  " + " ".join(extra)
    print(head)
    for i, p in enumerate(r["proposals"], 1):
        line = f"{i:>3} {p['N']:>10.3g} {p['D']:>10.3g} {p['D'] / p['N']:>7.3g} {p['C']:>10.3g}"
        if shapes:
            shape = (f"{p['n_layer']} x {p['d_model']}, {p['n_head']} (N = {p['N_shape']:,})"
                     if p.get("n_layer") else "no shape: " + str(p.get("note", ""))[:40])
            batch = "-" if p.get("batch_tokens") is None else f"{p['batch_tokens']:,}"
            line += f" {shape:>32} {p['lr']:>9.3g} {batch:>7}"
        line += f" {p['narrowing']:>10.1%}"
        if extra:
            line += "  " + " ".join(str(p[k]) for k in extra)
        print(line)
    if r["proposals"] and "lr_source" in r["proposals"][0]:
        print(f"learning rate: {r['proposals'][0]['lr_source']}; narrowing: cumulative, 1 - sqrt(V_after / V_now)")
    if r["study"]:
        print(f"wrote {r['study']} (round {r['round']})")
        if r["next_command"]:
            print(f"train them: {r['next_command']}")
    sys.stdout.flush()
