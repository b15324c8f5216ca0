"""Speed of the CPU study's small models: ``lmscale train`` against an honest plain loop.

At the shapes of ``studies/kaplan-cpu.toml`` (n_layer/d_model 2/12, 2/48,
4/80; n_ctx 64, vocabulary 512, 2048-token batches) on the study's data
(the Python standard library for training; its docstrings and the
installed Debian texts as the other distributions; prepared once and
cached), alternating in one process, each round:

- ``plain``: the GPT-2 / nanoGPT loop of ``plain_gpt.py``, warm-up steps
  excluded, its loss checked to fall, on every CPU (PyTorch's default, as
  nanoGPT runs) and on 1 thread: the faster of the two is the baseline
  (the other is printed, and the ratio against the default);
- ``lmscale``: ``lmscale.training.train`` with its thread count left to it
  (``lmscale train``'s default: 1 or every CPU, whichever it measured
  faster for the shape; ``--threads`` sets it) and every measurement the study
  records (learning-curve points with the test loss on every distribution,
  the noise scale, the per-position loss at the end); its training
  tokens/s (the record's, evaluations left out) and its tokens per second
  of wall time (everything included);
- ``no-noise``: the same without the noise scale, for what the noise
  scale costs;
- ``packed``: ``--pack`` runs of the shape (other seeds and learning
  rates, as a study's variants) trained together by
  ``lmscale.training.packed.train_packed``: tokens/s per run and in
  aggregate;
- ``sweep``: one such pack per CPU in its own process with one thread, all
  at once: their aggregate tokens/s (all tokens over the longest pack's
  training time); and ``sweep-lone``, the same runs one after another in
  each process, as ``lmscale sweep run`` trains them with one-thread
  workers (what packing adds at one thread is the ratio of the two).

Ratios are against the plain loop of the same round; the best round of
each is kept (others' processes slow some rounds) and every round's ratio
is printed with the load average. The plain loop shares the process, and
with it what lmscale sets for a training process (freed memory kept for
reuse, ``lmscale.training.hardware.keep_freed_memory``): a baseline no
slower than nanoGPT run alone.

    .venv/bin/python benchmarks/bench_small.py
    .venv/bin/python benchmarks/bench_small.py --shapes 2/48 --rounds 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch  # OpenMP's default (spinning) waits, as `lmscale train` and nanoGPT run

from lmscale.accounting import applied_non_embedding_params  # noqa: E402
from lmscale.models import ModelSpec  # noqa: E402
from lmscale.models.shapes import paper_learning_rate  # noqa: E402
from lmscale.training import TrainConfig, train  # noqa: E402
from lmscale.training.hardware import cache_dir, configure_threads  # noqa: E402
from lmscale.training.packed import train_packed  # noqa: E402
from plain_gpt import run_plain  # noqa: E402

N_CTX, VOCAB, BATCH = 64, 512, 2048
SHAPES = {"2/12": 2, "2/48": 3, "4/80": 5}  # n_layer/d_model -> heads, as in the study
#: Training tokens per run at each shape (about 5-15 s per run on 2 quiet cores).
TOKENS = {"2/12": 500_000, "2/48": 250_000, "4/80": 100_000}
SOURCES = ["python-stdlib", "python-docs"]
OPTIONAL = ["bible-kjv", "jargon", "vim-help"]
#: The study's defaults (studies/kaplan-cpu.toml) that change what a run measures.
STUDY = {"eval_tokens": 8192, "eval_other_tokens": 2048, "curve_points_per_decade": 8}


def shards() -> Path:
    """The study's sources (those this machine has), 512-token BPE, 4 MB each, prepared once."""
    from lmscale.data import PreparedData, prepare
    from lmscale.sweeps.data import source_available

    here = [s for s in OPTIONAL if source_available(s)]
    out = cache_dir() / ("bench-small-" + "-".join(SOURCES + here))
    try:
        return Path(PreparedData.open(out).path)
    except Exception:
        prepare(SOURCES + here, out, vocab_size=VOCAB, max_bytes_per_source=4_000_000, progress=False,
                overwrite=True)
        return out


def config(spec: ModelSpec, data_dir: Path, tokens: int, threads: int | None, **kw) -> TrainConfig:
    return TrainConfig(model=spec, data_dir=str(data_dir), tokens=tokens, batch_tokens=BATCH,
                       device="cpu", threads=threads, **{**STUDY, **kw})


