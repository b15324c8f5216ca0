"""``lmscale train``: one run of the [K] recipe on prepared shards (thin over lmscale.training)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from lmscale.cli._common import _jsonable, add_parser, print_json

DESCRIPTION = """\
Train one language model on prepared token shards and record its run:
a learning curve at log-spaced steps (>= 8 per decade of tokens) with the
test loss on every prepared distribution, the gradient noise scale
B_simple, loss per context position, tokens/s and MFU.

The recipe is that of Kaplan et al. 2020: AdamW, linear warm-up then cosine
decay to zero, learning rate LR(N) = 0.003239 - 0.0001395 ln N ([K] eq. D.1)
unless --lr is given, gradient clipping at 1, batch --batch-tokens reached
by gradient accumulation. Give exactly one budget: --tokens, --steps or
--flops (6 N per token).

Examples:
  lmscale data prepare --source python-stdlib --source python-docs --vocab-size 4096 --out shards
  lmscale train --data shards --n-layer 2 --d-model 128 --tokens 2e6 --out run.json
  # trained to convergence on the test loss, resumable
  lmscale train --data shards --n-layer 4 --d-model 256 --tokens 5e7 --early-stopping \\
      --checkpoint-dir ckpt
  # data parallel on 2 processes (gloo on CPU, NCCL on GPUs)
  torchrun --nproc-per-node 2 -m lmscale train --data shards --steps 1000 --json
  # bf16 autocast with fp32 master weights (auto: where this machine makes it pay)
  lmscale train --data shards --n-layer 6 --d-model 384 --tokens 1e7 --precision bf16

