"""Training throughput and MFU of lmscale's engine against an honest plain PyTorch GPT loop.

For n_layer/d_model = 2/128, 4/256 and 6/384 (n_ctx 256, vocab 4096, batch
8192 tokens) on real shards (the Python standard library, 4096-token BPE,
prepared once and cached), this trains

- ``lmscale``: ``lmscale.training.train`` in fp32 with its measurements on
  (noise scale, smoothed loss, learning-curve points; its tokens/s counts
  training steps, not the test evaluations, and includes its first steps);
  at 2/128 also without the noise scale, to show what it costs;
- ``plain``: the GPT-2 / nanoGPT loop of ``plain_gpt.py`` (GPT-2
  initialisation, nanoGPT's AdamW, logits -> F.cross_entropy), same shape,
  batch and learning rate, its first ``--warmup`` steps excluded from the
  timing and its loss checked to fall;

alternately, three rounds each, and keeps each one's best tokens/s (the
per-round ratios are printed too: on a shared machine other processes slow
some rounds). MFU = model FLOPs (3 x forward with attention and logits,
lmscale.accounting) per second over the fp32 matmul peak measured in this
run. Denormal floats: left as PyTorch leaves them on both sides, or flushed
on both with ``--flush-denormal``. OpenMP: its default (spinning) waits on
both sides, as ``lmscale train`` and nanoGPT run; ``--openmp-passive``
makes idle threads sleep on both, as lmscale's sweep workers do.

Where the CPU has native bf16 (``--bf16``, default: when it does), lmscale
in bf16 against lmscale in fp32 at 6/384: tokens/s, and the training loss
after ``--bf16-steps`` steps of each (same seed and data) with their
relative difference.

    .venv/bin/python benchmarks/bench_training.py            # all three sizes
    .venv/bin/python benchmarks/bench_training.py --sizes 2/128 --repeats 1 --no-bf16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lmscale.training.hardware import OPENMP_ENV, prefer_passive_openmp

if "--openmp-passive" in sys.argv:
    prefer_passive_openmp()  # as sweep workers run; applies to both loops alike

import torch  # noqa: E402

from lmscale.accounting import applied_non_embedding_params, training_flops_per_token  # noqa: E402
from lmscale.models import ModelSpec  # noqa: E402
from lmscale.models.shapes import paper_learning_rate  # noqa: E402
from lmscale.training import TrainConfig, train  # noqa: E402
from lmscale.training.hardware import (  # noqa: E402
    configure_threads,
    matmul_peak,
)
from lmscale.training.precision import native_bf16  # noqa: E402
from plain_gpt import run_plain
from stdlib_shards import stdlib_shards  # noqa: E402

N_CTX, VOCAB, BATCH = 256, 4096, 8192
#: Optimizer steps per measurement, per size (about 10-40 s each on 2 quiet cores).
STEPS = {(2, 128): 30, (4, 256): 12, (6, 384): 6}


def shards() -> Path:
    """Python standard library, 4096-token BPE, prepared once per machine."""
    return stdlib_shards(VOCAB)


def lmscale_run(spec: ModelSpec, data_dir: Path, steps: int, noise_scale: bool = True,
                precision: str = "fp32", batch: int = BATCH) -> tuple[float, float]:
    """(training tokens/s, final smoothed training loss) of one lmscale run."""
    config = TrainConfig(model=spec, data_dir=str(data_dir), steps=steps, batch_tokens=batch,
                         eval_tokens=4096, device="cpu", noise_scale=noise_scale, precision=precision,
                         lr=lr_of(spec))
    record = train(config, progress=False)
    if record.status != "finished":
        raise RuntimeError(f"lmscale run {record.status}: {record.error}")
    return record.tokens_per_second, record.curve[-1].train_loss


def lr_of(spec: ModelSpec) -> float:
    return paper_learning_rate(applied_non_embedding_params(spec))


def plain_run(spec: ModelSpec, tokens, steps: int, warmup: int) -> tuple[float, list[float]]:
    """(tokens/s, [first loss, mean of the last 10]) of the plain loop (it raises if the loss did not fall)."""
    result = run_plain(tokens, spec.n_layer, spec.d_model, spec.n_head, N_CTX, VOCAB, BATCH, steps,
                       lr=lr_of(spec), warmup=warmup)
    return result.tokens_per_second, [result.first_loss, result.last_loss]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2/128,4/256,6/384", help="n_layer/d_model list")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds (best one kept)")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply the step counts")
    parser.add_argument("--warmup", type=int, default=2, help="plain loop: untimed first steps")
    parser.add_argument("--flush-denormal", action="store_true", help="flush denormal floats (both sides)")
    parser.add_argument("--bf16", dest="bf16", action="store_true", default=None,
                        help="lmscale bf16 vs fp32 at 6/384 (default: where bf16 is native)")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false")
    parser.add_argument("--bf16-steps", type=int, default=200,
                        help="steps of the bf16 vs fp32 loss comparison (the target: within 1%% after 200)")
    parser.add_argument("--openmp-passive", action="store_true",
                        help=f"both loops with {OPENMP_ENV}, as sweep workers run (default: OpenMP's "
                             "spinning waits, as 'lmscale train' and nanoGPT run)")
    args = parser.parse_args()
    openmp = {k: os.environ.get(k) for k in OPENMP_ENV}
    threads = configure_threads(None)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    data_dir = shards()
    from lmscale.data import PreparedData

    tokens = PreparedData.open(data_dir).train_tokens(4_000_000)
    load = [os.getloadavg()[0]]
    cpu = torch.device("cpu")
    # the machine's peak: measured now, or the cached one if higher (a busy spell lowers it)
    peak = matmul_peak(cpu, refresh=True, seconds=3.0)
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s on {threads} threads; OpenMP {openmp}; denormals "
          f"{'flushed' if args.flush_denormal else 'kept'} on both sides "
          f"(load average {load[0]:.2f}; other processes on this machine slow every number)",
          file=sys.stderr)
    results = []
    for item in args.sizes.split(","):
        n_layer, d_model = (int(v) for v in item.split("/"))
        spec = ModelSpec(n_layer=n_layer, d_model=d_model, n_head=max(1, d_model // 64),
                         n_ctx=N_CTX, n_vocab=VOCAB)
        steps = max(2, int(STEPS.get((n_layer, d_model), 10) * args.steps_scale))
        runs: dict[str, list[float]] = {"lmscale": [], "plain": [], "no_noise": []}
        plain_losses = []
        for _ in range(args.repeats):  # alternate, so that a busy spell hits both
            tok_s, losses = plain_run(spec, tokens, steps, args.warmup)
            runs["plain"].append(tok_s)
            plain_losses.append(losses)
            runs["lmscale"].append(lmscale_run(spec, data_dir, steps)[0])
            if (n_layer, d_model) == (2, 128):  # what the noise scale costs: with vs without it
                runs["no_noise"].append(lmscale_run(spec, data_dir, steps, noise_scale=False)[0])
            load.append(os.getloadavg()[0])
        best = {k: max(v) if v else 0.0 for k, v in runs.items()}
        flops_per_token = training_flops_per_token(spec, exact=True)
        row = {
            "size": item, "steps": steps, "batch_tokens": BATCH,
            "lmscale_tokens_per_s": best["lmscale"], "plain_tokens_per_s": best["plain"],
            "ratio": best["lmscale"] / best["plain"],
            "round_ratios": [a / b for a, b in zip(runs["lmscale"], runs["plain"])],
            "lmscale_mfu": best["lmscale"] * flops_per_token / peak,
            "plain_mfu": best["plain"] * flops_per_token / peak,
            "plain_loss_first_last": plain_losses,  # per round: the baseline trains
            "runs": runs,
        }
        if best["no_noise"]:
            row["noise_scale_overhead"] = 1.0 - best["lmscale"] / best["no_noise"]
        results.append(row)
        rounds = ", ".join(f"{r:.2f}" for r in row["round_ratios"])
        print(f"{item:>6}: lmscale {row['lmscale_tokens_per_s']:8.0f} tok/s (MFU {row['lmscale_mfu']:.1%})"
              f"  plain {row['plain_tokens_per_s']:8.0f} tok/s (MFU {row['plain_mfu']:.1%})"
              f"  ratio {row['ratio']:.2f}x (per round: {rounds}); plain loss "
              + ", ".join(f"{a:.2f} -> {b:.2f}" for a, b in plain_losses), flush=True)
        if "noise_scale_overhead" in row:
            print(f"        noise scale costs {row['noise_scale_overhead']:+.1%} of lmscale's throughput "
                  f"({best['no_noise']:.0f} tok/s without it)", flush=True)
    bf16 = bf16_against_fp32(data_dir, args, load, peak) if (
        args.bf16 if args.bf16 is not None else native_bf16(cpu)) else None
    print(json.dumps({"benchmark": "training", "peak_flops": peak, "threads": threads, "openmp": openmp,
                      "flush_denormal": args.flush_denormal, "load_average": load, "results": results,
                      "bf16": bf16}))
    return 0


def bf16_against_fp32(data_dir: Path, args: argparse.Namespace, load: list[float], peak32: float) -> dict:
    """lmscale at 6/384 in bf16 and in fp32: tokens/s (alternating) and the loss after N steps.

    Also the ratio of the two matmul peaks measured here (``peak32``: the fp32
    one): bf16 speeds up the matmuls, not the element-wise work or the
    optimizer, so the step's ratio stays below it.
    """
    cpu = torch.device("cpu")
    peak16 = matmul_peak(cpu, refresh=True, dtype="bf16", seconds=3.0)  # as the fp32 peak
    spec = ModelSpec(n_layer=6, d_model=384, n_head=6, n_ctx=N_CTX, n_vocab=VOCAB)
    steps = max(2, int(STEPS[(6, 384)] * args.steps_scale))
    speed: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(args.repeats):
        for precision in ("fp32", "bf16"):
            speed[precision].append(lmscale_run(spec, data_dir, steps, precision=precision)[0])
        load.append(os.getloadavg()[0])
    ratio = max(speed["bf16"]) / max(speed["fp32"])
    # the loss after --bf16-steps steps of 2048 tokens, same seed and data
    loss = {p: lmscale_run(spec, data_dir, args.bf16_steps, precision=p, batch=2048)[1]
            for p in ("fp32", "bf16")}
    rel = loss["bf16"] / loss["fp32"] - 1.0
    flops = training_flops_per_token(spec, exact=True)
    print(f" 6/384: bf16 {max(speed['bf16']):8.0f} tok/s (MFU {max(speed['bf16']) * flops / peak16:.1%} of the "
          f"bf16 peak {peak16 / 1e9:.0f} GFLOP/s)  fp32 {max(speed['fp32']):8.0f} tok/s  ratio {ratio:.2f}x "
          f"(per round: {', '.join(f'{a / b:.2f}' for a, b in zip(speed['bf16'], speed['fp32']))})", flush=True)
    print(f"        matmul peaks here: bf16 / fp32 = {peak16 / peak32:.2f}x (the matmuls' gain; a step, "
          "its element-wise work and optimizer in fp32, gains less)",
          flush=True)
    print(f"        loss after {args.bf16_steps} steps of 2048 tokens: bf16 {loss['bf16']:.4f}, "
          f"fp32 {loss['fp32']:.4f} ({rel:+.2%})", flush=True)
    return {"tokens_per_s": speed, "ratio": ratio, "bf16_peak_flops": peak16, "peak_ratio": peak16 / peak32,
            "loss_steps": args.bf16_steps,
            "loss": loss, "loss_rel_diff": rel}


if __name__ == "__main__":
    sys.exit(main())
