"""Horovod data-parallel training for Keras 3 models: the one place that makes them work together.

Horovod 0.28.1 predates Keras 3. Its ``DistributedGradientTape``, ``DistributedOptimizer`` and
``broadcast_variables(model.variables)`` call ``.ref()``, which Keras 3 variables lack
(``AttributeError: 'Variable' object has no attribute 'ref'``). labkit works around it:

- gradients come from a plain ``tf.GradientTape`` and are averaged with
  ``hvd.grouped_allreduce(grads, op=hvd.Average)`` (:func:`average_gradients`);
- the initial state is broadcast through the TF variables behind the Keras ones
  (``v.value``), model and optimizer alike (:func:`broadcast_state`);
- metrics are averaged across ranks (:func:`average_metrics`);
- each worker gets an explicit thread budget (:func:`thread_budget`, :func:`configure_threads`).

Two ways to use it:

Custom training loop::

    ctx = labkit.distributed.init()               # hvd.init() + thread budget
    step = labkit.distributed.train_step_fn(model, optimizer, loss_fn)
    for i, (x, y) in enumerate(batches):
        loss = step(x, y)
        if i == 0:
            labkit.distributed.broadcast_state(model, optimizer)

``model.fit``::

    ctx = labkit.distributed.init()
    model.compile(optimizer=labkit.distributed.DistributedOptimizer(keras.optimizers.SGD(0.1 * ctx.size)), ...)
    model.fit(x, y, callbacks=labkit.distributed.callbacks(), verbose=ctx.rank == 0)

With one process every one of these is the identity, so the same code trains exactly like plain
Keras.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import horovod.tensorflow as hvd
import keras
import numpy as np
import tensorflow as tf

from labkit.threads import ThreadBudget, as_budget, thread_budget  # noqa: F401 (thread_budget: re-exported)


# --------------------------------------------------------------------------------------------
# Thread budgets (ThreadBudget and thread_budget live in labkit.threads, which imports no TF)
# --------------------------------------------------------------------------------------------
def configure_threads(budget: ThreadBudget) -> ThreadBudget:
    """Apply ``budget`` to this process: environment variables and, if TF allows it, TF itself.

    TensorFlow fixes its thread pools when its runtime starts, so call this before any TF op
    runs. Returns what TF actually uses; a warning is printed if it was too late.
    """
    os.environ.update(budget.env())
    try:
        tf.config.threading.set_intra_op_parallelism_threads(budget.intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(budget.inter_op)
    except RuntimeError:  # "... cannot be modified after initialization"
        actual = ThreadBudget(tf.config.threading.get_intra_op_parallelism_threads(),
                              tf.config.threading.get_inter_op_parallelism_threads())
        if actual != budget:
            print(f"labkit: TensorFlow had already started, so its threads stay at {actual}; "
                  f"call configure_threads() before running any TF op to get {budget}.")
        return actual
    return budget


# --------------------------------------------------------------------------------------------
# Start-up
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerContext:
    """Who this process is in the Horovod job."""

    rank: int
    size: int
    local_rank: int
    threads: ThreadBudget

    @property
    def is_chief(self) -> bool:
        """Rank 0 prints, saves and plots; the others stay quiet."""
        return self.rank == 0


def init(threads: ThreadBudget | int | None = None) -> WorkerContext:
    """Start Horovod in this process and give it a thread budget.

    ``threads`` may be a :class:`ThreadBudget`, an intra-op thread count, or None for a fair
    share of the local cores (:func:`thread_budget` over the local worker count).
    """
    hvd.init()
    threads = configure_threads(as_budget(threads, hvd.local_size()))
    return WorkerContext(rank=hvd.rank(), size=hvd.size(), local_rank=hvd.local_rank(), threads=threads)


# --------------------------------------------------------------------------------------------
# The three collective operations training needs
# --------------------------------------------------------------------------------------------
def _tf_variables(variables) -> list:
    """The ``tf.Variable`` behind each Keras 3 variable (Horovod needs ``.ref()``, which they lack)."""
    return [getattr(v, "value", v) for v in variables]


def average_gradients(gradients: list) -> list:
    """Average gradients across all ranks in one fused allreduce. ``None`` entries stay ``None``.

    Works eagerly and inside ``tf.function``. With one process it returns the gradients as they are.
    """
    if hvd.size() == 1:
        return list(gradients)
    present = [i for i, g in enumerate(gradients) if g is not None]
    reduced = hvd.grouped_allreduce([gradients[i] for i in present], op=hvd.Average)
    out = list(gradients)
    for i, g in zip(present, reduced):
        out[i] = g
    return out


def broadcast_state(model, optimizer=None, root_rank: int = 0) -> None:
    """Make every rank start from ``root_rank``'s weights and optimizer state.

    Builds the optimizer's slots first if needed (so they exist on every rank), then broadcasts
    model and optimizer variables. Call it once, before the first step or right after it.
    """
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    if hvd.size() == 1:
        return
    variables = list(model.variables)
    if optimizer is not None:
        variables += list(optimizer.variables)
    hvd.broadcast_variables(_tf_variables(variables), root_rank=root_rank)


def average_metrics(logs: dict) -> dict:
    """Average scalar metrics (loss, accuracy, ...) across ranks; returns a new dict."""
    if not logs or hvd.size() == 1:
        return dict(logs or {})
    names = sorted(k for k, v in logs.items() if np.ndim(v) == 0)
    values = hvd.allreduce(tf.constant([float(logs[k]) for k in names], tf.float64),
                           op=hvd.Average, name="labkit.average_metrics")
    averaged = dict(logs)
    averaged.update({k: float(v) for k, v in zip(names, values.numpy())})
    return averaged


# --------------------------------------------------------------------------------------------
# Custom training loops
# --------------------------------------------------------------------------------------------
def train_step_fn(model, optimizer, loss_fn, jit: bool = True):
    """A compiled step ``step(x, y) -> loss`` that averages gradients across ranks before applying them.

    The returned loss is this rank's own; use :func:`average_metrics` to report a global one.
    """
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(average_gradients(grads), model.trainable_variables))
        return loss

    return tf.function(step) if jit else step


# --------------------------------------------------------------------------------------------
# model.fit
# --------------------------------------------------------------------------------------------
def DistributedOptimizer(optimizer):
    """Wrap a Keras 3 optimizer so that it averages gradients across ranks before each update.

    Returns an instance of a subclass of the optimizer's own class (so ``model.compile`` and
    serialisation see a normal optimizer) with the same configuration.
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(f"expected a keras.optimizers.Optimizer instance, got {type(optimizer).__name__}")
    base = type(optimizer)

    class _Distributed(base):
        _labkit_distributed = True

        def apply(self, grads, trainable_variables=None):
            return super().apply(average_gradients(list(grads)), trainable_variables)

    _Distributed.__name__ = _Distributed.__qualname__ = f"Distributed{base.__name__}"
    return _Distributed.from_config(optimizer.get_config())


def is_distributed(optimizer) -> bool:
    """True when ``optimizer`` came from :func:`DistributedOptimizer`."""
    return bool(getattr(optimizer, "_labkit_distributed", False))


class BroadcastInitialState(keras.callbacks.Callback):
    """Keras callback: at the start of training, broadcast model and optimizer state from root."""

    def __init__(self, root_rank: int = 0):
        super().__init__()
        self.root_rank = root_rank

    def on_train_begin(self, logs=None):
        broadcast_state(self.model, self.model.optimizer, root_rank=self.root_rank)


class MetricAverage(keras.callbacks.Callback):
    """Keras callback: average each epoch's metrics across ranks, in place, so that History and
    the callbacks after it see global values."""

    def on_epoch_end(self, epoch, logs=None):
        if logs:
            logs.update(average_metrics(logs))


def callbacks(root_rank: int = 0) -> list:
    """The callbacks ``model.fit`` needs under Horovod: broadcast first, then metric averaging."""
    return [BroadcastInitialState(root_rank), MetricAverage()]
