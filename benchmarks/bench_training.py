"""Training throughput and MFU of lmscale's engine against a plain PyTorch GPT loop.

For n_layer/d_model = 2/128, 4/256 and 6/384 (n_ctx 256, vocab 4096, batch
8192 tokens) on real shards (the Python standard library, 4096-token BPE,
prepared once and cached), this trains

- ``lmscale``: ``lmscale.training.train`` with its measurements on (noise
  scale from micro-batch gradients, smoothed loss, learning-curve points;
  its tokens/s counts training steps, not the test evaluations); at 2/128
  also without the noise scale, to show what it costs;
- ``plain``: a minimal GPT written here (nn.Module, nn.Linear, SDPA,
  logits -> F.cross_entropy, torch.optim.AdamW, clip_grad_norm_), same shape,
  same batch, same tokens;

alternately, three rounds each, and keeps each one's best tokens/s (the
per-round ratios are printed too: on a shared machine other processes slow
some rounds). MFU = model
FLOPs (3 x forward with attention and logits, lmscale.accounting) per second
over the fp32 matmul peak measured in this run.

    .venv/bin/python benchmarks/bench_training.py            # all three sizes
    .venv/bin/python benchmarks/bench_training.py --sizes 2/128 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from lmscale.training.hardware import OPENMP_ENV, prefer_passive_openmp

if "--openmp-default" not in sys.argv:
    prefer_passive_openmp()  # as 'lmscale train' does; applies to both loops alike

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from lmscale.accounting import training_flops_per_token  # noqa: E402
from lmscale.models import ModelSpec  # noqa: E402
from lmscale.training import TrainConfig, train  # noqa: E402
from lmscale.training.hardware import (  # noqa: E402
    cache_dir,
    configure_threads,
    matmul_peak,
    measure_matmul_peak,
)

N_CTX, VOCAB, BATCH = 256, 4096, 8192
#: Optimizer steps per measurement, per size (about 10-30 s each on 2 quiet cores).
STEPS = {(2, 128): 20, (4, 256): 8, (6, 384): 4}


def shards() -> Path:
    """Python standard library, 4096-token BPE, prepared once per machine."""
    from lmscale.data import PreparedData, prepare

    out = cache_dir() / "bench-shards-python-stdlib-bpe4096"
    try:
        return Path(PreparedData.open(out).path)
    except Exception:
        prepare(["python-stdlib"], out, vocab_size=VOCAB, max_bytes_per_source=20_000_000,
                progress=False, overwrite=True)
        return out


# -- the baseline: a minimal GPT and its training loop ------------------------------


class Block(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, -1).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class PlainGPT(nn.Module):
    def __init__(self, n_layer: int, d: int, n_head: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, d), nn.Embedding(N_CTX, d)
        self.blocks = nn.ModuleList(Block(d, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, VOCAB, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def plain_tokens_per_second(spec: ModelSpec, data_dir: Path, steps: int) -> float:
    from lmscale.data import PreparedData

    tokens = PreparedData.open(data_dir).train_tokens(steps * BATCH + 1)
    torch.manual_seed(0)
    model = PlainGPT(spec.n_layer, spec.d_model, spec.n_head)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    start = time.perf_counter()
    for step in range(steps):
        chunk = torch.from_numpy(tokens[step * BATCH: (step + 1) * BATCH + 1].astype("int64"))
        x = chunk[:-1].view(-1, N_CTX)
        y = chunk[1:].view(-1, N_CTX)
        loss = F.cross_entropy(model(x).view(-1, VOCAB), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - start
    if not math.isfinite(loss.item()):
        raise RuntimeError("baseline diverged")
    return steps * BATCH / elapsed


def lmscale_tokens_per_second(spec: ModelSpec, data_dir: Path, steps: int, noise_scale: bool = True) -> float:
    config = TrainConfig(model=spec, data_dir=str(data_dir), steps=steps, batch_tokens=BATCH,
                         eval_tokens=4096, device="cpu", noise_scale=noise_scale)
    record = train(config, progress=False)
    if record.status != "finished":
        raise RuntimeError(f"lmscale run {record.status}: {record.error}")
    return record.tokens_per_second


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2/128,4/256,6/384", help="n_layer/d_model list")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds (best one kept)")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply the step counts")
    parser.add_argument("--openmp-default", action="store_true",
                        help=f"keep OpenMP's spinning waits (default: {OPENMP_ENV}, like 'lmscale train')")
    args = parser.parse_args()
    openmp = {k: os.environ.get(k) for k in OPENMP_ENV}
    threads = configure_threads(None)
    data_dir = shards()
    load = [os.getloadavg()[0]]
    cpu = torch.device("cpu")
    # the machine's peak: measured now, or the cached one if higher (a busy spell lowers it)
    peak = max(measure_matmul_peak(cpu, seconds=3.0), matmul_peak(cpu, refresh=True))
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s on {threads} threads; OpenMP {openmp} "
          f"(load average {load[0]:.2f}; other processes on this machine slow every number)",
          file=sys.stderr)
    results = []
    for item in args.sizes.split(","):
        n_layer, d_model = (int(v) for v in item.split("/"))
        spec = ModelSpec(n_layer=n_layer, d_model=d_model, n_head=max(1, d_model // 64),
                         n_ctx=N_CTX, n_vocab=VOCAB)
        steps = max(2, int(STEPS.get((n_layer, d_model), 10) * args.steps_scale))
        runs: dict[str, list[float]] = {"lmscale": [], "plain": [], "no_noise": []}
        for _ in range(args.repeats):  # alternate, so that a busy spell hits both
            runs["plain"].append(plain_tokens_per_second(spec, data_dir, steps))
            runs["lmscale"].append(lmscale_tokens_per_second(spec, data_dir, steps))
            if (n_layer, d_model) == (2, 128):  # what the noise scale costs: with vs without it
                runs["no_noise"].append(lmscale_tokens_per_second(spec, data_dir, steps, noise_scale=False))
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
            "runs": runs,
        }
        if best["no_noise"]:
            row["noise_scale_overhead"] = 1.0 - best["lmscale"] / best["no_noise"]
        results.append(row)
        rounds = ", ".join(f"{r:.2f}" for r in row["round_ratios"])
        print(f"{item:>6}: lmscale {row['lmscale_tokens_per_s']:8.0f} tok/s (MFU {row['lmscale_mfu']:.1%})"
              f"  plain {row['plain_tokens_per_s']:8.0f} tok/s (MFU {row['plain_mfu']:.1%})"
              f"  ratio {row['ratio']:.2f}x (per round: {rounds})", flush=True)
        if "noise_scale_overhead" in row:
            print(f"        noise scale costs {row['noise_scale_overhead']:+.1%} of lmscale's throughput "
                  f"({best['no_noise']:.0f} tok/s without it)", flush=True)
    print(json.dumps({"benchmark": "training", "peak_flops": peak, "threads": threads, "openmp": openmp,
                      "load_average": load, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
