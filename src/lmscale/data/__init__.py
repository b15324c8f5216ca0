"""Text data: sources, tokenizers and token shards ([K] section 2: one training
distribution, loss measured on several others).

The flow::

    from lmscale.data import prepare, PreparedData
    data = prepare(["python-stdlib", "python-docs", "bible-kjv"], "shards", vocab_size=4096)
    data = PreparedData.open("shards")       # validates manifest and tokenizer hash
    x = data.train_tokens(1_000_000)         # first D tokens of one fixed shuffled order
    y = data.test_tokens("bible-kjv")        # held-out text of another distribution

Public names: :class:`PreparedData`, :func:`prepare`, :func:`get_source`,
:func:`list_sources`, :func:`load_tokenizer`, :class:`Tokenizer`,
:class:`DataWarning`. Tokenizer construction lives in
:mod:`lmscale.data.tokenizer` (``train_bpe``, ``ByteTokenizer``) and
:mod:`lmscale.data.gpt2` (``load_gpt2``).
"""

from __future__ import annotations

from lmscale.data.prepare import prepare
from lmscale.data.prepared import PreparedData
from lmscale.data.sources import Source, get_source, list_sources
from lmscale.data.textio import DataWarning
from lmscale.data.tokenizer import Tokenizer, load_tokenizer

__all__ = ["DataWarning", "PreparedData", "Source", "Tokenizer", "get_source", "list_sources",
           "load_tokenizer", "prepare"]
