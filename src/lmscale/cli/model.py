"""``lmscale model describe``: parameters and FLOPs of a shape, as in [K] table 1."""

from __future__ import annotations

import argparse
from typing import Any

from lmscale.cli._common import HelpFormatter, add_parser, print_json
from lmscale.errors import LmscaleError

MODEL_DESCRIPTION = """\
Model shapes and their cost.

  lmscale model describe   parameters and forward FLOPs per token ([K] table 1)

Example:
  lmscale model describe --n-layer 12 --d-model 768 --n-head 12 --n-ctx 1024 --n-vocab 50257
"""

DESCRIBE_DESCRIPTION = """\
Print the parameter and FLOP accounting of one model shape, operation by
operation, the way Kaplan et al. 2020 table 1 counts it:

  N      = 2 d_model n_layer (2 d_attn + d_ff)   weight matrices of the blocks
                                                  (no biases, norms, embeddings)
  C_fwd  = 2N + 2 n_layer n_ctx d_attn          forward FLOPs per token
  C      = 6N per token for training            ([K] 2.1)

Also the exact count of the instantiated model (built on torch's meta
device, so even large models cost no memory), with and without biases and
layer norms, the embedding parameters, and the share of the forward pass
spent on attention and on the logits. --no-attention, --no-logits and
--no-embedding leave those terms out of the forward total.

Universal Transformer: the shared block's parameters are counted once, its
FLOPs n_layer times. LSTM: 4 h (d_in + h) weights per layer.

Examples:
  # GPT-2 small: N = 84,934,656, C_fwd = 188,743,680
  lmscale model describe --n-layer 12 --d-model 768 --n-head 12 --n-ctx 1024 --n-vocab 50257
  # the shape the helper picks for N ~ 1e6 on 128-token contexts, as JSON
  lmscale model describe --target-params 1e6 --n-ctx 128 --json
  # an LSTM baseline
  lmscale model describe --arch lstm --n-layer 2 --d-model 256
"""

_SHAPE_FLAGS = ("n_layer", "d_model", "n_head", "d_ff")

_LABELS = {
    "embedding": "embedding",
    "qkv": "attention QKV",
    "attention_mask": "attention mask (QK^T, AV)",
    "projection": "attention projection",
    "feedforward": "feed-forward",
    "lstm": "LSTM gates",
    "logits": "de-embedding (logits)",
}


