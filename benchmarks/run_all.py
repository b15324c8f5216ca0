"""Run every benchmark in sequence and summarise their ratios.

Each ``benchmarks/bench_*.py`` measures lmscale against a baseline in the
same run and ends with one JSON line; this collects those lines into one
table (and ``benchmarks/results.json`` when ``--out`` is given). Run it on a
quiet machine: the ratios are robust to load, absolute times are not.

    make bench                      # all of them
    .venv/bin/python benchmarks/run_all.py --only fit,training
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def last_json_line(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated names (e.g. fit,training)")
    parser.add_argument("--out", type=Path, help="write all results as JSON here")
    args = parser.parse_args(argv)
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    scripts = sorted(HERE.glob("bench_*.py"))
    results: dict[str, dict | None] = {}
    failed = []
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        if wanted and name not in wanted:
            continue
        print(f"\n=== {name} ({script.name})", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            sys.stdout.write(proc.stderr[-3000:])
            failed.append(name)
        results[name] = last_json_line(proc.stdout)
        print(f"--- {name}: exit {proc.returncode}, {time.perf_counter() - start:.0f} s", flush=True)
    print("\nSummary (final JSON line of each benchmark):")
    for name, data in results.items():
        print(f"  {name}: {json.dumps(data) if data is not None else 'no JSON line'}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