def lmscale_run(spec: ModelSpec, data_dir: Path, tokens: int, threads: int | None, **kw) -> dict[str, float]:
    """One ``lmscale train`` run; ``threads`` None: its own choice, as the CLI's default."""
    rec = train(config(spec, data_dir, tokens, threads, **kw), progress=False)
    if rec.status != "finished":
        raise RuntimeError(f"lmscale run {rec.status}: {rec.error}")
    return {"tok_s": rec.tokens_per_second, "wall_tok_s": rec.tokens / rec.wall_time_s,
            "loss": rec.curve[-1].train_loss, "evals": len(rec.curve), "device": rec.device}


def packed_run(spec: ModelSpec, data_dir: Path, tokens: int, threads: int, pack: int) -> dict[str, float]:
    lr = paper_learning_rate(applied_non_embedding_params(spec))
    configs = [config(spec, data_dir, tokens, threads, seed=i, lr=lr * (1.0 + 0.25 * (i % 3 - 1)))
               for i in range(pack)]
    recs = train_packed(configs)
    if any(r.status != "finished" for r in recs):
        raise RuntimeError(f"packed runs ended {[r.status for r in recs]}")
    wall = max(r.wall_time_s for r in recs)
    return {"tok_s": min(r.tokens_per_second for r in recs),
            "aggregate_tok_s": sum(r.tokens_per_second for r in recs),
            "wall_aggregate_tok_s": sum(r.tokens for r in recs) / wall}


def _pack_worker(args: tuple) -> tuple[int, float]:
    spec_dict, data_dir, tokens, pack, offset, packed = args
    configure_threads(1)
    spec = ModelSpec.from_dict(spec_dict)
    lr = paper_learning_rate(applied_non_embedding_params(spec))
    configs = [config(spec, Path(data_dir), tokens, 1, seed=offset + i, lr=lr * (1.0 + 0.25 * (i % 3 - 1)))
               for i in range(pack)]
    if packed:
        recs = train_packed(configs)
        return sum(r.tokens for r in recs), max(r.train_time_s for r in recs)
    recs = [train(c, progress=False) for c in configs]
    return sum(r.tokens for r in recs), sum(r.train_time_s for r in recs)


