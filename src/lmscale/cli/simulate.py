"""``lmscale simulate``: score study designs on synthetic runs drawn from a known law."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lmscale.cli._common import add_parser, print_json
from lmscale.errors import LmscaleError

DESCRIPTION = """\
Which design buys the most forecast certainty per FLOP? Draw synthetic
studies from a known law (a catalog law such as besiroglu2024 or
kaplan2020, or a fit JSON), with residual noise taken from a real fit (the
log residuals of --noise-from, drawn with replacement for every synthetic
run), and score designs at a target two decades beyond the largest run
(--target-factor 100: the true law's compute-optimal point at 100x the
largest run) over many seeds: the mean absolute forecast error, and how
often the forecast interval covers the true loss.

Designs compared side by side at equal FLOPs:
  next        a 3 x 3 seed grid at the cheap corner, grown in --rounds rounds
              by 'lmscale next' (propose, observe, refit)
  loguniform  a grid log-uniform in N and D/N with the same compute
  isoflop     [H] approach 2: log-spaced budgets, 5 sizes each, same compute
  NAME=FILE   your design: a study TOML (its planned N and D) or a CSV of N, D
The budget (--budget) defaults to the compute of your first design;
a design that costs otherwise is flagged.

--pool CSV replays the rule on runs that exist instead: start from the
runs of the --start-sizes smallest model sizes, hold out the largest size,
add the other runs one at a time in the order 'next' chooses (and
smallest first), and print the error on the held-out size against the
compute spent.

Examples:
  lmscale simulate --truth besiroglu2024 --noise-from epoch-chinchilla --data-dir ../shared/data
  lmscale simulate --truth kaplan2020 --noise-from epoch-chinchilla --data-dir ../shared/data \\
      --seeds 50 --json
  lmscale simulate --truth fit.json --noise-from runs.csv --design mine=studies/kaplan-gpu.toml
  lmscale simulate --pool olmo_ladder_final_points.csv --columns N=N_params,D=total_tokens,loss=c4_en_CE
