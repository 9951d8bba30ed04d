"""Offline image data: scikit-learn's bundled digits, drawn shapes and stripes. Nothing is downloaded."""
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
