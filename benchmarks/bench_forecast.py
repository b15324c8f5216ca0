"""Forecasts against the naive fit on public ladders, interval coverage, and the audit's speed.

Accuracy (``../shared/data``): each public set is split at a natural
holdout, its larger runs; both methods see only the smaller runs:

* OLMo ladder final points: hold out the largest model size (3.2B, 6 runs);
* Epoch AI's digitised Chinchilla points (5 highest losses dropped, as
  Besiroglu et al. do): hold out the 7 largest model sizes (N >= 2.9e9, 32 points);
* Muennighoff et al.'s datablations, all runs, repeated data included:
  hold out the largest N (8.7e9, 13 runs);
* Porian et al.'s IsoFLOP points, the fully corrected setting (RefinedWeb,
  tuned, short warm-up, constant schedule, standard count, validation
  loss): hold out the largest budget (2.56e19 FLOPs, 6 runs).

Every forecast is given the held-out points (``at=``), as ``lmscale predict
--at`` is: where they lie further beyond the smaller runs in compute than
in model size (the OLMo ladder, the datablations, Porian's larger budget),
its validation cuts go by compute, as the question does.

The naive fit is ``lmscale fit --law chinchilla`` (Huber 1e-3 on log
residuals) on the smaller runs; the forecast is ``ls.forecast`` with its
defaults (its own validation cuts among the smaller runs, 200 bootstrap
draws). Printed per set: mean |predicted / measured - 1| of both on the
held-out runs, their ratio, the chosen law and its cut axis, and the share of held-out runs
inside the forecast's 80% and 95% intervals; then the pooled coverage.
Where a set is an IsoFLOP design (Porian's), the forecast also validates the
allocation (:mod:`lmscale.laws.allocation_check`), and the plan at each
held-out budget is scored against that budget's own parabola minimum,
beside the N_opt of the forecast's law; and on each of Porian et al.'s 15
settings, the plan at 1e21 FLOPs from a forecast of all its runs against
their own published frontier for it.
Then, per set, the plausible alternatives (the candidates validated within
2x of the chosen one, which widen its intervals) each scored on the
held-out runs, how much the choice matters; and the forecast from every
column the set's loader gives (OLMo's own C column among them), which must
equal the one from N, D (and U) alone. Beside them, in hindsight, what no
forecast from the smaller runs should be expected to beat: the error on the held-out runs of the naive fit and of the
forecast's law, each fitted on *every* run, the held-out ones included
(``hind``, naive / law): the scatter of the runs about the form itself (digitised
points, seeds, schedules), or the form's misfit.

Synthetic (``--seeds``, default 50 per form): runs drawn from each candidate
form with known parameters and 0.2% noise (``lmscale.laws.synthetic``):
how often the forecast picks the true form (forms only, default fitting),
the 80% coverage of larger held-out runs, and how often the 95% plan
interval of N_opt at 1e21 FLOPs holds the true law's N_opt.

Speed: ``lmscale fit --audit`` of every candidate (with all variants) with
200 bootstrap replicates on the 296 datablations runs and on 300 synthetic
runs (target < 30 s each on 2 cores).

    .venv/bin/python benchmarks/bench_forecast.py [--seeds 50] [--bootstrap 200] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def public_sets():
    """(name, frame of N, D[, U], loss, held-out mask, cut axis, target) per public set."""
    from lmscale.laws import datasets

    olmo = datasets.load("olmo-ladder-final", data_dir=DATA)
    yield "OLMo ladder", olmo, olmo["N"] == olmo["N"].max(), None, "<= 0.7%"
    epoch = datasets.load("epoch-chinchilla", data_dir=DATA).sort_values("loss").iloc[:-5]
    yield "Epoch Chinchilla", epoch, epoch["N"] >= 2.9e9, None, "<= 0.7%"
    muen = datasets.load("muennighoff2023", data_dir=DATA)
    yield "datablations", muen, muen["N"] == muen["N"].max(), None, ">= 1.5x below naive"
    por = datasets.load("porian2024-isoflop", data_dir=DATA)
    por = por[(por["dataset"] == "rw") & (por["hparams"] == "tuned") & (por["warmup"] == "short")
              & (por["decay"] == "const") & (por["param_count"] == "standard")]
    yield "Porian IsoFLOP", por, por["C"] >= por["C"].max() * 0.99, None, ">= 1.5x below naive"


def mean_rel_error(pred, measured) -> float:
    return float(np.mean(np.abs(np.asarray(pred) / np.asarray(measured) - 1.0)))


def accuracy(bootstrap: int) -> tuple[list[dict], float]:
    import lmscale as ls
    from lmscale.laws.candidates import make_candidate

    rows, inside = [], []
    for name, frame, held, by, target in public_sets():
        frame = frame.reset_index(drop=True)
        held = held.to_numpy()
        cols = [c for c in ("N", "D", "U", "loss") if c in frame]
        train, test = frame.loc[~held, cols], frame.loc[held, cols]
        n_test, d_test = test["N"].to_numpy(), test["D"].to_numpy()
        naive = ls.fit(train, law="chinchilla")
        naive_err = mean_rel_error(naive.predict(N=n_test, D=d_test), test["loss"])
        t0 = time.perf_counter()
        fc = ls.forecast(train, by=by, bootstrap=bootstrap, at=test[["N", "D"]])  # cuts follow the question
        seconds = time.perf_counter() - t0
        table = fc.table(test)
        # in hindsight: each fitted (as the forecast refits its law) on every run, held-out ones included
        chosen = make_candidate(fc.law)
        naive_all = ls.fit(frame[cols], law="chinchilla")
        law_all = ls.fit(frame[cols], law=chosen.law, options=chosen.options)
        hindsight = [mean_rel_error(naive_all.predict(N=n_test, D=d_test), test["loss"]),
                     mean_rel_error(law_all.predict(**{k: test[k].to_numpy() for k in chosen.form.inputs}),
                                    test["loss"])]
        err = mean_rel_error(table["loss"], test["loss"])
        # how much the choice matters: the plausible alternatives (validated within 2x of the best),
        # each scored on the held-out runs; and the forecast from every column the loader gives
        others = {name: mean_rel_error(fit.predict(**{k: test[k].to_numpy() for k in fit.form.inputs}),
                                       test["loss"])
                  for name, (_, fit) in fc.alternatives.items() if name != fc.law}
        loaded = ls.forecast(frame.loc[~held], by=by, bootstrap=0, at=test[["N", "D"]])
        loaded_err = mean_rel_error(loaded.point(**{k: test[k].to_numpy() for k in ("N", "D", "U") if k in test}),
                                    test["loss"])
        y = test["loss"].to_numpy()
        in80 = (y >= table["lo80"]) & (y <= table["hi80"])
        in95 = (y >= table["lo95"]) & (y <= table["hi95"])
        inside += list(in80)
        ok = err <= 0.007 if target.startswith("<=") else err * 1.5 <= naive_err
        rows.append({"set": name, "train": int(len(train)), "held_out": int(len(test)), "naive": naive_err,
                     "hindsight": {"naive": hindsight[0], "law": hindsight[1]},
                     "forecast": err, "ratio": naive_err / err, "law": fc.law, "by": fc.data["by"], "cov80": float(in80.mean()),
                     "cov95": float(in95.mean()), "target": target, "meets": bool(ok),
                     "not_worse": bool(err <= naive_err), "seconds": seconds, "alternatives": others,
                     "loaded_columns": {"law": loaded.law, "forecast": loaded_err},
                     "allocation": held_out_allocation(fc, frame[cols], held)})
    return rows, float(np.mean(inside))


def held_out_allocation(fc, frame, held) -> list[dict] | None:
    """Where the forecast validated the allocation (an IsoFLOP design): at each held-out budget, its
    own parabola minimum against the plan's N_opt (with its 80% interval) and the law's own N_opt."""
    from lmscale.laws import planner
    from lmscale.laws.frontier import isoflop_optima
    from lmscale.laws.plan_uncertainty import optimal_allocation

    check = fc.data.get("allocation_check")
    if not check:
        return None
    optima = isoflop_optima(frame)
    top = optima[(optima["status"] == "ok") & (optima["C"] >= 0.99 * (6.0 * frame["N"] * frame["D"])[held].min())]
    out = []
    for C, measured, se in zip(top["C"], top["N_opt"], top["se_log_n"]):
        plan = planner.plan(fc.to_lawset(), compute=float(C))
        out.append({"C": float(C), "measured": float(measured), "se_log_n": float(se), "plan": plan.N_opt,
                    "plan80": (plan.intervals or {}).get("levels", {}).get("80", {}).get("N_opt"),
                    "law": optimal_allocation(fc.fit.law, fc.fit.params, float(C))[0], "allocate": check["allocate"],
                    "factor": check["factor"]})
    return out


def miss_in_errors(a: dict) -> str:
    """The plan's miss of a held-out budget's minimum in units of both errors: the plan's band is for
    the true optimum, the measured minimum carries its own (``se_log_n``), so a band that misses a
    minimum one standard error off is not yet a miscalibration. s_plan from the 80% band as normal."""
    if not a["plan80"] or not np.isfinite(a["se_log_n"]):
        return ""
    from scipy.stats import norm

    lo, hi = a["plan80"]
    s_plan = np.log(hi / lo) / (2.0 * norm.ppf(0.9))
    z = np.log(a["plan"] / a["measured"]) / np.hypot(s_plan, a["se_log_n"])
    return f"; plan minus minimum in ln N: z = {z:.2f} of the two errors combined (plan {s_plan:.2f}, minimum {a['se_log_n']:.2f})"


def porian_plans(bootstrap: int, C: float = 1e21) -> list[dict]:
    """Each of Porian et al.'s 15 settings forecast whole and planned at ``C``: the plan's N_opt and
    the N_opt of the law chosen on the loss, each against their own frontier for the setting
    (``porian2024_fit_results.csv``, the weighted fit N* = n_coef C^n_exponent their tables use)."""
    import pandas as pd

    import lmscale as ls
    from lmscale.laws import datasets, planner
    from lmscale.laws.plan_uncertainty import optimal_allocation

    points = datasets.load("porian2024-isoflop", data_dir=DATA)
    fits = pd.read_csv(DATA / "porian2024_fit_results.csv")
    fits = fits[fits["fit"] == "weighted"]
    keys = ["dataset", "hparams", "warmup", "decay", "param_count", "loss_split"]
    out = []
    for setting, runs in points.groupby(keys):
        theirs = fits[(fits[keys] == pd.Series(setting, index=keys)).all(axis=1)]
        if len(theirs) != 1:
            continue
        theirs_n = float(theirs["n_coef"].iloc[0] * C ** theirs["n_exponent"].iloc[0])
        fc = ls.forecast(runs[["N", "D", "loss"]], bootstrap=bootstrap)
        plan = planner.plan(fc.to_lawset(), compute=C)
        check = fc.data.get("allocation_check") or {}
        out.append({"setting": "/".join(setting[:5]), "law": fc.law, "allocate": check.get("allocate"),
                    "plan": plan.N_opt / theirs_n,
                    "law_n_opt": optimal_allocation(fc.fit.law, fc.fit.params, C)[0] / theirs_n})
    return out


def synthetic(seeds: int, bootstrap: int) -> dict[str, dict]:
    from lmscale.laws import planner
    from lmscale.laws.forecast import forecast
    from lmscale.laws.plan_uncertainty import optimal_allocation
    from lmscale.laws.synthetic import TRUE_LAWS, simulate_runs

    out = {}
    for law in TRUE_LAWS:
        picks, inside, nopt = [], [], []
        for seed in range(seeds):
            runs = simulate_runs(law, seed=seed)
            fc = forecast(runs, variants=["huber"], bootstrap=bootstrap, seed=seed)
            picks.append(fc.audit["chosen"].split("+")[0])
            unique = float(runs["U"].iloc[0]) if "U" in runs else None
            big = simulate_runs(law, sizes=(1e9, 2e9), multiples=(20.0, 80.0), seed=10_000 + seed,
                                unique_tokens=unique)
            table = fc.table(big)
            y = big["loss"].to_numpy()
            inside += list((y >= table["lo80"]) & (y <= table["hi80"]))
            if law != "data_constrained":
                C = 1e21
                n_true, _ = optimal_allocation(law, TRUE_LAWS[law], C)
                lo, hi = planner.plan(fc.to_lawset(), compute=C).intervals["levels"]["95"]["N_opt"]
                nopt.append(lo <= n_true <= hi)
        out[law] = {"picked_true": float(np.mean([p == law for p in picks])),
                    "picks": {p: picks.count(p) for p in sorted(set(picks))},
                    "cov80": float(np.mean(inside)), "nopt95": float(np.mean(nopt)) if nopt else None}
        print(f"  {law:<17} picked {out[law]['picked_true']:5.0%} {out[law]['picks']}  80% coverage "
              f"{out[law]['cov80']:5.0%}  N_opt in 95% plan interval "
              + ("-" if not nopt else f"{out[law]['nopt95']:.0%}"), flush=True)
    return out


def speed(bootstrap: int) -> dict[str, float]:
    from lmscale.laws import datasets
    from lmscale.laws.forecast import forecast
    from lmscale.laws.synthetic import simulate_runs

    muen = datasets.load("muennighoff2023", data_dir=DATA)[["N", "D", "U", "loss"]]
    synth = simulate_runs("chinchilla", sizes=np.geomspace(1e7, 1e9, 12), multiples=np.geomspace(5, 200, 25))
    out = {}
    for name, frame in (("datablations (296 runs, U)", muen), ("synthetic (300 runs)", synth)):
        t0 = time.perf_counter()
        fc = forecast(frame, bootstrap=bootstrap)
        out[name] = time.perf_counter() - t0
        n_cand = len({r["candidate"] for r in fc.audit["table"]})
        print(f"  {name:<28} {len(frame)} points, {n_cand} candidates x {len(fc.audit['thresholds'])} cuts, "
              f"{bootstrap} bootstrap: {out[name]:.1f} s (target < 30 s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50, help="synthetic seeds per true form")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates of the forecasts")
    parser.add_argument("--quick", action="store_true", help="10 seeds, 50 bootstrap replicates")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.bootstrap = 10, 50
    if not DATA.is_dir():
        print(f"{DATA} not found: the public sets sit beside the checkout", file=sys.stderr)
        return 1
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} on {os.cpu_count()} cores")
    print("public ladders: fitted on the smaller runs, scored on the larger ones (mean |relative error|)")
    rows, pooled = accuracy(args.bootstrap)
    print(f"  {'set':<17} {'train':>5} {'held':>4} {'naive':>7} {'forecast':>8} {'ratio':>6} {'hind':>13} "
          f"{'cov80':>6} {'cov95':>6}  law (target)")
    for r in rows:
        print(f"  {r['set']:<17} {r['train']:>5} {r['held_out']:>4} {r['naive']:>7.2%} {r['forecast']:>8.2%} "
              f"{r['ratio']:>5.2f}x {r['hindsight']['naive']:>6.2%}/{r['hindsight']['law']:<6.2%} {r['cov80']:>6.0%} {r['cov95']:>6.0%}  {r['law']}, cuts by {r['by']} "
              f"({r['target']}: {'met' if r['meets'] else 'NOT met'}"
              f"{'' if r['not_worse'] else '; worse than naive'})")
    for r in rows:
        alts = ", ".join(f"{n} {e:.2%}" for n, e in sorted(r["alternatives"].items(), key=lambda kv: kv[1]))
        print(f"  {r['set']}: alternatives validated within 2x of the chosen law, on the held-out runs: "
              f"{alts or 'none'}; from every column the loader gives: {r['loaded_columns']['law']} "
              f"{r['loaded_columns']['forecast']:.2%}")
    for r in rows:
        for a in r["allocation"] or []:
            band = "" if not a["plan80"] else " [{:.3g}, {:.3g}]".format(*a["plan80"])
            print(f"  {r['set']}: N_opt at the held-out budget {a['C']:.3g}: its own parabola minimum {a['measured']:.3g} "
                  f"(standard error {a['se_log_n']:.2f} in ln N); "
                  f"the plan {a['plan']:.3g}{band} (80%; by {a['allocate']}, validated {a['factor'][a['allocate']]:.2f}x "
                  f"off on the smaller budgets' cuts), {a['plan'] / a['measured']:.2f}x; the law's own "
                  f"{a['law']:.3g}, {a['law'] / a['measured']:.2f}x{miss_in_errors(a)}")
    print(f"  pooled 80% coverage: {pooled:.0%} (target 70% to 90%)")
    print("  hind: in hindsight, the naive fit / the forecast's law fitted on every run, the held-out ones "
          "included, scored on the held-out runs")
    plans = porian_plans(min(args.bootstrap, 50))
    print(f"plans at 1e21 FLOPs on each of Porian et al.'s {len(plans)} settings (forecast from all of its runs), "
          "N_opt / their own frontier's (weighted fit):")
    for p in plans:
        print(f"  {p['setting']:<32} plan {p['plan']:5.2f}x (allocated by {p['allocate']})  "
              f"the loss-chosen law's own {p['law_n_opt']:5.2f}x ({p['law']})")
    for key, what in (("plan", "the plan"), ("law_n_opt", "the law's own")):
        factors = np.exp(np.abs(np.log([p[key] for p in plans])))
        print(f"  {what}: median {np.median(factors):.2f}x off, worst {factors.max():.2f}x")
    print(f"synthetic runs, {args.seeds} seeds per true form:")
    synth = synthetic(args.seeds, min(args.bootstrap, 100))
    print("speed of the audit (all candidates and variants):")
    times = speed(args.bootstrap)
    print(json.dumps({"benchmark": "forecast", "load": load, "public": rows, "pooled_cov80": pooled, "porian_plans": plans,
                      "synthetic": synth, "audit_seconds": times}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
