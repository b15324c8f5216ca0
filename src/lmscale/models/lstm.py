"""The LSTM language model, [K]'s recurrent baseline (section 3.2.1).

Token embedding (no position embedding: order comes from the recurrence),
``n_layer`` stacked LSTM layers of width d_model, and an output head that
may share the embedding. Parameters: 4 h (d_in + h) weights and 8 h biases
per layer (PyTorch keeps separate input and recurrent bias vectors).

Initialisation: the recurrent weights keep PyTorch's uniform(+-1/sqrt(h)),
and the embedding is drawn with unit variance, so a gate's pre-activation
w . x has variance about 1/3 at the start: the gates respond to their
input. With the Transformer's 0.02 (which its layer norms rescale) the
inputs are 50x smaller, every gate sits at its bias, the network is an
input-independent linear map, and training stalls at the unigram loss
(5.3 nats on the 512-id Python BPE) where a plain PyTorch loop with
``nn.Embedding``'s default N(0, 1) learns. The learning rate is
:func:`lmscale.models.shapes.lstm_learning_rate`.
"""

from __future__ import annotations

import torch
from torch import nn

from lmscale.models.spec import ModelSpec

#: Standard deviation of the embedding initialisation (unit variance: see the module docstring).
INIT_STD = 1.0
#: Standard deviation of an untied output head (small logits: a near-uniform first prediction).
HEAD_STD = 0.02


class LSTMLanguageModel(nn.Module):
    """``model(idx[B, T]) -> logits[B, T, n_vocab]``."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        d = spec.d_model
        self.wte = nn.Embedding(spec.n_vocab, d)
        self.drop = nn.Dropout(spec.dropout) if spec.dropout > 0 else nn.Identity()
        between = spec.dropout if spec.n_layer > 1 else 0.0  # LSTM dropout acts between layers
        self.rnn = nn.LSTM(d, d, spec.n_layer, batch_first=True, dropout=between)
        self.lm_head = nn.Linear(d, spec.n_vocab, bias=False)
        nn.init.normal_(self.wte.weight, 0.0, INIT_STD)
        if spec.tied_embeddings:
            self.lm_head.weight = self.wte.weight
        else:
            nn.init.normal_(self.lm_head.weight, 0.0, HEAD_STD)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.drop(self.wte(idx)))
        return self.lm_head(self.drop(y))
