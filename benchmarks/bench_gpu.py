"""GPU throughput: lmscale's training at the kaplan-gpu study's sizes beside a nanoGPT-style loop.

For each size of the ``sizes`` group of ``studies/kaplan-gpu.toml`` (1e5 to
1e8 non-embedding parameters; n_ctx 512, vocabulary 8192, batches of 131,072
tokens in micro-batches of 32,768), on one CUDA device, this trains

- ``lmscale``: ``lmscale.training.train`` with the study's run config as it
  stands (``precision = "auto"``: bf16 autocast on compute capability 8.0 or
  more; ``torch.compile``, its CUDA default; noise scale and curve points
  on). Its tokens/s are those of steady training: the difference of a run
  of ``2 x --steps`` and one of ``--steps`` steps (training time only, the
  evaluations left out), so compilation and the first steps cancel; a
  throw-away run fills the compilation caches first;
- ``plain``: the GPT-2 / nanoGPT loop of ``plain_gpt.py`` as nanoGPT's
  train.py runs on a GPU (GPT-2 initialisation, fused AdamW, bf16 autocast,
  ``torch.compile``, gradient accumulation over the same micro-batches),
  same shape, batch and peak learning rate, its first ``--warmup`` steps
  (compilation included) untimed and its loss checked to fall;

on real text (the Python standard library in an 8192-id BPE, prepared once
and cached; the study's web text needs the network). MFU = model FLOPs
(3 x forward with attention and logits, ``lmscale.accounting``) per second
over the bf16 matmul peak measured here, and over the card's datasheet
dense bf16 peak where the card is known (the usual convention; the issue's
target: at least 45% at 1e8 parameters).

    .venv/bin/python benchmarks/bench_gpu.py                       # every size, 200 steps
    PYTHONPATH=src python3 benchmarks/bench_gpu.py --steps 100     # with a GPU machine's own PyTorch
    .venv/bin/python benchmarks/bench_gpu.py --sizes 3 --steps 50  # the first three sizes
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --sizes 2 --steps 6 --warmup 2 --batch-tokens 4096

The last checks the procedure on a CPU (about 1.5 minutes on 2 cores); its
ratios are not a CPU benchmark (there the plain loop runs PyTorch's bf16
attention kernels, which are slow on a CPU: bench_small.py and
bench_training.py measure CPUs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from lmscale.accounting import non_embedding_params, training_flops_per_token
from lmscale.sweeps.spec import load_study
from lmscale.training import TrainConfig, train
from lmscale.training.hardware import matmul_peak, resolve_device
from plain_gpt import run_plain
from stdlib_shards import stdlib_shards

STUDY = Path(__file__).resolve().parents[1] / "studies" / "kaplan-gpu.toml"
VOCAB = 8192
#: Dense bf16 tensor-core peaks from the vendors' datasheets (FLOP/s), by a name the device reports.
DATASHEET_BF16 = {"H100 SXM": 989.4e12, "H100 80GB HBM3": 989.4e12, "H100 PCIe": 756.5e12,
                  "H100 NVL": 835.5e12, "H200": 989.4e12, "A100": 312e12}


def datasheet_peak(name: str) -> float | None:
    return next((v for k, v in DATASHEET_BF16.items() if k in name), None)


def shards() -> Path:
    """Python standard library, 8192-token BPE, prepared once per machine."""
    return stdlib_shards(VOCAB)


def study_configs(data_dir: Path) -> list[TrainConfig]:
    """The sizes group's run configs, on the local shards."""
    study = load_study(STUDY)
    # the evaluations' cost is left out of the tokens/s; fewer test tokens save device time
    return [dataclasses.replace(r.config, data_dir=str(data_dir), checkpoint_dir=None, early_stopping=False,
                                eval_tokens=min(r.config.eval_tokens, 65536), eval_other_tokens=8192)
            for r in study.runs if r.group == "sizes"]


