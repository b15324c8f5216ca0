"""The keys a sweep file accepts and the type each expects.

Run fields come from :class:`~lmscale.training.config.TrainConfig` and
:class:`~lmscale.models.spec.ModelSpec` (their annotations are the types),
so a field added there is accepted here without an edit. A few keys belong
to the sweep itself (the shape helper's knobs, ``params``, ``shape``).
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from typing import Any, Union

from lmscale.errors import SpecError
from lmscale.models.spec import ModelSpec
from lmscale.training.config import TrainConfig

#: TrainConfig fields the sweep sets itself (never in a sweep file).
RESERVED = ("model", "data_dir", "checkpoint_dir", "threads")

#: Model fields a sweep file may set; ``architecture`` included.
MODEL_KEYS = tuple(f.name for f in fields(ModelSpec) if not f.name.startswith("_"))

#: Run fields a sweep file may set.
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if not f.name.startswith("_") and f.name not in RESERVED)

#: Model-size and shape keys of the sweep itself.
SIZE_KEYS: dict[str, Any] = {
    "params": float,        # target non-embedding N; shape from lmscale.models.shapes.shape_for_params
    "aspect_ratio": float,  # d_model / n_layer wanted by the shape helper ([K] figure 5)
    "d_head": int,          # head size wanted by the shape helper
    "d_ff_ratio": float,    # d_ff / d_model for the shape helper
    "shape": dict,          # an explicit shape: a table of model fields
}

#: Keys of a ``[[group]]`` that are not run fields.
GROUP_META = {"name": str, "rule": str, "mode": str, "description": str, "epochs": float}

#: Model fields the shape helper chooses when ``params`` is given.
HELPER_CHOSEN = ("n_layer", "d_model", "n_head", "d_ff")

#: Model fields the shape helper takes (besides the target).
HELPER_ARGS = ("aspect_ratio", "d_head", "d_ff_ratio", "n_ctx", "n_vocab", "architecture", "dropout",
               "tied_embeddings")


def _hints() -> dict[str, Any]:
    hints: dict[str, Any] = {}
    hints.update({k: v for k, v in typing.get_type_hints(ModelSpec).items() if k in MODEL_KEYS})
    hints.update({k: v for k, v in typing.get_type_hints(TrainConfig).items() if k in TRAIN_KEYS})
    hints.update(SIZE_KEYS)
    return hints


#: Expected type of every run key (model, run and size keys).
KEY_TYPES: dict[str, Any] = _hints()


def describe(hint: Any) -> str:
    """Human words for a type hint."""
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if hint is dict:
        return "a table"
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        parts = [describe(a) for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(parts)
    if origin in (tuple, list):
        return f"a list of {describe(typing.get_args(hint)[0])}s".replace("as ", "")
    return getattr(hint, "__name__", str(hint))


def coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """Check ``value`` against ``hint``; integral floats become ints (``1e6``)."""
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            return int(value)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
    elif hint is str or hint is dict:
        if isinstance(value, hint):
            return value
    else:
        origin = typing.get_origin(hint)
        if origin in (Union, types.UnionType):
            for arg in typing.get_args(hint):
                if arg is type(None):
                    continue
                try:
                    return coerce(value, arg, key, where)
                except SpecError:
                    continue
        elif origin in (tuple, list) and isinstance(value, list):
            inner = typing.get_args(hint)[0]
            return tuple(coerce(v, inner, key, where) for v in value)
    raise SpecError(key, value, describe(hint), where)


def is_list_valued(key: str) -> bool:
    """Whether the key's own value is a list (then a list of lists is an axis)."""
    hint = KEY_TYPES.get(key)
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(typing.get_origin(a) in (tuple, list) for a in typing.get_args(hint))
    return origin in (tuple, list)
