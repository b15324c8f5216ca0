"""Tokenization throughput: lmscale's encoder vs Hugging Face ``encode_batch``, same tokenizer.

Builds ~30 MB of real text (the Python standard library and whichever Debian
text packages are installed), trains one byte-level BPE on part of it, then
encodes all of it on 2 cores with

- lmscale: ``BPETokenizer.encode_arrays`` (tiktoken, one thread per core);
- baseline: the same tokenizer as a ``tokenizers.Tokenizer``, ``encode_batch``
  (Rayon, ``RAYON_NUM_THREADS=2``),

checks that both give the same ids, and prints MB/s of each (best of
``--repeat``), the ratio, CPU-seconds per MB, and a final JSON line.
Targets: lmscale >= 10 MB/s and >= 3x the baseline.

Wall-clock MB/s depends on what else runs on the machine; the CPU-seconds
per MB do not, and ``cores / (CPU-s per MB)`` is the rate the same work
reaches on otherwise idle cores (printed as "idle-core estimate").

    .venv/bin/python benchmarks/bench_tokenizer.py [--mb 30] [--vocab-size 8192] [--repeat 3]
"""

from __future__ import annotations

import os

THREADS = 2
os.environ.setdefault("RAYON_NUM_THREADS", str(THREADS))  # before tokenizers starts its pool
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from lmscale.data.sources import BUILTIN, get_source  # noqa: E402
from lmscale.data.tokenizer import train_bpe  # noqa: E402

TARGET_MBPS = 10.0
TARGET_RATIO = 3.0
#: Share of the text each source contributes (of those installed).
MIX = {"python-stdlib": 0.4, "gcide": 0.15, "vim-help": 0.15, "bible-web": 0.1, "bible-kjv": 0.1,
       "jargon": 0.05, "python-docs": 0.05}


def corpus(total_bytes: int) -> tuple[list[str], dict[str, int]]:
    names = [n for n in MIX if BUILTIN[n].locate() is not None]
    weight = sum(MIX[n] for n in names)
    texts, sizes = [], {}
    for name in names:
        stats_bytes = 0
        for doc in get_source(name).documents(max_bytes=int(total_bytes * MIX[name] / weight)):
            texts.append(doc)
            stats_bytes += len(doc.encode())
        sizes[name] = stats_bytes
    return texts, sizes


def timed(fn, repeat: int) -> tuple[float, float, object]:
    best_wall, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=30.0, help="MB of text to encode")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--train-mb", type=float, default=8.0, help="MB of that text the BPE trains on")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes of each (best kept)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > THREADS:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:THREADS])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    texts, sizes = corpus(int(args.mb * 1e6))
    mb = sum(sizes.values()) / 1e6
    print(f"text: {mb:.1f} MB, {len(texts):,} documents from {', '.join(sizes)}", file=sys.stderr)
    step = max(1, int(mb / args.train_mb))
    t = time.perf_counter()
    tok = train_bpe(texts[::step], args.vocab_size)
    print(f"trained BPE ({tok.vocab_size} ids) in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    hf = tok.to_hf()

    ours_wall, ours_cpu, ours = timed(lambda: tok.encode_arrays(texts, THREADS), args.repeat)
    hf_wall, hf_cpu, theirs = timed(lambda: hf.encode_batch(texts, add_special_tokens=False), args.repeat)
    same = all(a.tolist() == e.ids for a, e in zip(ours, theirs))
    n_tokens = sum(len(a) for a in ours)

    ours_mbps, hf_mbps = mb / ours_wall, mb / hf_wall
    ratio = ours_mbps / hf_mbps
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    ok = ours_mbps >= TARGET_MBPS and ratio >= TARGET_RATIO and same
    idle_ours, idle_hf = cores * mb / ours_cpu, cores * mb / hf_cpu
    ok_idle = idle_ours >= TARGET_MBPS and idle_ours / idle_hf >= TARGET_RATIO and same
    print(f"text              : {mb:.1f} MB, {n_tokens:,} tokens ({mb * 1e6 / n_tokens:.2f} bytes/token), "
          f"vocab {tok.vocab_size}, {cores} cores, load average {load:.1f}")
    print(f"lmscale (tiktoken): {ours_mbps:7.2f} MB/s  ({ours_cpu / mb:.3f} CPU-s per MB)")
    print(f"HF encode_batch   : {hf_mbps:7.2f} MB/s  ({hf_cpu / mb:.3f} CPU-s per MB)")
    print(f"ratio             : {ratio:7.2f}x   (targets: >= {TARGET_MBPS} MB/s, >= {TARGET_RATIO}x)")
    print(f"idle-core estimate: lmscale {idle_ours:.2f} MB/s, HF {idle_hf:.2f} MB/s, "
          f"ratio {idle_ours / idle_hf:.2f}x")
    print(f"identical ids     : {same}")
    print(f"result            : wall {'OK' if ok else 'BELOW TARGET'}, "
          f"idle-core estimate {'OK' if ok_idle else 'BELOW TARGET'}")
    print(json.dumps({"benchmark": "tokenizer", "mb": round(mb, 2), "tokens": n_tokens,
                      "vocab_size": tok.vocab_size, "cores": cores, "load_average": round(load, 2),
                      "lmscale_mb_per_s": round(ours_mbps, 2), "hf_mb_per_s": round(hf_mbps, 2),
                      "ratio": round(ratio, 2), "lmscale_cpu_s_per_mb": round(ours_cpu / mb, 4),
                      "hf_cpu_s_per_mb": round(hf_cpu / mb, 4), "identical_ids": same,
                      "idle_core_lmscale_mb_per_s": round(idle_ours, 2),
                      "idle_core_hf_mb_per_s": round(idle_hf, 2), "ok_idle_core_estimate": ok_idle,
                      "target_mb_per_s": TARGET_MBPS, "target_ratio": TARGET_RATIO, "ok": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
