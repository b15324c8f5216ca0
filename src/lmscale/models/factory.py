"""``build_model(spec)``: the torch module for a :class:`ModelSpec`."""

from __future__ import annotations

from torch import nn

from lmscale.errors import SpecError
from lmscale.models.lstm import LSTMLanguageModel
from lmscale.models.spec import ARCHITECTURES, ModelSpec
from lmscale.models.transformer import Transformer, UniversalTransformer

_CLASSES = {
    "transformer": Transformer,
    "universal": UniversalTransformer,
    "lstm": LSTMLanguageModel,
}


def build_model(spec: ModelSpec) -> nn.Module:
    """Instantiate the model; it has ``.spec`` and maps idx[B, T] to logits[B, T, n_vocab].

    Build under ``with torch.device("meta"):`` to get shapes without memory.
    """
    if not isinstance(spec, ModelSpec):
        raise SpecError("spec", spec, "a ModelSpec")
    spec.validate()
    if spec.architecture not in _CLASSES:  # pragma: no cover - validate() covers it
        raise SpecError("architecture", spec.architecture, f"one of {', '.join(ARCHITECTURES)}")
    return _CLASSES[spec.architecture](spec)
