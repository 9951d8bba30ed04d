"""Logistic regression at scale, written out in NumPy so that every step can be seen.

Model and loss
- :func:`predict_proba`, :func:`log_loss`, :func:`loss_and_gradient` -- ``σ(x·w + b)``, the
  mean cross-entropy and its gradient ``xᵀ(σ(xw) − y) / n`` (+ the L2 term). Weights are one
  vector with the bias last.

Training (each returns the weights and a tidy history: one row per recorded step)
- :func:`train` -- full-batch gradient descent (``method="gd"``), stochastic gradient descent
  (``"sgd"``, one example per step) or mini-batch SGD (``"minibatch"``), over arrays in memory or
  :class:`labkit.data.Shards` on disk, with L1 (proximal step) and L2 penalties.
- :func:`regularization_path` -- the weights as the penalty grows: L1 sets weights to exactly 0,
  L2 only shrinks them.

Model selection
- :func:`kfold`, :func:`cross_validate` -- k-fold cross-validation, one row per fold.
- :func:`grid_search` -- every setting of a grid scored by cross-validation, run as task
  parallelism: ``workers`` processes, each with its own copy of the data, a different setting each.
"""
from __future__ import annotations

import itertools
import os
import time

import numpy as np
import pandas as pd


def _add_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1), dtype=x.dtype)])


