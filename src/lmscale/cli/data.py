"""``lmscale data``: list text sources, prepare token shards, describe prepared data."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lmscale.cli._common import HelpFormatter, add_parser, print_json

DATA_DESCRIPTION = """\
Text for training and for measuring loss on other distributions ([K] 3.2.2).

  lmscale data sources   the text sources of this machine, and how to get the rest
  lmscale data prepare   sources -> tokenizer -> train/test token shards
  lmscale data info      tokens, documents and bytes per token of prepared data

Example:
  lmscale data prepare --source python-stdlib --source bible-kjv --vocab-size 4096 --out shards
"""

SOURCES_DESCRIPTION = """\
List the built-in text sources, whether each is installed here and where,
and the other forms a --source may take (directories, globs, JSON Lines,
Hugging Face datasets, SWORD modules).

Example:
  lmscale data sources --json
"""

PREPARE_DESCRIPTION = """\
Tokenize text sources into token shards: one tokenizer for all of them,
and a train and a test split for each. The first --source is the training
distribution (a BPE tokenizer is trained on it); the others are the
distributions loss is also measured on.

A document goes to the test split by a hash of its text (~--test-fraction
of them, at least --min-test-tokens when the source allows). The train split
is written in one fixed shuffled order, so the first D tokens of it are a
prefix: smaller data sets are contained in larger ones. Memory stays
bounded whatever the size of the text. Output appears under --out only when
complete.

Sources: python-stdlib, python-docs, bible-kjv, bible-web, jargon, gcide,
vim-help, dir:PATH, glob:PATTERN, jsonl:PATH[:FIELD],
hf:NAME[:CONFIG[:SPLIT[:FIELD]]], sword:MODULE; NAME=SPEC renames one.
See 'lmscale data sources'.

Examples:
  # BPE with 4096 ids trained on Python code; three distributions, 20 MB each
  lmscale data prepare --source python-stdlib --source python-docs --source jargon \\
      --vocab-size 4096 --max-mb-per-source 20 --out shards
  # bytes, your own text
  lmscale data prepare --source notes=dir:~/notes --tokenizer byte --out notes-shards
  # reuse the tokenizer of earlier shards for new distributions
  lmscale data prepare --source gcide --tokenizer shards/tokenizer.json --out gcide-shards
"""

INFO_DESCRIPTION = """\
Describe prepared data: the tokenizer (kind, vocabulary, hash), and for each
distribution the tokens, documents and UTF-8 bytes per token of its train
and test splits (bytes per token turns nats per token into bits per byte:
bpb = loss / (bytes_per_token ln 2)). --verify also re-hashes every shard.

Example:
  lmscale data info shards --json
"""


def register(sub: Any) -> None:
    parser = add_parser(sub, "data", "text sources, tokenizers and token shards", DATA_DESCRIPTION)
    parser.set_defaults(func=lambda args: parser.print_help() or 0)
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")

    s = actions.add_parser("sources", help="text sources available here", description=SOURCES_DESCRIPTION,
                           formatter_class=HelpFormatter)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_sources)

    p = actions.add_parser("prepare", help="sources -> tokenizer -> token shards",
                           description=PREPARE_DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--source", action="append", required=True, metavar="SOURCE",
                   help="a text source (repeat; the first is the training distribution)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--vocab-size", type=int, help="tokenizer ids (required for bpe; byte=256, gpt2=50257)")
    p.add_argument("--tokenizer", default="bpe",
                   help="bpe, byte, gpt2, or a tokenizer.json / prepared directory to reuse")
    p.add_argument("--max-mb-per-source", type=float, help="read at most this many MB (1e6 bytes) of each source")
    p.add_argument("--test-fraction", type=float, default=0.02, help="fraction of documents held out for test")
    p.add_argument("--min-test-tokens", type=int, default=16384, help="least tokens in each test split, "
                   "if the source allows")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffled train order")
    p.add_argument("--threads", type=int, help="encoding threads (None: every core this process may use)")
    p.add_argument("--force", action="store_true", help="replace --out if it holds prepared data")
    p.add_argument("--allow-download", action="store_true",
                   help="let --tokenizer gpt2 download its files when none are found locally")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_prepare)

    i = actions.add_parser("info", help="describe prepared data", description=INFO_DESCRIPTION,
                           formatter_class=HelpFormatter)
    i.add_argument("path", help="prepared directory")
    i.add_argument("--verify", action="store_true", help="re-hash every shard against the manifest")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=_info)


def _sources(args: argparse.Namespace) -> int:
    from lmscale.data import list_sources

    infos = list_sources()
    if args.json:
        print_json([i.to_json() for i in infos])
        return 0
    print(f"{'source':34s} {'here':5s} {'kind':26s} where / how to get it")
    for info in infos:
        here = "yes" if info.available else "no"
        where = info.location or info.hint or info.description
        print(f"{info.name:34s} {here:5s} {info.kind:26s} {where}")
    return 0


def _print_info(info: dict[str, Any]) -> None:
    tok = info["tokenizer"]
    print(f"{info['path']}")
    print(f"tokenizer: {tok['kind']}, {tok['vocab_size']:,} ids, {tok['hash'][:19]}, "
          f"shards {info['dtype']}")
    print(f"{'distribution':20s} {'train tokens':>14s} {'test tokens':>12s} {'docs':>9s} "
          f"{'bytes/token':>11s}  warnings")
    for row in info["distributions"]:
        mark = "*" if row["name"] == info["train_distribution"] else " "
        docs = row["train"]["documents"] + row["test"]["documents"]
        warn = ", ".join(f"{n} {w}" for w, n in row["warnings"].items())
        print(f"{mark}{row['name']:19s} {row['train']['tokens']:14,d} {row['test']['tokens']:12,d} "
              f"{docs:9,d} {row['test']['bytes_per_token']:11.3f}  {warn}")
    print("* training distribution; bytes/token of the test split")


def _prepare(args: argparse.Namespace) -> int:
    import warnings

    from lmscale.data import DataWarning, prepare
    from lmscale.errors import LmscaleError
    from lmscale.extras import require

    if args.tokenizer != "byte":  # BPE training and encoding: lmscale[train]
        require("tokenizers", "tiktoken", what="lmscale data prepare")

    max_bytes = None
    if args.max_mb_per_source is not None:
        if args.max_mb_per_source <= 0:
            raise LmscaleError(f"--max-mb-per-source {args.max_mb_per_source}: expected a positive number")
        max_bytes = int(args.max_mb_per_source * 1_000_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        data = prepare(args.source, args.out, args.vocab_size, tokenizer=args.tokenizer,
                       max_bytes_per_source=max_bytes, test_fraction=args.test_fraction,
                       seed=args.seed, progress=not args.quiet and not args.json,
                       min_test_tokens=args.min_test_tokens, threads=args.threads,
                       overwrite=args.force, allow_download=args.allow_download)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.json:
        print_json(data.info())
    else:
        _print_info(data.info())
    return 0


def _info(args: argparse.Namespace) -> int:
    from lmscale.data import PreparedData

    data = PreparedData.open(args.path)
    if args.verify:
        data.verify()
    if args.json:
        print_json(data.info())
    else:
        _print_info(data.info())
        if args.verify:
            print("verified: every shard matches its SHA-256")
    return 0