def lmscale_steady(config: TrainConfig, steps: int) -> dict[str, float]:
    """Steady tokens/s of lmscale: (run of 2 steps' worth - run of 1) over their training seconds."""
    def run(n: int):
        rec = train(dataclasses.replace(config, steps=n, tokens=None), progress=False)
        if rec.status != "finished":
            raise RuntimeError(f"lmscale run {rec.status}: {rec.error}")
        return rec

    run(max(2, steps // 10))  # fills the compilation caches
    short, long = run(steps), run(2 * steps)
    seconds = long.train_time_s - short.train_time_s
    tokens = long.tokens - short.tokens
    return {"tok_s": tokens / seconds, "record_tok_s": long.tokens_per_second, "precision": long.precision,
            "peak_lr": long.peak_lr, "loss": long.curve[-1].train_loss, "device": long.device}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (the procedure at small sizes)")
    parser.add_argument("--sizes", type=int, help="the first K sizes of the group (default: all)")
    parser.add_argument("--steps", type=int, default=200, help="steady steps timed per size and side")
    parser.add_argument("--warmup", type=int, default=20, help="plain loop: untimed first steps")
    parser.add_argument("--batch-tokens", type=int, help="replace the study's batch (and micro-batch)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here, nothing measured (--device cpu runs the procedure)", file=sys.stderr)
        print(json.dumps({"benchmark": "gpu", "skipped": "no CUDA device"}))
        return 0
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as nanoGPT sets it, for both sides
        torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = matmul_peak(device, refresh=True, dtype="bf16", seconds=3.0)
    sheet = datasheet_peak(name)
    data_dir = shards()
    from lmscale.data import PreparedData

    tokens = PreparedData.open(data_dir).train_tokens(5_000_000)
    print(f"{name}: bf16 matmul peak measured {peak / 1e12:.1f} TFLOP/s; datasheet "
          f"{f'{sheet / 1e12:.1f} TFLOP/s' if sheet else 'unknown'}", file=sys.stderr)
    results = []
    for config in study_configs(data_dir)[:args.sizes]:
        if args.batch_tokens:
            config = dataclasses.replace(config, batch_tokens=args.batch_tokens, micro_batch_tokens=None)
        config = dataclasses.replace(config, device=args.device)
        spec = config.model
        t0 = time.perf_counter()
        lm = lmscale_steady(config, args.steps)
        plain = run_plain(tokens, spec.n_layer, spec.d_model, spec.n_head, spec.n_ctx, spec.n_vocab,
                          config.batch_tokens, args.steps, lr=lm["peak_lr"], warmup=args.warmup,
                          device=args.device, precision=lm["precision"], compile=device.type == "cuda",
                          micro_batch_tokens=config.micro_batch_tokens)
        flops = training_flops_per_token(spec, exact=True)
        row = {"shape": f"{spec.n_layer}/{spec.d_model}", "N": non_embedding_params(spec),
               "lmscale": lm, "plain_tok_s": plain.tokens_per_second,
            "plain_loss": [plain.first_loss, plain.last_loss], "ratio": lm["tok_s"] / plain.tokens_per_second,
            "mfu_measured_peak": {"lmscale": lm["tok_s"] * flops / peak,
                                  "plain": plain.tokens_per_second * flops / peak},
            "seconds": time.perf_counter() - t0}
        if sheet:
            row["mfu_datasheet"] = {"lmscale": lm["tok_s"] * flops / sheet,
                                    "plain": plain.tokens_per_second * flops / sheet}
        results.append(row)
        mfu = row.get("mfu_datasheet", row["mfu_measured_peak"])
        print(f"N {row['N']:>11,} {row['shape']:>7}: lmscale {lm['tok_s']:10.0f} tok/s ({lm['precision']}, MFU "
              f"{mfu['lmscale']:.1%})  plain {plain.tokens_per_second:10.0f} tok/s (MFU {mfu['plain']:.1%})  "
              f"ratio {row['ratio']:.2f}x  [{row['seconds']:.0f} s]", flush=True)
    print(json.dumps({"benchmark": "gpu", "device": name, "bf16_peak_measured": peak, "bf16_peak_datasheet": sheet,
                      "steps": args.steps, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