"""


def register(sub: Any) -> None:
    p = add_parser(sub, "simulate", help="score study designs on synthetic runs from a known law",
                   description=DESCRIPTION)
    p.add_argument("--truth", default="besiroglu2024", help="catalog law set or fit JSON the runs are drawn from")
    p.add_argument("--truth-law", default=None, help="which law of that set (default: chinchilla, else kaplan_nd)")
    p.add_argument("--noise-from", default="epoch-chinchilla", metavar="DATA",
                   help="real runs whose fit residuals are the noise: a dataset name or a CSV/Parquet/store")
    p.add_argument("--noise-law", default="chinchilla", help="law fitted to --noise-from")
    p.add_argument("--noise-columns", default=None, metavar="MAP", help="column map of --noise-from")
    p.add_argument("--noise-drop-highest", type=int, default=None, metavar="K",
                   help="drop the K highest losses of --noise-from (default: 5 for epoch-chinchilla, as "
                        "Besiroglu et al., else 0)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="folder with the public datasets")
    p.add_argument("--design", action="append", default=[], metavar="NAME=FILE",
                   help="a design to score: study TOML or CSV of N and D (repeatable)")
    p.add_argument("--baselines", default="loguniform,isoflop", help="reference designs, comma-separated")
    p.add_argument("--budget", type=float, default=None, metavar="FLOPS", help="total compute of every design")
    p.add_argument("--max-run", type=float, default=None, metavar="C", help="largest run (default 1e20, or "
                   "your first design's)")
    p.add_argument("--sizes", default=None, metavar="LO,HI", help="range of N (default 1e7,3e9)")
    p.add_argument("--tokens-per-param", default="2,200", metavar="LO,HI", help="range of D/N")
    p.add_argument("--seeds", type=int, default=50, help="synthetic studies per design")
    p.add_argument("--rounds", type=int, default=3, help="rounds of next")
    p.add_argument("--target-factor", type=float, default=100.0, help="target compute / largest run")
    p.add_argument("--level", type=float, default=0.8, help="coverage of the forecast intervals")
    p.add_argument("--bootstrap", type=int, default=32, metavar="B", help="bootstrap draws of each forecast")
    p.add_argument("--law", default=None, help="law the forecaster fits (default: the truth's)")
    p.add_argument("--pool", default=None, metavar="CSV", help="replay on these existing runs instead")
    p.add_argument("--columns", default=None, metavar="MAP", help="column map of --pool")
    p.add_argument("--start-sizes", type=int, default=3, help="pool: start from this many smallest sizes")
    p.add_argument("--per-size", type=int, default=None, help="pool: only the cheapest K runs of each start size")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.pool:
        return _pool(args)
    from lmscale.design import scenario
    from lmscale.design.simulate import SimulationConfig, simulate

    if args.seeds < 1 or args.rounds < 1:
        raise LmscaleError("--seeds and --rounds: expected at least 1")
    truth = scenario.truth_from(args.truth, args.truth_law, args.noise_from, args.noise_law, args.noise_columns,
                                args.noise_drop_highest, args.data_dir)
    designs = dict(scenario.read_design(item) for item in args.design)
    space, budget, notes = scenario.space_for(designs, args.budget, args.max_run, args.sizes,
                                              args.tokens_per_param)
    baselines = tuple(b.strip() for b in args.baselines.split(",") if b.strip())
    config = SimulationConfig(space=space, budget=budget, target_factor=args.target_factor, rounds=args.rounds,
                              seeds=args.seeds, level=args.level, n_boot=args.bootstrap, law=args.law,
                              baselines=baselines)
    result = simulate(truth, config, designs, progress=sys.stderr.isatty())
    summary = result.summary()
    out = {"truth": truth.name, "truth_law": truth.law.law, "params": truth.law.params,
           "noise": truth.noise_source, "noise_sd_log": truth.noise_sd, "target": {
               "N": result.target.N.tolist(), "D": result.target.D.tolist(), "C": result.target.C.tolist(),
               "how": result.target.how},
           "budget": budget, "max_run": space.c_max, "seeds": args.seeds, "rounds": args.rounds,
           "level": args.level, "forecaster": result.notes["forecaster_law"], "notes": notes,
           "designs": summary.to_dict(orient="records"),
           "rounds_of_next": result.rounds.groupby("round").mean(numeric_only=True).reset_index()
           .drop(columns=["seed"]).to_dict(orient="records")}
    if args.json:
        print_json(out)
        return 0
    _print(out)
    return 0


def _print(out: dict[str, Any]) -> None:
    t = out["target"]
    pct = int(round(out["level"] * 100))
    print(f"truth: {out['truth']} ({out['truth_law']}: " + ", ".join(f"{k} = {v:.4g}" for k, v in out["params"].items())
          + ")")
    print(f"noise: {out['noise']} (sd {out['noise_sd_log']:.4f} in log loss), resampled per run")
    print(f"target: N = {t['N'][0]:.3g}, D = {t['D'][0]:.3g}, {t['how']}")
    print(f"every design: {out['budget']:.3g} FLOPs in all, runs of at most {out['max_run']:.3g} FLOPs; "
          f"{out['seeds']} seeds; forecaster: {out['forecaster']} with bootstrap draws")
    for note in out["notes"]:
        print(f"note: {note}")
    print(f"\n{'design':<12} {'mean |error|':>12} {'median':>8} {pct:>3}% coverage {'width':>8} {'runs':>6} "
          f"{'FLOPs':>9} {'error / next':>12}")
    for row in out["designs"]:
        print(f"{row['design']:<12} {row['mean_abs_error']:>12.3%} {row['median_abs_error']:>8.3%} "
              f"{row['coverage']:>12.0%} {row['width']:>8.2%} {row['runs']:>6.0f} {row['compute']:>9.3g} "
              f"{row['error_vs_next']:>11.2f}x")
    print("\nnext, round by round (means over seeds):")
    print(f"{'round':>5} {'runs':>6} {'FLOPs':>9} {'mean |error|':>12} {'width':>8} {'expected narrowing':>19}")
    for row in out["rounds_of_next"]:
        print(f"{row['round']:>5} {row['runs']:>6.1f} {row['compute']:>9.3g} {row['error']:>12.3%} "
              f"{row['width']:>8.2%} {row['expected_narrowing']:>19.1%}")


def _pool(args: argparse.Namespace) -> int:
    from lmscale.design.api import default_forecaster, runs_frame
    from lmscale.design.pool import replay
    from lmscale.laws.io import parse_columns, read_table

    frame = runs_frame(read_table(args.pool), parse_columns(args.columns), where=str(args.pool))
    if "run" not in frame.columns:
        frame["run"] = [f"N={n:.3g} D={d:.3g}" for n, d in zip(frame["N"], frame["D"])]
    law = args.law or "chinchilla"
    result = replay(frame, lambda: default_forecaster(law, args.bootstrap, args.level), args.start_sizes,
                    per_size=args.per_size)
    reach = {order: result.first_reaching(order) for order in result.steps["order"].unique()}
    out = {"pool": str(args.pool), "law": law, "start_runs": len(result.start), "pool_runs": len(result.pool),
           "held_out_runs": len(result.held_out), "held_out_N": float(result.held_out["N"].iloc[0]),
           "reference_error": result.reference_error, "reference_compute": result.reference_compute,
           "reached": reach, "steps": result.steps.to_dict(orient="records")}
    if args.json:
        print_json(out)
        return 0
    print(f"pool: {out['pool']}: start {out['start_runs']} runs ({args.start_sizes} smallest sizes), choose among "
          f"{out['pool_runs']}, score on the {out['held_out_runs']} runs of N = {out['held_out_N']:.3g} (held out)")
    print(f"reference: every run below the largest size ({out['reference_compute']:.3g} FLOPs) forecasts the "
          f"held-out runs with mean |error| {out['reference_error']:.3%}")
    print(f"\n{'order':<9} {'step':>4} {'added':<18} {'FLOPs':>9} {'of ladder':>9} {'mean |error|':>12} {'width':>8}")
    for row in out["steps"]:
        print(f"{row['order']:<9} {row['step']:>4} {row['added'][:18]:<18} {row['compute']:>9.3g} "
              f"{row['compute'] / out['reference_compute']:>9.0%} {row['error']:>12.3%} {row['width']:>8.2%}")
    for order, row in reach.items():
        if row is None:
            print(f"{order}: never reaches the reference error")
        else:
            print(f"{order}: reaches the reference error ({row['error']:.3%}) at step {row['step']} with "
                  f"{row['fraction_of_compute']:.0%} of the ladder's compute")
    return 0
