"""The ``lmscale`` command line: a thin layer over the Python API.

Each sub-command lives in its own module ``lmscale.cli.<name>`` exposing
``register(subparsers)``, which adds its parser and sets ``func`` to the
handler. Registration must stay cheap: heavy imports (torch, matplotlib,
ray) happen inside handlers, so ``lmscale fit`` never imports torch.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys

from lmscale import __version__
from lmscale.errors import LmscaleError

#: Sub-commands in the order ``lmscale --help`` lists them.
SUBCOMMANDS = ("data", "model", "train", "sweep", "import", "fit", "predict", "laws", "plan", "next", "simulate",
               "report", "demo")

#: Sub-commands whose module name differs from the command (``import`` is a keyword).
MODULES = {"import": "import_"}

DESCRIPTION = """\
lmscale: train language-model families, fit scaling laws, plan compute.

The flow of a study, left to right:
  lmscale data prepare   real text -> tokenizer -> token shards
  lmscale model describe parameters and FLOPs of a shape ([K] table 1)
  lmscale train          one run -> learning curve, noise scale, losses
  lmscale sweep run      a TOML study -> many runs -> one SQLite store
  lmscale import         runs from MLflow, TensorBoard, W&B or a CSV -> a store
  lmscale fit            power laws with bootstrap intervals (--audit: validated at scale)
  lmscale predict        loss of runs not yet trained, with 80%/95% intervals
  lmscale plan           compute-optimal N, D, batch for a budget
  lmscale next           the runs that buy the most forecast certainty per FLOP
  lmscale simulate       score study designs on synthetic runs from a known law
  lmscale report         the paper's figures from your own study
  lmscale demo           all of the above at the scale of this machine

Run 'lmscale COMMAND --help' for the options of each. Errors in your
input exit with status 2 and a message that says what and where.

'pip install lmscale' fits, plans, imports and reports without PyTorch;
training needs 'pip install "lmscale[train]"' (the commands say so).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmscale",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lmscale {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        modname = f"lmscale.cli.{MODULES.get(name, name)}"
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as exc:  # a sub-command not shipped in this build
            if exc.name == modname:
                continue
            raise
        module.register(sub)
    return parser


@functools.lru_cache(maxsize=1)
def _parser() -> argparse.ArgumentParser:
    """The parser, built once per process (it is reusable: parsing does not change it)."""
    return build_parser()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2 if args.command is None else 0
    try:
        result = args.func(args)
    except LmscaleError as exc:
        print(f"lmscale {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # an optional extra that is not installed: say which
        from lmscale.extras import from_import_error

        missing = from_import_error(exc, f"lmscale {args.command}")
        if missing is None:
            raise
        print(f"lmscale {args.command}: error: {missing}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lmscale {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: a defect, with its traceback
            raise
        # a path that cannot be read or written (a folder that cannot be made, no permission,
        # a full disk): said with the path, as any input error is
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
        print(f"lmscale {args.command}: error: {where}: {exc.strerror or exc} (a path this command had to "
              "read, write or create)", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
