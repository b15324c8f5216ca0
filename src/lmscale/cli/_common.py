"""Helpers shared by the sub-commands: JSON output and help formatting."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the layout of descriptions and shows defaults that say something.

    An option whose help already names its default, or whose default is
    None, False or empty (a flag off, a value chosen at run time), gets no
    "(default: ...)" of argparse's.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or action.default == []:
            return text
        return super()._get_help_string(action) or text


def add_parser(sub: Any, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """Add a sub-command parser with lmscale's formatter."""
    return sub.add_parser(name, help=help, description=description, formatter_class=HelpFormatter)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _jsonable(value.item())
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return value


def print_json(data: Any) -> None:
    """Print data as JSON (NaN -> null, numpy -> Python) on stdout."""
    json.dump(_jsonable(data), sys.stdout, indent=2)
    sys.stdout.write("\n")
