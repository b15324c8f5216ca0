"""Which tokens each step trains on: a pure function of the step.

The training set is the first D tokens of the train split (``dataset_tokens``),
cut into ``D // n_ctx`` sequences; sequence ``i`` is tokens
``[i n_ctx, (i + 1) n_ctx]`` (n_ctx + 1 tokens: inputs and shifted targets).
Every epoch, the first included, visits the sequences in a permutation
seeded by ``(seed, epoch)``: a batch mixes contexts from all over the
training set (consecutive contexts of one document would make the gradient
of a step far noisier than [K]'s random sampling, and bias the noise scale). Because the batch of a step depends on nothing but
the step, a resumed run sees exactly the tokens it would have seen, and
data-parallel ranks split each global batch without talking to each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmscale.errors import LmscaleError


class SequenceBatches:
    """Batches of (inputs, targets) from a 1-D token array.

    Args:
        tokens: at least ``dataset_tokens + 1`` token ids (a memmap is fine).
        n_ctx: sequence length.
        dataset_tokens: training set size D in tokens.
        seed: seeds the order of every epoch after the first.
    """

    def __init__(self, tokens: Any, n_ctx: int, dataset_tokens: int, seed: int = 0):
        self.n_ctx = n_ctx
        self.n_seq = dataset_tokens // n_ctx
        if self.n_seq < 1:
            raise LmscaleError(f"dataset_tokens = {dataset_tokens}: smaller than one sequence of {n_ctx}")
        if len(tokens) < self.n_seq * n_ctx + 1:
            raise LmscaleError(
                f"training split has {len(tokens)} tokens; the run needs {self.n_seq * n_ctx + 1}")
        self.tokens = tokens
        self.seed = seed
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None
        self._offsets = np.arange(n_ctx + 1, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_seq)
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm

    def sequence_ids(self, first: int, count: int) -> np.ndarray:
        """Indices of sequences ``first .. first + count - 1`` of the (endless) stream."""
        k = np.arange(first, first + count, dtype=np.int64)
        epoch, pos = np.divmod(k, self.n_seq)
        ids = pos.copy()
        for e in np.unique(epoch):
            mask = epoch == e
            ids[mask] = self._permutation(int(e))[pos[mask]]
        return ids

    def rows(self, first: int, count: int) -> np.ndarray:
        """``[count, n_ctx + 1]`` int64 token rows of the stream from ``first`` on."""
        ids = self.sequence_ids(first, count)
        if count and ids[-1] - ids[0] == count - 1 and np.all(np.diff(ids) == 1):
            start = int(ids[0]) * self.n_ctx
            flat = np.asarray(self.tokens[start:start + count * self.n_ctx + 1], dtype=np.int64)
            return np.lib.stride_tricks.as_strided(
                flat, shape=(count, self.n_ctx + 1), strides=(self.n_ctx * 8, 8)).copy()
        index = ids[:, None] * self.n_ctx + self._offsets[None, :]
        return np.asarray(self.tokens[index.ravel()], dtype=np.int64).reshape(count, self.n_ctx + 1)


def row_starts(total: int, n_ctx: int, max_tokens: int) -> np.ndarray:
    """Token offsets of ``max_tokens // n_ctx`` test sequences spread evenly over ``total`` tokens.

    The sequences start at evenly spaced offsets over the whole test split,
    so a small evaluation budget still samples every part of it (the first
    few thousand tokens would be one or two documents).
    """
    n = min(max_tokens, total - 1) // n_ctx
    if n < 1:
        raise LmscaleError(f"test split has {total} tokens: fewer than one sequence of n_ctx + 1 = {n_ctx + 1}")
    return np.linspace(0, total - (n_ctx + 1), n).astype(np.int64)


def rows_at(tokens: Any, starts: np.ndarray, n_ctx: int) -> np.ndarray:
    """The sequences of ``n_ctx + 1`` tokens starting at ``starts``, as ``[n, n_ctx + 1]`` int64 rows."""
    index = starts[:, None] + np.arange(n_ctx + 1, dtype=np.int64)[None, :]
    return np.asarray(tokens[index.ravel()], dtype=np.int64).reshape(len(starts), n_ctx + 1)


def fixed_rows(tokens: Any, n_ctx: int, max_tokens: int) -> np.ndarray:
    """The test sequences of :func:`row_starts` as ``[n, n_ctx + 1]`` int64 rows."""
    return rows_at(tokens, row_starts(len(tokens), n_ctx, max_tokens), n_ctx)


def row_documents(tokens: Any, starts: np.ndarray, eot: int) -> np.ndarray:
    """Index of the document each sequence starts in; documents end at an ``eot`` token.

    The prepared shards write ``eot`` after every document, so a sequence
    starting at offset s lies in document #(eot tokens before s).
    """
    ends = np.flatnonzero(np.asarray(tokens) == eot)
    return np.searchsorted(ends, np.asarray(starts, dtype=np.int64), side="left").astype(np.int64)


class ArrayData:
    """Token arrays held in memory, read like a prepared data directory.

    Lets a caller train on tokens it already has (``train(config, data=...)``)
    with the same interface as ``lmscale.data.PreparedData``.

    Args:
        train: 1-D token ids of the training split.
        test: test split per distribution name.
        vocab_size: size of the tokenizer's vocabulary.
        train_distribution: which ``test`` entry is the training distribution.
        eot: the token id that ends each document, if the arrays have one
            (the per-position standard errors then treat documents as the
            independent units; without it, contiguous blocks of sequences).
    """

    def __init__(self, train: Any, test: dict[str, Any], vocab_size: int,
                 train_distribution: str | None = None, eot: int | None = None):
        if not test:
            raise LmscaleError("ArrayData: at least one test split is needed")
        self.train = np.asarray(train)
        self.test = {k: np.asarray(v) for k, v in test.items()}
        self.vocab_size = int(vocab_size)
        self.train_distribution = train_distribution or next(iter(test))
        if self.train_distribution not in self.test:
            raise LmscaleError(f"ArrayData: train_distribution {self.train_distribution!r} has no test split")
        self.tokenizer_hash = "arrays"
        self.eot = None if eot is None else int(eot)

    @property
    def distributions(self) -> list[str]:
        return list(self.test)

    def train_tokens(self, n: int) -> np.ndarray:
        if n > len(self.train):
            raise LmscaleError(f"training split has {len(self.train)} tokens; {n} requested")
        return self.train[:n]

    def test_tokens(self, name: str) -> np.ndarray:
        if name not in self.test:
            raise LmscaleError(f"no test split {name!r}; have {', '.join(self.test)}")
        return self.test[name]

    def check_vocab(self, n_vocab: int) -> None:
        if self.vocab_size > n_vocab:
            raise LmscaleError(f"tokens come from a vocabulary of {self.vocab_size}, larger than the "
                               f"model's n_vocab = {n_vocab}")
