"""Measure a ``tf.data`` input pipeline: rows per second, and time per training step.

A model can only train as fast as its input arrives. These helpers time a pipeline the same
way for every variant, so that each ``tf.data`` step (map, batch, shuffle, cache, prefetch) is
judged by one number.

- :func:`csv_decoder` -- a ``tf.io.decode_csv`` for the shop's ``events.csv`` (or any CSV).
- :func:`throughput` -- run a dataset to the end inside TensorFlow and count rows per second
  (one row of a tidy table); :func:`count_rows` does the counting.
- :func:`step_times` -- a training loop where each step takes ``step_ms`` (standing in for the
  model's work); the measured wait for input per step shows whether the input keeps up.
- :func:`as_written` -- switch off tf.data's automatic optimisations (it injects a ``prefetch``
  and tunes parallelism by itself), so that a pipeline does exactly what its code says.
- :func:`plot_throughput` -- the table as a bar chart, rows/s on a log axis.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd


def csv_decoder(column_defaults: list, select: list[int] | None = None):
    """A function ``lines -> tuple of tensors`` decoding CSV text lines (one line or a batch of
    lines: ``decode_csv`` is vectorised, which is why batching *before* parsing pays)."""
    import tensorflow as tf

    def decode(lines):
        return tuple(tf.io.decode_csv(lines, record_defaults=column_defaults, select_cols=select))
    return decode


def as_written(dataset):
    """``dataset`` with tf.data's automatic rewrites off: no injected ``prefetch``, no autotuned
    parallelism or buffers beyond what the code asks for. Use it to measure what each step
    contributes; leave the defaults on in real training."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.inject_prefetch = False
    options.experimental_optimization.map_parallelization = False
    return dataset.with_options(options)


def _is_batched(dataset) -> bool:
    """A batched element's first component has an unknown (None) leading dimension."""
    spec = dataset.element_spec
    first = spec[0] if isinstance(spec, (tuple, list)) else spec
    shape = getattr(first, "shape", None)
    return shape is not None and shape.rank is not None and shape.rank >= 1 and shape[0] is None


def count_rows(dataset) -> int:
    """Run ``dataset`` to the end inside TensorFlow (``Dataset.reduce``: no Python per element) and
    return how many rows it produced (batch sizes added up for a batched dataset)."""
    import tensorflow as tf

    batched = _is_batched(dataset)

    def add(total, *element):
        if not batched:
            return total + 1
        first = element[0]
        while isinstance(first, (tuple, list)):
            first = first[0]
        return total + tf.cast(tf.shape(first)[0], tf.int64)
    return int(dataset.reduce(tf.constant(0, tf.int64), add))


def throughput(dataset, name: str, epochs: int = 1) -> dict:
    """Run ``dataset`` to the end ``epochs`` times and time it: ``{variant, epoch, rows, seconds,
    rows_per_s}`` for the last epoch (the first epoch of a ``cache()`` pipeline fills the cache;
    the second reads it).

    The elements are consumed inside TensorFlow (:func:`count_rows`), so this measures the
    pipeline, not Python's loop over it: a Python ``for`` loop adds tens of microseconds per
    element, which would hide the difference between the variants.
    """
    result = {}
    for epoch in range(epochs):
        start = time.perf_counter()
        rows = count_rows(dataset)
        seconds = time.perf_counter() - start
        result = {"variant": name, "epoch": epoch + 1, "rows": rows, "seconds": round(seconds, 4),
                  "rows_per_s": rows / seconds if seconds else float("nan")}
    return result


def step_times(dataset, step_ms: float = 5.0, steps: int = 50, name: str = "") -> dict:
    """Run ``steps`` training steps that each take ``step_ms`` of (simulated) compute, pulling one
    batch per step. Returns ``{variant, steps, step_ms, seconds, ms_per_step, input_wait_ms}``:
    ``input_wait_ms`` is the mean time each step waited for its batch. With ``prefetch`` the next
    batch is prepared while the step runs, so the wait drops towards zero.

    The step sleeps instead of computing, as if the model ran on an accelerator: it leaves the
    CPU to the input pipeline, which is the situation prefetching is made for.
    """
    it = iter(dataset)
    next(it)  # the first batch pays for start-up (threads, file opening): leave it out
    waits = []
    start = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            break
        waits.append(time.perf_counter() - t)
        time.sleep(step_ms / 1000.0)
    seconds = time.perf_counter() - start
    n = len(waits)
    return {"variant": name, "steps": n, "step_ms": step_ms, "seconds": round(seconds, 4),
            "ms_per_step": 1000 * seconds / n if n else float("nan"),
            "input_wait_ms": 1000 * float(np.mean(waits)) if waits else float("nan")}


def plot_throughput(table: pd.DataFrame, value: str = "rows_per_s", label: str = "variant", ax=None,
                    title: str = "Input pipeline throughput"):
    """Horizontal bars of ``table[value]`` per ``table[label]`` on a log axis, each bar annotated.
    Returns the Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(table) + 1.2))
    else:
        fig = ax.figure
    y = np.arange(len(table))[::-1]
    ax.barh(y, table[value], color="#4c72b0")
    ax.set_yticks(y, table[label])
    ax.set_xscale("log")
    for yi, v in zip(y, table[value]):
        ax.text(v, yi, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_xlabel({"rows_per_s": "throughput (rows/s, log scale)"}.get(value, value))
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3, which="both")
    ax.set_xlim(right=ax.get_xlim()[1] * 4)
    fig.tight_layout()
    return fig