def predict_proba(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``P(y = 1 | x) = σ(x · w[:-1] + w[-1])``."""
    z = x @ w[:-1] + w[-1]
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def log_loss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy ``−[y log p + (1 − y) log(1 − p)]``, computed stably from the logits."""
    z = x @ w[:-1] + w[-1]
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of examples where ``p > 0.5`` agrees with the label."""
    return float(np.mean((predict_proba(w, x) > 0.5) == (y == 1)))


def loss_and_gradient(w: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float = 0.0):
    """``(loss, gradient)`` of the mean cross-entropy plus ``l2/2 · ‖w‖²`` (the bias is not
    penalised). The gradient is ``xᵀ(p − y) / n + l2 · w``."""
    z = x @ w[:-1] + w[-1]
    p = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
    r = (p - y) / len(y)
    grad = np.empty_like(w)
    grad[:-1] = x.T @ r + l2 * w[:-1]
    grad[-1] = r.sum()
    loss = float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * w[:-1] @ w[:-1])
    return loss, grad


def soft_threshold(w: np.ndarray, t: float) -> np.ndarray:
    """The proximal step of ``t·‖w‖₁``: shrink every weight towards 0 by ``t``, and set the ones
    smaller than ``t`` to exactly 0 (the bias is left alone)."""
    out = w.copy()
    out[:-1] = np.sign(w[:-1]) * np.maximum(np.abs(w[:-1]) - t, 0.0)
    return out


def _batches(data, batch_size: int, rng: np.random.Generator):
    """Mini-batches over one pass of ``data``: ``(x, y)`` arrays, or a Shards-like object with
    ``batches(batch_size, shuffle, seed)``."""
    if isinstance(data, tuple):
        x, y = data
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]
    else:
        yield from data.batches(batch_size, shuffle=True, seed=int(rng.integers(1 << 31)))


def _full_gradient(data, w, l2):
    """Loss and gradient over the whole data set, one shard at a time (for gradient descent)."""
    if isinstance(data, tuple):
        return loss_and_gradient(w, *data, l2=l2)
    total_loss, total_grad, n = 0.0, np.zeros_like(w), 0
    for xs, ys in data:
        loss, grad = loss_and_gradient(w, xs, ys, l2=l2)
        total_loss += loss * len(ys)
        total_grad += grad * len(ys)
        n += len(ys)
    return total_loss / n, total_grad / n


def _rows(data) -> int:
    return len(data[0]) if isinstance(data, tuple) else data.rows


def _features(data) -> int:
    return data[0].shape[1] if isinstance(data, tuple) else data.features


def train(data, method: str = "minibatch", lr: float = 0.1, batch_size: int = 64, epochs: float = 5,
          l1: float = 0.0, l2: float = 0.0, evaluate=None, records: int = 40, seed: int = 0,
          w0: np.ndarray | None = None, threads: int | None = 1):
    """Fit logistic regression; returns ``(w, history)``.

    - ``data``: ``(x, y)`` arrays, or :class:`labkit.data.Shards` streamed from disk.
    - ``method``: ``"gd"`` (one step per pass over all the data), ``"sgd"`` (one example per step)
      or ``"minibatch"`` (``batch_size`` examples per step).
    - ``epochs``: passes over the data (fractions allowed: SGD often needs less than one).
    - ``l1``: proximal (soft-threshold) step after each gradient step; ``l2``: in the gradient.
    - ``evaluate``: ``(x, y)`` held in memory on which the loss is recorded (default: ``data``
      when it is in memory). Evaluation time is left out of the wall-clock column.
    - ``threads``: BLAS threads (None: leave BLAS's own setting). The default is 1: these are
      matrix–vector products, limited by memory, not arithmetic; a second thread only adds
      synchronisation, and on a busy machine it waits for a core and stalls every step.
    - ``history``: one row per record, about ``records`` of them: ``step``, ``passes``
      (examples seen ÷ data size), ``seconds`` (training time so far), ``loss``, ``accuracy``.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        return _train(data, method, lr, batch_size, epochs, l1, l2, evaluate, records, seed, w0)


def _train(data, method, lr, batch_size, epochs, l1, l2, evaluate, records, seed, w0):
    if method not in ("gd", "sgd", "minibatch"):
        raise ValueError(f"method must be 'gd', 'sgd' or 'minibatch', got {method!r}")
    if evaluate is None:
        if not isinstance(data, tuple):
            raise ValueError("pass evaluate=(x, y): data on disk is not evaluated in full every record")
        evaluate = data
    n, d = _rows(data), _features(data)
    rng = np.random.default_rng(seed)
    w = np.zeros(d + 1) if w0 is None else np.array(w0, dtype="float64")
    size = n if method == "gd" else (1 if method == "sgd" else batch_size)
    total_steps = max(1, int(round(epochs * n / size)))
    every = max(1, total_steps // records)
    history, seen, step, seconds = [], 0, 0, 0.0

    def record():
        history.append({"method": method, "lr": lr, "batch_size": size, "step": step,
                        "passes": seen / n, "seconds": seconds, "loss": log_loss(w, *evaluate),
                        "accuracy": accuracy(w, *evaluate)})
    record()
    while step < total_steps:
        batches = [None] if method == "gd" else _batches(data, size, rng)
        for batch in batches:
            start = time.perf_counter()
            if method == "gd":
                _, grad = _full_gradient(data, w, l2)
                m = n
            else:
                xb, yb = batch
                _, grad = loss_and_gradient(w, xb, yb, l2=l2)
                m = len(yb)
            w = w - lr * grad
            if l1:
                w = soft_threshold(w, lr * l1)
            seconds += time.perf_counter() - start
            seen += m
            step += 1
            if step % every == 0 or step == total_steps:
                record()
            if step >= total_steps:
                break
    return w, pd.DataFrame(history)


def regularization_path(x: np.ndarray, y: np.ndarray, penalty: str = "l1", strengths=None,
                        lr: float = 0.5, steps: int = 300) -> pd.DataFrame:
    """Weights fitted by full-batch gradient descent for each penalty strength (strongest last),
    warm-starting each fit from the previous one. A tidy table: one row per (strength, feature)
    with ``weight``."""
    if penalty not in ("l1", "l2"):
        raise ValueError(f"penalty must be 'l1' or 'l2', got {penalty!r}")
    strengths = np.logspace(-3, 0, 12) if strengths is None else np.asarray(strengths, dtype=float)
    rows, w = [], None
    for lam in strengths:
        kw = {"l1": lam} if penalty == "l1" else {"l2": lam}
        w, _ = train((x, y), method="gd", lr=lr, epochs=steps, records=1, w0=w, **kw)
        rows += [{"penalty": penalty, "strength": lam, "feature": j, "weight": w[j]} for j in range(len(w) - 1)]
    return pd.DataFrame(rows)


def kfold(n: int, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` pairs ``(train_index, validation_index)``: the shuffled rows cut into ``k`` folds; each
    fold is the validation set once and part of the training set ``k − 1`` times."""
    if not 2 <= k <= n:
        raise ValueError(f"k must be between 2 and n={n}, got {k}")
    folds = np.array_split(np.random.default_rng(seed).permutation(n), k)
    return [(np.concatenate(folds[:i] + folds[i + 1:]), folds[i]) for i in range(k)]


def cross_validate(x: np.ndarray, y: np.ndarray, k: int = 5, seed: int = 0, **train_args) -> pd.DataFrame:
    """Train on ``k − 1`` folds, score on the held-out one, ``k`` times: one row per fold with the
    training and validation loss and the validation accuracy. ``train_args`` go to :func:`train`."""
    rows = []
    for fold, (tr, va) in enumerate(kfold(len(x), k, seed)):
        w, _ = train((x[tr], y[tr]), records=1, seed=seed, **train_args)
        rows.append({"fold": fold, "train_loss": log_loss(w, x[tr], y[tr]),
                     "val_loss": log_loss(w, x[va], y[va]), "val_accuracy": accuracy(w, x[va], y[va])})
    return pd.DataFrame(rows)


# --- task parallelism: a copy of the data per worker, a different setting each ------------------
_WORKER_DATA: dict = {}


def _load_worker_data(path: str, threads: int) -> None:
    """Runs once in each worker process: its own copy of the data, and a one-thread BLAS so that
    the workers don't fight over the cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    with np.load(path) as f:
        _WORKER_DATA["xy"] = (f["x"], f["y"])


def _score_setting(setting: dict, k: int, seed: int) -> dict:
    x, y = _WORKER_DATA["xy"]
    start = time.perf_counter()
    folds = cross_validate(x, y, k=k, seed=seed, **setting)
    return {**setting, "val_loss": folds["val_loss"].mean(), "val_loss_std": folds["val_loss"].std(),
            "val_accuracy": folds["val_accuracy"].mean(), "seconds": time.perf_counter() - start,
            "worker_pid": os.getpid()}


def _stop_resource_tracker() -> None:
    """End the helper process that ``spawn`` starts to track shared semaphores, so that a grid
    search leaves no process behind (it starts again by itself when next needed)."""
    from multiprocessing import resource_tracker

    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if stop is not None:
        stop()


def grid(**axes) -> list[dict]:
    """Every combination of the given values: ``grid(lr=[0.1, 1], l2=[0, 0.01])`` → 4 settings."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


def grid_search(data_path, settings: list[dict], workers: int = 1, k: int = 5, seed: int = 0,
                threads_per_worker: int = 1):
    """Score every setting by ``k``-fold cross-validation on ``workers`` processes; returns
    ``(table, seconds)``.

    ``data_path`` is an ``.npz`` file with arrays ``x`` and ``y``: each worker loads its own copy
    (nothing is shared, so this works the same across machines). The processes are started fresh
    (``spawn``), and ``seconds`` is the wall time including their start-up: the honest cost.
    The table has one row per setting, best (lowest validation loss) first.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_load_worker_data, initargs=(str(data_path), threads_per_worker)) as pool:
        futures = [pool.submit(_score_setting, s, k, seed) for s in settings]
        rows = [f.result() for f in futures]
    seconds = time.perf_counter() - start
    _stop_resource_tracker()
    table = pd.DataFrame(rows).sort_values("val_loss").reset_index(drop=True)
    table["worker"] = table["worker_pid"].rank(method="dense").astype(int) - 1
    return table.drop(columns="worker_pid"), seconds
