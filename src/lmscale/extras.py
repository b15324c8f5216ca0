"""Optional parts of lmscale and the ``pip install`` line that brings each.

``pip install lmscale`` is the torch-free core: the laws, the planner, the
forecasts, the results store, the importers and the report. Training needs
``lmscale[train]`` (torch, tokenizers, tiktoken, safetensors); the trackers
and trainers people already use have their own extras.

>>> require("torch", what="lmscale train")   # raises MissingExtra when torch is absent
"""

from __future__ import annotations

import importlib.util

from lmscale.errors import LmscaleError

#: Top-level module -> the extra that installs it.
EXTRA_OF = {
    "torch": "train",
    "tokenizers": "train",
    "tiktoken": "train",
    "safetensors": "train",
    "ray": "ray",
    "datasets": "hf",
    "transformers": "hf",
    "lightning": "lightning",
    "pytorch_lightning": "lightning",
    "mlflow": "mlflow",
    "sqlalchemy": "mlflow",
    "alembic": "mlflow",
    "tensorboard": "tensorboard",
    "wandb": "wandb",
}


class MissingExtra(LmscaleError):
    """A command needs a package of an optional extra that is not installed."""

    def __init__(self, module: str, what: str | None = None):
        self.module = module
        self.extra = EXTRA_OF.get(module.split(".")[0], "train")
        needs = f"{what} needs" if what else "this needs"
        super().__init__(f"{needs} {module.split('.')[0]}, which is not installed: "
                         f"pip install 'lmscale[{self.extra}]'")


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(*modules: str, what: str | None = None) -> None:
    """Raise :class:`MissingExtra` for the first of ``modules`` that is not installed."""
    for module in modules:
        if not installed(module):
            raise MissingExtra(module, what)


def from_import_error(exc: ImportError, what: str | None = None) -> MissingExtra | None:
    """The :class:`MissingExtra` for an ``ImportError`` of an optional package, else None."""
    name = getattr(exc, "name", None) or ""
    if name.split(".")[0] in EXTRA_OF:
        return MissingExtra(name, what)
    return None


#: What training needs (``lmscale[train]``).
TRAIN_MODULES = ("torch", "safetensors", "tokenizers", "tiktoken")
