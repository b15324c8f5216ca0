"""Speed of the Chinchilla fit and of its bootstrap, against a straightforward baseline.

Data: the 240 Epoch AI points (``../shared/data``, 5 highest losses dropped).

Baseline, measured in the same run: the summed Huber loss of log-residuals
written plainly here, minimised by ``scipy.optimize.minimize`` (L-BFGS-B,
numerical gradients) from every start of the same grid ([H]'s 4500), one
after another, keeping the best. BLAS is limited to one thread for both, so
the ratio measures the method, not thread contention.

Then 1000 bootstrap refits with ``lmscale.laws.fit(..., bootstrap=1000)`` on
two worker threads (target: under 60 s).

    .venv/bin/python benchmarks/bench_fit.py [--baseline-every K]

``--baseline-every K`` runs the baseline from every K-th start only (quick
look; its time is then scaled by K and labelled so). Prints both times,
both objectives, the ratio (target >= 50x with an equal or lower
objective), and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

import lmscale.laws as laws
from lmscale.laws.forms import CHINCHILLA

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "epoch_chinchilla_svg_extracted_data.csv"
COLUMNS = {"N": "Model Size", "C": "Training FLOP"}
DELTA = 1e-3


def baseline_objective(theta, log_n, log_d, log_loss):
    a, b, e, alpha, beta = theta
    pred = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
    r = pred - log_loss
    return float(np.sum(np.where(np.abs(r) <= DELTA, 0.5 * r**2, DELTA * (np.abs(r) - 0.5 * DELTA))))


def baseline_fit(frame: pd.DataFrame, every: int) -> tuple[float, np.ndarray]:
    log_n = np.log(frame["Model Size"].to_numpy())
    log_d = np.log(frame["Training FLOP"].to_numpy() / (6 * frame["Model Size"].to_numpy()))
    log_loss = np.log(frame["loss"].to_numpy())
    best, best_x = np.inf, None
    for start in CHINCHILLA.theta_grid()[::every]:
        res = minimize(baseline_objective, start, args=(log_n, log_d, log_loss), method="L-BFGS-B")
        if res.fun < best:
            best, best_x = float(res.fun), res.x
    return best, best_x


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-every", type=int, default=1, metavar="K")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    if not DATA.exists():
        print(f"skipped: {DATA} not found", file=sys.stderr)
        print(json.dumps({"bench": "fit", "skipped": True}))
        return 0
    raw = pd.read_csv(DATA)
    frame = raw.sort_values("loss", kind="stable").iloc[:-5]

    def timed_fits(repeats: int = 3) -> tuple[list[float], laws.FitResult]:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fit = laws.fit(raw, law="chinchilla", columns=COLUMNS, drop_highest_loss=5)
            times.append(time.perf_counter() - t0)
        return times, fit

    # timed before and after the baseline, so a change of load on a shared machine hits both
    times, fit = timed_fits()
    fast_obj = fit.stats["objective"]
    print(f"lmscale fit:  {statistics.median(times):8.3f} s  objective {fast_obj:.12g}  ({fit.n_points} points)")
    print("  " + ", ".join(f"{k}={v:.5g}" for k, v in fit.params.items()))

    n_grid = len(CHINCHILLA.theta_grid())
    which = f"all {n_grid}" if args.baseline_every == 1 else f"every {args.baseline_every}-th of {n_grid}"
    print(f"baseline: L-BFGS-B, numerical gradients, from {which} grid starts ...", flush=True)
    with threadpool_limits(1):
        t0 = time.perf_counter()
        base_obj, base_x = baseline_fit(frame, args.baseline_every)
        base_s = (time.perf_counter() - t0) * args.baseline_every
    after, _ = timed_fits()
    fast_s = statistics.median(times + after)
    print(f"lmscale fit, timed again: {statistics.median(after):.3f} s; median of both: {fast_s:.3f} s")
    scaled = " (scaled from a subsample)" if args.baseline_every > 1 else ""
    print(f"baseline:     {base_s:8.3f} s{scaled}  objective {base_obj:.12g}")
    print("  " + ", ".join(f"{k}={v:.5g}" for k, v in CHINCHILLA.from_theta(base_x).items()))
    ratio = base_s / fast_s
    objective_ok = fast_obj <= base_obj * (1 + 1e-9)
    print(f"speed-up: {ratio:.1f}x (target >= 50x); objective {'equal or lower' if objective_ok else 'HIGHER'}"
          f" ({fast_obj - base_obj:+.3g})")

    t0 = time.perf_counter()
    boot = laws.fit(raw, law="chinchilla", columns=COLUMNS, drop_highest_loss=5, bootstrap=args.bootstrap,
                    n_jobs=2, seed=0)
    boot_s = time.perf_counter() - t0
    print(f"{args.bootstrap} bootstraps on 2 threads: {boot_s:.1f} s (target < 60 s), "
          f"{boot.stats['bootstrap_failed']} failed")
    for name, (lo, hi) in boot.ci.items():
        print(f"  {name:<6} 95% [{lo:.5g}, {hi:.5g}]")
    print(json.dumps({
        "bench": "fit", "fit_s": fast_s, "baseline_s": base_s, "baseline_scaled": args.baseline_every > 1,
        "ratio": ratio, "fit_objective": fast_obj, "baseline_objective": base_obj,
        "objective_equal_or_lower": objective_ok, "bootstrap_n": args.bootstrap, "bootstrap_s": boot_s,
        "targets_met": bool(ratio >= 50 and objective_ok and boot_s < 60),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
