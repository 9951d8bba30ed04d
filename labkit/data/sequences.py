"""Offline sequence tasks: long-range problems for recurrent nets, interpretable ones for attention."""
from __future__ import annotations

import numpy as np


def adding_problem(n: int = 512, length: int = 50, seed: int = 0):
    """The adding problem: ``x`` (n, length, 2), ``y`` (n, 1).

    Channel 0 holds random numbers in [0, 1); channel 1 marks exactly two positions with 1, one in
    the first half of the sequence and one in the second. The target is the sum of the two marked
    numbers. To solve it, a network must carry the first number across ``length / 2`` steps: a
    long-range dependency, which is why vanishing gradients make it hard for a plain RNN.
    """
    if length < 4:
        raise ValueError(f"length must be at least 4, got {length}")
    rng = np.random.default_rng(seed)
    values = rng.random((n, length)).astype("float32")
    marks = np.zeros((n, length), dtype="float32")
    first = rng.integers(0, length // 2, size=n)
    second = rng.integers(length // 2, length, size=n)
    marks[np.arange(n), first] = 1.0
    marks[np.arange(n), second] = 1.0
    x = np.stack([values, marks], axis=-1)
    y = (values[np.arange(n), first] + values[np.arange(n), second])[:, None]
    return x, y.astype("float32")


def copy_task(n: int = 512, symbols: int = 4, remember: int = 5, delay: int = 10, seed: int = 0):
    """Copy memory task: ``x``, ``y`` integer tokens of shape (n, remember + delay + remember).

    Token 0 is blank, token 1 the "go" marker, tokens 2 .. symbols+1 the symbols. The input starts
    with ``remember`` random symbols, then blanks, then a "go" marker; the target is blank until the
    last ``remember`` steps, where it repeats the symbols in order.
    """
    rng = np.random.default_rng(seed)
    total = remember + delay + remember
    seq = rng.integers(2, symbols + 2, size=(n, remember))
    x = np.zeros((n, total), dtype="int64")
    y = np.zeros((n, total), dtype="int64")
    x[:, :remember] = seq
    x[:, remember + delay - 1] = 1
    y[:, -remember:] = seq
    return x, y


def reversal_task(n: int = 512, length: int = 8, vocab: int = 10, seed: int = 0):
    """A tiny sequence-to-sequence task with interpretable attention: write the input backwards.

    Returns ``x``, ``y`` integer tokens of shape (n, length) with ``y[:, i] == x[:, length - 1 - i]``.
    Tokens are 1 .. vocab-1 (0 is kept free for padding). A Transformer that solves it must attend
    from output position i to input position ``length - 1 - i``: an anti-diagonal attention map.
    """
    if vocab < 3:
        raise ValueError(f"vocab must be at least 3, got {vocab}")
    rng = np.random.default_rng(seed)
    x = rng.integers(1, vocab, size=(n, length)).astype("int64")
    return x, x[:, ::-1].copy()


def token_labels(tokens, prefix: str = "") -> list[str]:
    """Readable labels for a 1-D token sequence, unique per position (``"3·7"`` is token 7 at position 3)."""
    return [f"{prefix}{i}·{int(t)}" for i, t in enumerate(np.asarray(tokens).ravel())]