A run whose loss becomes non-finite or explodes is reported as 'diverged'
(exit status 1). With --checkpoint-dir, re-running the same command resumes
where it stopped (Ctrl-C checkpoints first, exit status 130), and a finished
run returns its stored record. Errors in the input exit with status 2 before
any training.
"""


def _count(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value.is_integer() or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(value)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not positive")
    return value


def register(sub: Any) -> None:
    p = add_parser(sub, "train", help="train one model and record its learning curve",
                   description=DESCRIPTION)
    p.add_argument("--data", required=True, metavar="DIR", help="prepared data directory")
    shape = p.add_argument_group("model shape (as in 'lmscale model describe')")
    shape.add_argument("--arch", default="transformer", choices=("transformer", "universal", "lstm"),
                       help="architecture")
    shape.add_argument("--n-layer", type=int, default=2, help="blocks (LSTM: layers)")
    shape.add_argument("--d-model", type=int, default=128, help="residual width")
    shape.add_argument("--n-head", type=int, default=4, help="attention heads")
    shape.add_argument("--d-ff", type=int, help="feed-forward width (default 4 d_model)")
    shape.add_argument("--n-ctx", type=int, default=256, help="context length")
    shape.add_argument("--n-vocab", type=int, help="vocabulary (default: the data's)")
    shape.add_argument("--dropout", type=float, default=0.0, help="dropout probability")
    budget = p.add_argument_group("budget (exactly one)").add_mutually_exclusive_group(required=True)
    budget.add_argument("--tokens", type=_count, help="training tokens D (e.g. 2e6)")
    budget.add_argument("--steps", type=_count, help="optimizer steps")
    budget.add_argument("--flops", type=_positive_float, help="training FLOPs at 6 N per token")
    rec = p.add_argument_group("recipe")
    rec.add_argument("--batch-tokens", type=_count, default=8192, help="batch size B in tokens")
    rec.add_argument("--micro-batch-tokens", type=_count,
                     help="tokens per forward/backward pass (default: chosen from memory)")
    rec.add_argument("--dataset-tokens", type=_count,
                     help="train on the first D tokens only, repeating epochs (overfitting studies)")
    rec.add_argument("--lr", type=_positive_float, help="peak learning rate (default [K] eq. D.1)")
    rec.add_argument("--schedule", default="cosine", choices=("cosine", "wsd", "constant"),
                     help="decay after the warm-up")
    rec.add_argument("--warmup-steps", type=int, help="warm-up steps (default min(3000, 5%% of steps))")
    rec.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay")
    rec.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clip (0: off)")
    rec.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    rec.add_argument("--early-stopping", action="store_true",
                     help="stop when the test loss stops improving (trained to convergence)")
    rec.add_argument("--patience", type=int, default=3, help="evaluations without improvement")
    meas = p.add_argument_group("measurement")
    meas.add_argument("--eval-tokens", type=_count, default=65536,
                      help="test tokens per distribution per evaluation")
    meas.add_argument("--eval-other-tokens", type=_count,
                      help="test tokens per evaluation of the distributions other than the training one "
                           "(default: --eval-tokens)")
    meas.add_argument("--eval-every", type=_count, help="extra evaluations every this many steps")
    meas.add_argument("--no-noise-scale", action="store_true", help="do not measure B_simple")
    meas.add_argument("--noise-every", type=_count, default=8,
                      help="steps between two noise-scale measurements")
    exe = p.add_argument_group("execution")
    exe.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to train")
    exe.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                     help="fp32, bf16 autocast (fp32 weights), or auto: bf16 where this machine's bf16 "
                          "matmuls are native and measured faster and the model is wide enough")
    exe.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                     help="torch.compile the model (default: on CUDA only)")
    exe.add_argument("--threads", type=int, help="torch threads (default: 1 or every CPU of this process, whichever "
                     "a short trial of this shape measured faster here; cached)")
    exe.add_argument("--checkpoint-dir", help="checkpoint here and resume from here")
    exe.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                     help="seconds between checkpoints")
    out = p.add_argument_group("output")
    out.add_argument("--out", help="write the run record (JSON) here")
    out.add_argument("--json", action="store_true", help="print a JSON summary")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> Any:
    """The TrainConfig of the command line (opens the data to default n_vocab)."""
    from lmscale.extras import TRAIN_MODULES, require

    # a lone run keeps OpenMP's spinning waits (sweep workers sleep instead, lmscale.sweeps.local):
    # on a quiet 2-core Intel Xeon a 2/48 run trained 141k tokens/s on 2 threads with them, 78k with
    # OMP_WAIT_POLICY=PASSIVE (every small operation then wakes a sleeping thread)
    require(*TRAIN_MODULES, what="lmscale train")
    from lmscale.data import PreparedData
    from lmscale.models.spec import ModelSpec
    from lmscale.training.config import TrainConfig

    n_vocab = args.n_vocab
    if n_vocab is None:
        n_vocab = PreparedData.open(args.data).vocab_size
    spec = ModelSpec(architecture=args.arch, n_layer=args.n_layer, d_model=args.d_model,
                     n_head=args.n_head, d_ff=args.d_ff, n_ctx=args.n_ctx, n_vocab=n_vocab,
                     dropout=args.dropout)
    return TrainConfig(
        model=spec, data_dir=os.path.abspath(args.data), tokens=args.tokens, steps=args.steps,
        flops=args.flops, dataset_tokens=args.dataset_tokens, batch_tokens=args.batch_tokens,
        micro_batch_tokens=args.micro_batch_tokens, lr=args.lr, schedule=args.schedule,
        warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        seed=args.seed, early_stopping=args.early_stopping, patience=args.patience,
        eval_tokens=args.eval_tokens, eval_other_tokens=args.eval_other_tokens, eval_every=args.eval_every,
        noise_scale=not args.no_noise_scale, noise_every=args.noise_every, precision=args.precision,
        device=args.device, compile=args.compile, threads=args.threads,
        checkpoint_dir=args.checkpoint_dir, checkpoint_every_s=args.checkpoint_every,
    )


def summary(record: Any, out: str | None) -> dict[str, Any]:
    last = record.curve[-1] if record.curve else None
    return {
        "run_id": record.run_id, "status": record.status, "error": record.error,
        "non_embedding_params": record.non_embedding_params, "steps": record.steps,
        "tokens": record.tokens, "final_test_loss": record.final_test_loss,
        "best_test_loss": record.best_test_loss,
        "final_train_loss": last.train_loss if last else None,
        "noise_scale": last.noise_scale if last else None,
        "tokens_per_second": record.tokens_per_second, "mfu": record.mfu,
        "peak_flops": record.peak_flops, "wall_time_s": record.wall_time_s,
        "train_time_s": record.train_time_s, "eval_time_s": record.eval_time_s,
        "precision": record.precision, "device": record.device, "record": out,
    }


def run(args: argparse.Namespace) -> int:
    from lmscale.training import distributed
    from lmscale.training.hardware import resolve_device

    config = build_config(args)
    if args.out:  # before the training, not after it
        from lmscale.files import writable

        writable(args.out, "the run record")
    # under torchrun the group outlives train(): the record is written and printed first
    with distributed.process_group(resolve_device(config.device).type) as dp:
        record = _train(config, args)
        if not dp.is_main:
            return 0
        _report(record, args)
    if record.status == "interrupted":
        return 130
    return 0 if record.status in ("finished", "early_stopped") else 1


def _train(config: Any, args: argparse.Namespace) -> Any:
    """Train with Ctrl-C meaning "checkpoint and stop" (a second one stops at once)."""
    import signal
    import threading

    from lmscale.training import train

    stop = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C does not wait for the checkpoint
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return train(config, progress=not args.no_progress, stop_event=stop)
    finally:
        signal.signal(signal.SIGINT, previous)


def _report(record: Any, args: argparse.Namespace) -> None:
    """Write ``--out`` and print the summary (rank 0)."""
    from lmscale.files import write_text_atomic

    if args.out:
        write_text_atomic(args.out, json.dumps(_jsonable(record.to_dict()), indent=1))
    info = summary(record, args.out)
    if args.json:
        print_json(info)
        return
    loss = ", ".join(f"{k} {v:.4f}" for k, v in record.final_test_loss.items()) or "-"
    mfu = f"{record.mfu:.1%}" if record.mfu is not None else "-"
    print(f"run {record.run_id}: {record.status} after {record.steps} steps, "
          f"{record.tokens:,} tokens (N = {record.non_embedding_params:,})")
    print(f"test loss: {loss}")
    print(f"speed: {record.tokens_per_second:,.0f} tokens/s, MFU {mfu} of "
          f"{(record.peak_flops or 0) / 1e9:.0f} GFLOP/s ({record.precision}) on {record.device}")
    if record.error:
        print(f"note: {record.error}")
    if args.out:
        print(f"record: {args.out}")
    sys.stdout.flush()
