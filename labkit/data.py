"""Small offline data sets for the instruments and notebooks: nothing is downloaded, ever.

Images
- :func:`digits` -- scikit-learn's bundled 8×8 handwritten digits (1797 images, shipped with sklearn).
- :func:`shapes` -- procedurally drawn squares, circles and triangles on a small canvas.
- :func:`stripes` -- vertical vs horizontal stripes (what an edge filter should learn to tell apart).

Sequences (long-range tasks for recurrent nets, and interpretable tasks for attention)
- :func:`adding_problem` -- sum the two marked numbers of a long sequence (Hochreiter & Schmidhuber).
- :func:`copy_task` -- remember a few symbols, wait, then write them back.
- :func:`reversal_task` -- write the sequence backwards: its attention is an anti-diagonal.

Every generator takes a ``seed`` and returns numpy arrays, so runs are repeatable.
"""
from __future__ import annotations

import numpy as np

SHAPE_NAMES = ("square", "circle", "triangle")


def digits(normalize: bool = True, channels_last: bool = True):
    """scikit-learn's bundled 8×8 digits: ``(x, y)`` with ``x`` of shape (1797, 8, 8, 1) in [0, 1].

    The data ship inside scikit-learn, so this works offline (unlike ``keras.datasets``).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype("float32")
    if normalize:
        x /= 16.0
    if channels_last:
        x = x[..., None]
    return x, bunch.target.astype("int64")


def _draw_shape(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype("float32")
    r = rng.uniform(0.2, 0.35) * size
    cy, cx = rng.uniform(r + 1, size - r - 1, size=2)
    if kind == "square":
        img = (np.abs(yy - cy) <= r * 0.8) & (np.abs(xx - cx) <= r * 0.8)
    elif kind == "circle":
        img = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    elif kind == "triangle":  # apex up: rows below the apex widen linearly
        top, bottom = cy - r, cy + r
        half = (yy - top) / (bottom - top) * r
        img = (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half)
    else:
        raise ValueError(f"unknown shape {kind!r}; choose from {SHAPE_NAMES}")
    return img.astype("float32")


def shapes(n: int = 300, size: int = 16, noise: float = 0.05, seed: int = 0):
    """``n`` images of squares (label 0), circles (1) and triangles (2): ``x`` (n, size, size, 1), ``y`` (n,).

    Each shape has a random position and radius; ``noise`` adds Gaussian pixel noise.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(SHAPE_NAMES)
    rng.shuffle(y)
    x = np.stack([_draw_shape(SHAPE_NAMES[k], size, rng) for k in y])
    x += noise * rng.standard_normal(x.shape).astype("float32")
    return np.clip(x, 0.0, 1.0)[..., None].astype("float32"), y.astype("int64")


def stripes(n: int = 200, size: int = 12, seed: int = 0):
    """Vertical (label 0) or horizontal (label 1) stripes with random period and phase: (n, size, size, 1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    idx = np.arange(size)
    x = np.empty((n, size, size), dtype="float32")
    for i, label in enumerate(y):
        period, phase = rng.integers(2, 5), rng.integers(0, 4)
        line = ((idx + phase) // period % 2).astype("float32")
        x[i] = np.tile(line, (size, 1)) if label == 0 else np.tile(line[:, None], (1, size))
    return x[..., None], y.astype("int64")


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
