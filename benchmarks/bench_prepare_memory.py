"""Peak memory of ``lmscale.data.prepare`` on 100 MB of text (target: under 1 GB).

Writes ~100 MB of real text as one JSON Lines file (documents of the Python
standard library and whichever Debian text packages are installed; if they
hold less than that, documents are repeated with a numbered prefix so that
every document is distinct), then prepares it with a BPE tokenizer in a child
process, twice: on the first 10 MB (the baseline) and on all of it. Each
child reports its own peak resident set size (``ru_maxrss``); the parent
cross-checks with ``RUSAGE_CHILDREN``. Bounded memory means the 100 MB peak
stays close to the 10 MB one.

    .venv/bin/python benchmarks/bench_prepare_memory.py [--mb 100] [--vocab-size 8192]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmscale.data.sources import BUILTIN, get_source

TARGET_MB = 1024.0
ORDER = ("python-stdlib", "gcide", "vim-help", "bible-web", "bible-kjv", "python-docs", "jargon")

CHILD = """
import json, resource, sys, time
from lmscale.data import prepare
src, out, vocab, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t = time.perf_counter()
data = prepare([src], out, vocab, max_bytes_per_source=limit or None, progress=False)
e = data.entry()
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "bytes": e["train"]["bytes"] + e["test"]["bytes"],
                  "tokens": e["train"]["tokens"] + e["test"]["tokens"]}))
"""


def write_corpus(path: Path, total: int) -> int:
    """Documents of the installed sources as JSON Lines, up to ``total`` UTF-8 bytes."""
    names = [n for n in ORDER if BUILTIN[n].locate() is not None]
    written, copy = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < total:
            for name in names:
                for doc in get_source(name).documents(max_bytes=total - written):
                    text = doc if copy == 0 else f"copy {copy}\n{doc}"
                    f.write(json.dumps({"text": text}) + "\n")
                    written += len(text.encode())
                if written >= total:
                    break
            copy += 1
    return written


def run_child(source: str, out: Path, vocab: int, limit: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, source, str(out), str(vocab), str(limit)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"prepare failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=100.0, help="MB of text to prepare")
    parser.add_argument("--baseline-mb", type=float, default=10.0)
    parser.add_argument("--vocab-size", type=int, default=8192)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        t = time.perf_counter()
        n = write_corpus(corpus, int(args.mb * 1e6))
        print(f"corpus: {n / 1e6:.1f} MB of text in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        base = run_child(f"corpus=jsonl:{corpus}", Path(tmp) / "base", args.vocab_size,
                         int(args.baseline_mb * 1e6))
        print(f"baseline done: {base}", file=sys.stderr)
        full = run_child(f"corpus=jsonl:{corpus}", Path(tmp) / "full", args.vocab_size, 0)
    ratio = full["peak_rss_mb"] / base["peak_rss_mb"]
    ok = full["peak_rss_mb"] < TARGET_MB
    for label, r in (("baseline", base), ("full", full)):
        print(f"{label:8s}: {r['bytes'] / 1e6:7.1f} MB text, {r['tokens']:>12,} tokens, "
              f"{r['seconds']:6.1f} s, peak RSS {r['peak_rss_mb']:7.1f} MB")
    print(f"peak RSS ratio full / baseline: {ratio:.2f}x for {full['bytes'] / base['bytes']:.1f}x the text")
    print(f"RUSAGE_CHILDREN peak: {full['children_peak_rss_mb']:.1f} MB")
    print(f"result: {'OK' if ok else 'ABOVE TARGET'} (target < {TARGET_MB:.0f} MB)")
    print(json.dumps({"benchmark": "prepare_memory", "text_mb": round(full["bytes"] / 1e6, 1),
                      "tokens": full["tokens"], "vocab_size": args.vocab_size,
                      "seconds": round(full["seconds"], 1), "peak_rss_mb": round(full["peak_rss_mb"], 1),
                      "baseline_text_mb": round(base["bytes"] / 1e6, 1),
                      "baseline_peak_rss_mb": round(base["peak_rss_mb"], 1), "ratio": round(ratio, 3),
                      "target_mb": TARGET_MB, "ok": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