def register(sub: Any) -> None:
    parser = add_parser(sub, "model", "model shapes: parameters and FLOPs", MODEL_DESCRIPTION)
    parser.set_defaults(func=lambda args: parser.print_help() or 0)
    actions = parser.add_subparsers(dest="model_command", metavar="ACTION")
    d = actions.add_parser(
        "describe",
        help="parameters and FLOPs per token of a shape ([K] table 1)",
        description=DESCRIBE_DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    d.add_argument(
        "--arch",
        default="transformer",
        choices=("transformer", "universal", "lstm"),
        help="architecture",
    )
    d.add_argument("--n-layer", type=int, help="blocks (LSTM: layers); default 2")
    d.add_argument("--d-model", type=int, help="residual width (LSTM: hidden size); default 128")
    d.add_argument("--n-head", type=int, help="attention heads, dividing d_model; default 4")
    d.add_argument("--d-ff", type=int, help="feed-forward width; default 4 d_model")
    d.add_argument("--n-ctx", type=int, default=256, help="context length in tokens")
    d.add_argument("--n-vocab", type=int, default=4096, help="vocabulary size")
    d.add_argument("--untied", action="store_true", help="separate output matrix (not tied)")
    d.add_argument(
        "--target-params",
        type=float,
        metavar="N",
        help="pick the shape for this non-embedding N "
        "(excludes --n-layer/--d-model/--n-head/--d-ff)",
    )
    d.add_argument("--aspect-ratio", type=float, help="with --target-params: d_model / n_layer")
    d.add_argument("--d-head", type=int, help="with --target-params: head size")
    d.add_argument("--no-attention", action="store_true", help="leave the attention-mask term out")
    d.add_argument("--no-logits", action="store_true", help="leave the logits term out")
    d.add_argument("--no-embedding", action="store_true", help="leave the embedding term out")
    d.add_argument("--json", action="store_true", help="print the numbers as JSON")
    d.set_defaults(func=describe)


def _spec_from_args(args: argparse.Namespace):
    from lmscale.models.spec import ModelSpec

    common = dict(
        architecture=args.arch,
        n_ctx=args.n_ctx,
        n_vocab=args.n_vocab,
        tied_embeddings=not args.untied,
    )
    if args.target_params is None:
        for flag in ("aspect_ratio", "d_head"):
            if getattr(args, flag) is not None:
                raise LmscaleError(f"--{flag.replace('_', '-')} needs --target-params")
        shape = {k: getattr(args, k) for k in _SHAPE_FLAGS if getattr(args, k) is not None}
        return ModelSpec(**common, **shape)
    given = [k for k in _SHAPE_FLAGS if getattr(args, k) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise LmscaleError(f"{flag} cannot be combined with --target-params (the helper picks it)")
    from lmscale.models.shapes import shape_for_params

    return shape_for_params(
        args.target_params, aspect_ratio=args.aspect_ratio, d_head=args.d_head, **common
    )


def _fmt(x: int | None) -> str:
    return "n/a" if x is None else f"{x:,}"


def _render(info: dict[str, Any]) -> str:
    spec = info["spec"]
    arch = spec["architecture"]
    shape = f"n_layer={spec['n_layer']}, d_model={spec['d_model']}"
    if arch != "lstm":
        head = spec["d_model"] // spec["n_head"]
        shape += f", n_head={spec['n_head']} (d_head {head}), d_ff={spec['d_ff']}"
    tie = "tied" if spec["tied_embeddings"] else "untied"
    lines = [f"{arch}: {shape}, n_ctx={spec['n_ctx']}, n_vocab={spec['n_vocab']}, {tie} embeddings"]
    if arch == "universal":
        lines.append("(one shared block: parameters counted once, FLOPs n_layer times)")
    counted = info["forward_flops_breakdown"]
    full_params = info["param_breakdown"]
    lines += ["", f"{'operation':<28}{'parameters':>16}{'forward FLOPs/token':>22}  counted"]
    for op, flops in info["forward_flops_breakdown_full"].items():
        params = full_params.get(op, 0)
        lines.append(
            f"{_LABELS[op]:<28}{(_fmt(params) if params else '-'):>16}{_fmt(flops):>22}"
            f"  {'yes' if op in counted else 'off'}"
        )
    lines.append(
        f"{'forward total (counted)':<28}{'':>16}{_fmt(info['forward_flops_per_token']):>22}"
    )
    rows = [
        ("Parameters", None),
        ("N, formula [K] table 1 (weight matrices)", info["non_embedding_params"]),
        ("N, exact count, weight matrices only", info["exact_non_embedding_weight_params"]),
        ("N, exact count with biases and norms", info["exact_non_embedding_params"]),
        (
            "embedding parameters" + ("" if spec["tied_embeddings"] else " (+ output matrix)"),
            info["embedding_params"],
        ),
        ("total parameters (exact)", info["total_params"]),
        ("FLOPs per token", None),
        ("C_fwd [K] (no embedding, no logits)", info["kaplan_forward_flops_per_token"]),
        ("forward, counted terms", info["forward_flops_per_token"]),
        ("training, 6N [K] 2.1", info["training_flops_per_token_6n"]),
        ("training, 3 x forward (counted terms)", info["training_flops_per_token_exact"]),
    ]
    for label, value in rows:
        if value is None:
            lines += ["", label]
        else:
            lines.append(f"  {label:<44}{_fmt(value):>20}")
    lines += [
        "",
        f"attention share of the full forward: {info['attention_share']:.1%}; "
        f"logits share: {info['logits_share']:.1%}",
        f"learning rate [K] eq. D.1 at this N: {info['paper_learning_rate']:.3g}",
    ]
    if arch == "universal":
        lines.append("(the C_fwd row counts the shared block n_layer times, so it is not 2N + ...)")
    if info["exact_non_embedding_params"] is None:
        lines.append("exact counts (n/a): they build the model with torch: pip install 'lmscale[train]'")
    return "\n".join(lines)


def describe(args: argparse.Namespace) -> int:
    from lmscale.accounting import describe as describe_spec
    from lmscale.models.shapes import paper_learning_rate

    spec = _spec_from_args(args)
    info = describe_spec(
        spec,
        attention=not args.no_attention,
        logits=not args.no_logits,
        embedding=not args.no_embedding,
    )
    info["paper_learning_rate"] = paper_learning_rate(info["non_embedding_params"])  # the recipe's, beside
    info["counting"]["paper_learning_rate"] = "[K] eq. D.1 at the formula N"  # the accounting's numbers
    if args.target_params is not None:
        info["target_params"] = args.target_params
        info["target_relative_error"] = info["non_embedding_params"] / args.target_params - 1
    if args.json:
        print_json(info)
    else:
        print(_render(info))
        if args.target_params is not None:
            print(
                f"target N {args.target_params:g}: formula N is "
                f"{info['target_relative_error']:+.1%} off"
            )
    return 0
