"""Tabular classification data with a known answer, for linear models.

- :func:`logistic_data` -- features and 0/1 labels drawn from a logistic model whose true
  weights are returned too, with only a few of them non-zero: L1 regularisation should find those.
"""
from __future__ import annotations

import numpy as np


def logistic_data(n: int = 10_000, features: int = 20, informative: int = 5, noise: float = 1.0,
                  seed: int = 0):
    """``(x, y, w_true)``: ``x`` float32 (n, features) standard normal; ``y`` int64 in {0, 1} with
    ``P(y=1|x) = σ(x·w_true / noise)``. Only the first ``informative`` weights are non-zero, so the
    rest of the features are pure distraction. ``w_true[-1]`` is the bias."""
    if not 0 <= informative <= features:
        raise ValueError(f"informative must be between 0 and features={features}, got {informative}")
    rng = np.random.default_rng(seed)
    w = np.zeros(features + 1)
    w[:informative] = rng.choice([-1.0, 1.0], informative) * rng.uniform(1.0, 2.5, informative)
    w[-1] = 0.3
    x = rng.standard_normal((n, features)).astype("float32")
    logits = (x @ w[:-1] + w[-1]) / noise
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logits))).astype("int64")
    return x, y, w
