"""Experiment design: forecast error at a target per FLOP, ``next`` against grids of equal cost.

Simulation (``lmscale.design.simulate``): synthetic studies drawn from a
known law with the residual noise of real runs (the log residuals of the
[H] form fitted to the 240 Epoch AI Chinchilla points, drawn with
replacement), twice: the Besiroglu et al. 2024 Chinchilla law as truth, and
the Kaplan et al. 2020 L(N, D) ([K] eq. 1.5, table 2) as truth. Runs may go
anywhere on a grid of N in [1e7, 3e9] times D/N in [2, 200] up to 1e20 FLOPs
a run; every design spends 3e20 FLOPs in all; the target is the true law's
compute-optimal point at 1e22 FLOPs (100x the largest run). Designs:

* next: a 3 x 3 seed grid at the cheap corner (1.3e18 FLOPs), grown in 3
  rounds by ``lmscale next`` (propose, observe, refit);
* loguniform: a grid log-uniform in N and D/N with the compute next spent;
* isoflop: [H] approach 2, four budgets over three decades, five sizes each.

Each is fitted by the same forecaster (the truth's form, 32 bootstrap
draws) over 50 seeds; printed: mean |forecast / truth - 1| at the target,
80% interval coverage, and each baseline's error over next's (target:
>= 1.5x for both baselines, both truths).

Real data (pool mode, ``lmscale.design.pool``): the OLMo ladder's final
points (../shared/data); start from every run of the three smallest sizes,
hold out the largest size (3.2B), add the 1B runs one at a time in the
order next chooses and smallest first; printed: error on the 3.2B runs
against compute, and the compute at which each order first reaches the
error of the whole ladder below 3.2B (target: at most half of it).

    .venv/bin/python benchmarks/bench_design.py [--seeds 50]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from lmscale.design.api import default_forecaster
from lmscale.design.pool import replay
from lmscale.design.scenario import truth_from
from lmscale.design.simulate import SimulationConfig, simulate
from lmscale.design.space import DesignSpace

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPACE = DesignSpace(n_min=1e7, n_max=3e9, ratio_min=2.0, ratio_max=200.0, c_max=1e20)
BUDGET = 3e20
TRUTHS = ("besiroglu2024", "kaplan2020")


def simulation(name: str, seeds: int) -> dict:
    truth = truth_from(name, None, "epoch-chinchilla", data_dir=str(DATA))
    config = SimulationConfig(space=SPACE, budget=BUDGET, seeds=seeds, rounds=3, n_boot=32, level=0.8)
    t0 = time.perf_counter()
    result = simulate(truth, config)
    seconds = time.perf_counter() - t0
    table = result.summary().set_index("design")
    print(f"\ntruth {truth.name}: {', '.join(f'{k} = {v:.4g}' for k, v in truth.law.params.items())}")
    print(f"  noise: {truth.noise_source}")
    print(f"  target N = {result.target.N[0]:.3g}, D = {result.target.D[0]:.3g} ({result.target.how}); "
          f"{seeds} seeds, {seconds:.0f} s")
    print(f"  {'design':<11} {'mean |error|':>12} {'median':>8} {'80% cover':>9} {'width':>7} {'runs':>5} "
          f"{'FLOPs':>8} {'error / next':>12}")
    for design, row in table.iterrows():
        print(f"  {design:<11} {row['mean_abs_error']:>12.3%} {row['median_abs_error']:>8.3%} "
              f"{row['coverage']:>9.0%} {row['width']:>7.2%} {row['runs']:>5.0f} {row['compute']:>8.3g} "
              f"{row['error_vs_next']:>11.2f}x")
    rounds = result.rounds.groupby("round").mean(numeric_only=True)
    print("  next by round: " + "; ".join(
        f"{r}: {row['compute']:.2g} FLOPs, error {row['error']:.2%}, width {row['width']:.2%}"
        for r, row in rounds.iterrows()))
    ratios = {d: float(table.loc[d, "error_vs_next"]) for d in table.index if d != "next"}
    return {"truth": truth.name, "seconds": seconds, "next_error": float(table.loc["next", "mean_abs_error"]),
            "next_coverage": float(table.loc["next", "coverage"]), "ratios": ratios,
            "met": bool(all(r >= 1.5 for r in ratios.values()))}


def ladder() -> dict | None:
    path = DATA / "olmo_ladder_final_points.csv"
    if not path.exists():
        return None
    raw = pd.read_csv(path)
    frame = pd.DataFrame({"N": raw["N_params"].astype(float), "D": raw["total_tokens"].astype(float),
                          "C": raw["total_training_flops"].astype(float), "loss": raw["c4_en_CE"].astype(float),
                          "run": raw["size_label"] + "-" + raw["chinchilla_multiple"]})
    result = replay(frame, lambda: default_forecaster("chinchilla", 64))
    print(f"\nOLMo ladder (pool mode): start {len(result.start)} runs (190M, 370M, 760M), choose among "
          f"{len(result.pool)} (1B), score on the {len(result.held_out)} runs of 3.2B")
    print(f"  reference: all {len(result.start) + len(result.pool)} runs below 3.2B "
          f"({result.reference_compute:.3g} FLOPs): mean |error| {result.reference_error:.3%}")
    print(f"  {'order':<9} {'step':>4} {'added':<14} {'FLOPs':>9} {'of ladder':>9} {'error':>7} {'width':>7}")
    for _, row in result.steps.iterrows():
        print(f"  {row['order']:<9} {row['step']:>4} {row['added']:<14} {row['compute']:>9.3g} "
              f"{row['compute'] / result.reference_compute:>9.0%} {row['error']:>7.3%} {row['width']:>7.2%}")
    reached = {}
    for order in ("next", "smallest"):
        hit = result.first_reaching(order)
        reached[order] = None if hit is None else float(hit["fraction_of_compute"])
        print(f"  {order}: " + ("never reaches the reference error" if hit is None else
                                f"reaches it at step {hit['step']} with {hit['fraction_of_compute']:.0%} of the "
                                "ladder's compute"))
    return {"reference_error": result.reference_error, "fraction_of_compute": reached,
            "met": bool(reached["next"] is not None and reached["next"] <= 0.5)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50)
    args = parser.parse_args()
    if not (DATA / "epoch_chinchilla_svg_extracted_data.csv").exists():
        print(f"skipped: {DATA} not found", file=sys.stderr)
        print(json.dumps({"bench": "design", "skipped": True}))
        return 0
    warnings.simplefilter("ignore", RuntimeWarning)
    print(f"load average: {os.getloadavg()[0]:.2f} (2-core machine)")
    sims = [simulation(name, args.seeds) for name in TRUTHS]
    pool = ladder()
    met = all(s["met"] for s in sims) and (pool is None or pool["met"])
    print(json.dumps({"bench": "design", "seeds": args.seeds, "simulations": sims, "olmo_ladder": pool,
                      "targets_met": met}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
