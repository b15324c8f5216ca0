"""Parallel speed-up of the local executor: the smoke study with 1 and with 2 workers.

Runs ``studies/smoke.toml`` into fresh stores, once with 1 worker x CPUs
threads and once with 2 workers x CPUs/2 threads (runs x threads = cores
in both), in the same process run, and prints the wall-time ratio.
Target on 2 cores: 2 workers >= 1.6x faster than 1.

A third measurement, 1 worker x 1 thread, separates the gain of running
runs side by side from the loss of splitting tiny matmuls over threads
(which a busy machine makes much worse: compare the load averages printed).

    .venv/bin/python benchmarks/bench_sweep.py [--study studies/smoke.toml] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from lmscale.sweeps import load_study, run_sweep
from lmscale.training.hardware import available_cpus

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.6


def timed_sweep(study, workers: int, threads: int, tmp: Path, tag: str) -> float:
    store = tmp / f"{tag}.sqlite"
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = run_sweep(study, store, workers=workers, threads=threads, progress=False)
    elapsed = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(f"  {tag}: {workers} worker(s) x {threads} thread(s): {elapsed:.1f} s wall, "
          f"{cpu:.1f} s CPU in the workers", file=sys.stderr)
    bad = {k: v for k, v in result.counts.items() if k not in ("finished", "early_stopped")}
    if bad:
        raise SystemExit(f"{tag}: runs did not finish: {bad}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=str(ROOT / "studies" / "smoke.toml"))
    parser.add_argument("--repeat", type=int, default=2, help="rounds of measurements (best of each is kept)")
    args = parser.parse_args()
    study = load_study(args.study)
    cpus = available_cpus()
    study.data.resolve(progress=False)  # data preparation is not part of the measurement
    one, two, single = [], [], []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):  # alternating order: a change of load hits every set-up alike
            order = [("one", 1, cpus, one), ("two", 2, max(1, cpus // 2), two), ("single", 1, 1, single)]
            for tag, workers, threads, times in (order if i % 2 == 0 else order[::-1]):
                times.append(timed_sweep(study, workers, threads, Path(tmp), f"{tag}{i}"))
            print(f"round {i + 1}: 1 worker x {cpus} threads {one[-1]:.1f} s, "
                  f"2 workers x {max(1, cpus // 2)} threads {two[-1]:.1f} s, "
                  f"1 worker x 1 thread {single[-1]:.1f} s", file=sys.stderr)
    load_after = os.getloadavg()[0]
    t1, t2, t11 = min(one), min(two), min(single)
    ratio = t1 / t2
    print(f"study {study.name}: {len(study.runs)} runs on {cpus} CPUs "
          f"(load average {load_before:.1f} before, {load_after:.1f} after)")
    print(f"1 worker  x {cpus} threads: {t1:8.1f} s")
    print(f"2 workers x {max(1, cpus // 2)} thread(s): {t2:8.1f} s")
    print(f"1 worker  x 1 thread : {t11:8.1f} s")
    print(f"speed-up 2 workers vs 1 worker x {cpus} threads: {ratio:6.2f}x (target >= {TARGET}x) "
          f"{'OK' if ratio >= TARGET else 'BELOW TARGET'}")
    print(f"speed-up 2 workers vs 1 worker x 1 thread : {t11 / t2:6.2f}x")
    print(json.dumps({"benchmark": "sweep", "study": study.name, "runs": len(study.runs), "cpus": cpus,
                      "seconds_1_worker": round(t1, 2), "seconds_2_workers": round(t2, 2),
                      "seconds_1_worker_1_thread": round(t11, 2), "speedup": round(ratio, 3),
                      "speedup_vs_1_thread": round(t11 / t2, 3), "load_average": [load_before, load_after],
                      "target": TARGET, "ok": ratio >= TARGET}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