def sweep_run(spec: ModelSpec, data_dir: Path, tokens: int, pack: int, processes: int,
              packed: bool = True) -> dict[str, float]:
    """``pack`` runs per process (packed, or one after another), ``processes`` at once, one thread each."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(processes) as pool:
        out = pool.map(_pack_worker, [(spec.to_dict(), str(data_dir), tokens, pack, 10 * k, packed)
                                      for k in range(processes)])
    return {"aggregate_tok_s": sum(t for t, _ in out) / max(s for _, s in out)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=",".join(SHAPES), help="n_layer/d_model list (of 2/12, 2/48, 4/80)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (best one kept)")
    parser.add_argument("--threads", type=int,
                        help="torch threads of every loop (default: the plain loop on all CPUs and on 1, "
                             "lmscale its own choice, the packed runs on all CPUs)")
    parser.add_argument("--pack", type=int, default=3, help="runs trained together in the packed case")
    parser.add_argument("--tokens-scale", type=float, default=1.0, help="multiply the tokens per run")
    args = parser.parse_args()
    threads = configure_threads(args.threads)
    from lmscale.training.hardware import available_cpus

    processes = available_cpus()
    data_dir = shards()
    from lmscale.data import PreparedData

    data = PreparedData.open(data_dir)
    train_tokens = data.train_tokens(1_000_000)
    load = [os.getloadavg()[0]]
    print(f"{threads} thread(s); distributions {', '.join(data.distributions)}; "
          f"load average {load[0]:.2f} (other processes slow every number)", file=sys.stderr)
    results = []
    for item in args.shapes.split(","):
        n_layer, d_model = (int(v) for v in item.split("/"))
        spec = ModelSpec(n_layer=n_layer, d_model=d_model, n_head=SHAPES[item], n_ctx=N_CTX, n_vocab=VOCAB)
        tokens = int(TOKENS[item] * args.tokens_scale) // BATCH * BATCH
        lr = paper_learning_rate(applied_non_embedding_params(spec))
        rounds: list[dict[str, dict[str, float]]] = []
        for _ in range(args.rounds):
            plain = {}
            for count in sorted({threads, 1}, reverse=True):  # its default (every CPU), and 1 thread
                configure_threads(count)
                result = run_plain(train_tokens, n_layer, d_model, SHAPES[item], N_CTX, VOCAB, BATCH,
                                   steps=tokens // BATCH, lr=lr)
                plain[count] = {"tok_s": result.tokens_per_second, "first_loss": result.first_loss,
                                "loss": result.last_loss, "threads": count}
            configure_threads(threads)
            rounds.append({
                "plain": max(plain.values(), key=lambda p: p["tok_s"]),  # the faster thread count
                "plain_default": plain[threads],
                "lmscale": lmscale_run(spec, data_dir, tokens, args.threads),
                "no_noise": lmscale_run(spec, data_dir, tokens, args.threads, noise_scale=False),
                "packed": packed_run(spec, data_dir, tokens, threads, args.pack),
            })
            if processes > 1:
                rounds[-1]["sweep"] = sweep_run(spec, data_dir, tokens, args.pack, processes)
                rounds[-1]["sweep_lone"] = sweep_run(spec, data_dir, tokens, args.pack, processes, packed=False)
            load.append(os.getloadavg()[0])
        best = {k: max(rounds, key=lambda r, k=k: r[k].get("tok_s", r[k].get("aggregate_tok_s")) /
                       r["plain"]["tok_s"])[k] for k in rounds[0]}
        ratio = {k: [r[k]["tok_s"] / r["plain"]["tok_s"] for r in rounds] for k in rounds[0]
                 if not k.startswith(("sweep", "plain_"))}
        ratio_default = [r["lmscale"]["tok_s"] / r["plain_default"]["tok_s"] for r in rounds]
        agg = [r["packed"]["aggregate_tok_s"] / r["plain"]["tok_s"] for r in rounds]
        noise_cost = [1.0 - r["lmscale"]["tok_s"] / r["no_noise"]["tok_s"] for r in rounds]
        row = {"shape": item, "tokens": tokens, "threads": threads, "pack": args.pack, "rounds": rounds,
               "ratio_lmscale": max(ratio["lmscale"]), "ratio_lmscale_vs_plain_default": max(ratio_default),
               "plain_threads": best["plain"]["threads"], "lmscale_device": best["lmscale"]["device"],
               "ratio_lmscale_wall": max(r["lmscale"]["wall_tok_s"] / r["plain"]["tok_s"] for r in rounds),
               "ratio_packed_per_run": max(ratio["packed"]), "ratio_packed_aggregate": max(agg),
               "noise_scale_cost": min(noise_cost)}
        sweep = [r["sweep"]["aggregate_tok_s"] / r["plain"]["tok_s"] for r in rounds if "sweep" in r]
        sweep_lone = [r["sweep_lone"]["aggregate_tok_s"] / r["plain"]["tok_s"] for r in rounds if "sweep" in r]
        pack_gain = [r["sweep"]["aggregate_tok_s"] / r["sweep_lone"]["aggregate_tok_s"] for r in rounds if "sweep" in r]
        if sweep:
            row.update(ratio_sweep_aggregate=max(sweep), ratio_sweep_lone_aggregate=max(sweep_lone),
                       one_thread_pack_gain=pack_gain)
        results.append(row)
        fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
        base = rounds[max(range(len(rounds)), key=ratio["lmscale"].__getitem__)]["plain"]  # the baseline of the round quoted
        print(f"{item:>5}: plain {base['tok_s']:8.0f} tok/s on {base['threads']} thread(s) (loss "
              f"{base['first_loss']:.3f} -> {base['loss']:.3f}; on {threads}: {max(r['plain_default']['tok_s'] for r in rounds):.0f}) | "
              f"lmscale [{best['lmscale']['device']}] "
              f"{best['lmscale']['tok_s']:8.0f} tok/s training, {best['lmscale']['wall_tok_s']:8.0f} with "
              f"evaluations (loss {best['lmscale']['loss']:.3f}, {best['lmscale']['evals']} curve points)",
              flush=True)
        print(f"       ratio {row['ratio_lmscale']:.2f}x training against the faster plain loop "
              f"({row['ratio_lmscale_vs_plain_default']:.2f}x against it on {threads} threads), "
              f"{row['ratio_lmscale_wall']:.2f}x wall "
              f"(per round: {fmt(ratio['lmscale'])}); noise scale costs {row['noise_scale_cost']:.1%} of "
              f"the step (per round: {fmt(noise_cost)})", flush=True)
        print(f"       packed x{args.pack}: {best['packed']['tok_s']:8.0f} tok/s per run "
              f"({row['ratio_packed_per_run']:.2f}x), {best['packed']['aggregate_tok_s']:8.0f} aggregate "
              f"({row['ratio_packed_aggregate']:.2f}x; per round: {fmt(agg)})", flush=True)
        if sweep:
            print(f"       {processes} processes at once, 1 thread each: packs {max(sweep):.2f}x aggregate "
                  f"(per round: {fmt(sweep)}); runs one by one (as a sweep) {max(sweep_lone):.2f}x (per round: "
                  f"{fmt(sweep_lone)}); packing at one thread {fmt(pack_gain)}x", flush=True)
    print(json.dumps({"benchmark": "small", "threads": threads, "processes": processes, "torch": torch.__version__,
                      "load_average": load, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
