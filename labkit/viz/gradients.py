"""Gradient flow: how large the gradients are in each layer, and across time in a recurrent net.

Record
- :class:`GradientFlowRecorder` -- a Keras callback: per layer weight, mean |g|, max |g| and the
  update-to-weight ratio ||Δw|| / ||w|| of the real training steps, as a tidy table.
- :func:`input_gradients_over_time` -- for a recurrent model, ||∂loss/∂x_t|| at every timestep t
  (backpropagation through time): where it vanishes, early inputs cannot be learned from.

Plot
- :func:`plot_gradient_flow` -- one line per layer over training, log scale.
- :func:`plot_gradient_profile` -- mean |g| and max |g| per layer at one step (bars, log scale).
- :func:`plot_gradients_over_time` -- ||∂loss/∂x_t|| against t for several models, log scale.

Explore
- :func:`explore_gradient_flow` -- a slider over the recorded steps that redraws the profile.

How the recorder works: for the length of ``fit`` it wraps the optimizer's ``apply_gradients``.
On every ``every``-th step (decided inside the compiled step, from ``optimizer.iterations``) the
statistics are computed in the graph and written into a small buffer variable; the other steps
skip that work. Python reads the buffer only at the end of each epoch, and the recorder has no
per-batch hook, so Keras keeps dispatching steps asynchronously. The wrap is removed when training
ends.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

import keras
from keras import ops


def _layer_and_weight(variable) -> tuple[str, str]:
    path = getattr(variable, "path", variable.name)
    parts = path.split("/")
    return ("/".join(parts[:-1]) or parts[0]), parts[-1]


class GradientFlowRecorder(keras.callbacks.Callback):
    """Record per-weight gradient statistics and update-to-weight ratios during ``fit``.

    Args:
        every: record every ``every`` training steps (steps 1, 1 + every, ...). The default, 10,
            keeps the overhead small; use 1 to see every step.
        weights: ``"kernels"`` (default: the weight matrices that carry the signal, one line per
            layer) or ``"all"`` (biases, gammas, ... too).

    After ``fit``, :attr:`table` is a DataFrame with one row per (step, weight): ``step``,
    ``epoch``, ``layer``, ``weight``, ``mean_abs_grad``, ``max_abs_grad``, ``weight_norm``
    (‖w‖ before the step), ``update_ratio`` (= ‖w_after − w_before‖ / ‖w_before‖).
    """

    def __init__(self, every: int = 10, weights: str = "kernels"):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        if weights not in ("kernels", "all"):
            raise ValueError(f"weights must be 'kernels' or 'all', got {weights!r}")
        self.every, self.weights = every, weights
        self.rows: list[dict] = []
        self._steps_before = 0  # steps of earlier fits with this recorder
        self._epoch = 0
        self._wrapped = None

    def _selected(self, variables):
        if self.weights == "all":
            return list(variables)
        return [v for v in variables if len(v.shape) >= 2]

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        if optimizer is None:
            raise ValueError("GradientFlowRecorder needs a compiled model (call model.compile first).")
        variables = self._selected(self.model.trainable_weights)
        if not variables:
            raise ValueError("GradientFlowRecorder found no trainable weight matrices in this model.")
        self._variables = variables
        watched = {id(v): i for i, v in enumerate(variables)}
        n, every = len(variables), self.every
        steps = (self.params or {}).get("steps")
        self._capacity = capacity = (-(-steps // every) + 1) if steps else 1024  # records per epoch
        self._base = base = int(optimizer.iterations.numpy())
        self._flushed = 0
        # buffer[slot, i] = (mean|g|, max|g|, ||w_before||, ||Δw||); pre and snapshots live between the two halves
        self._buffer = buffer = keras.Variable(np.zeros((capacity, n, 4), "float32"), trainable=False,
                                               name="labkit_gradflow")
        pre = keras.Variable(np.zeros((n, 3), "float32"), trainable=False, name="labkit_gradflow_pre")
        snapshots = [keras.Variable(np.zeros(v.shape, "float32"), trainable=False, name="labkit_gradflow_w")
                     for v in variables]
        self._wrapped = (optimizer, "apply_gradients" in optimizer.__dict__, optimizer.__dict__.get("apply_gradients"))
        original = optimizer.apply_gradients

        def apply_gradients(grads_and_vars):
            pairs = list(grads_and_vars)
            grads = {watched[id(v)]: g for g, v in pairs if id(v) in watched and g is not None}
            step = ops.cast(optimizer.iterations, "int64") - base
            record = ops.equal(step % every, 0)
            slot = (step // every) % capacity

            def before():
                rows = []
                for i, v in enumerate(variables):
                    if i not in grads:
                        rows.append(ops.zeros((3,), "float32"))
                        continue
                    w = ops.cast(ops.convert_to_tensor(v), "float32")
                    snapshots[i].assign(w)
                    g_abs = ops.abs(ops.cast(grads[i], "float32"))
                    rows.append(ops.stack([ops.mean(g_abs), ops.max(g_abs), ops.sqrt(ops.sum(ops.square(w)))]))
                pre.assign(ops.stack(rows))
                return ops.zeros((), "int32")

            def after():
                deltas = [ops.sqrt(ops.sum(ops.square(ops.cast(ops.convert_to_tensor(v), "float32") - snapshots[i])))
                          if i in grads else ops.zeros((), "float32") for i, v in enumerate(variables)]
                row = ops.concatenate([ops.convert_to_tensor(pre), ops.stack(deltas)[:, None]], axis=1)
                buffer.assign(ops.slice_update(buffer, (ops.cast(slot, "int32"), 0, 0), row[None]))
                return ops.zeros((), "int32")

            nothing = lambda: ops.zeros((), "int32")  # noqa: E731
            ops.cond(record, before, nothing)
            result = original(pairs)
            ops.cond(record, after, nothing)
            return result

        optimizer.apply_gradients = apply_gradients
        self.model.make_train_function(force=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _flush(self):
        """Copy the records written since the last flush out of the in-graph buffer."""
        done = int(self.model.optimizer.iterations.numpy()) - self._base
        made = -(-done // self.every)
        if made - self._flushed > self._capacity:
            import warnings

            warnings.warn(f"GradientFlowRecorder: {made - self._flushed - self._capacity} records were overwritten "
                          "before they could be read; raise `every`", stacklevel=2)
            self._flushed = made - self._capacity
        values = self._buffer.numpy()
        for k in range(self._flushed, made):
            for v, (mean_g, max_g, w_norm, d_norm) in zip(self._variables, values[k % self._capacity]):
                layer, weight = _layer_and_weight(v)
                self.rows.append({"step": self._steps_before + k * self.every + 1, "epoch": self._epoch,
                                  "layer": layer, "weight": weight,
                                  "mean_abs_grad": float(mean_g), "max_abs_grad": float(max_g),
                                  "weight_norm": float(w_norm),
                                  "update_ratio": float(d_norm / w_norm) if w_norm > 0 else np.nan})
        self._flushed = made
        return done

    def on_epoch_end(self, epoch, logs=None):
        self._flush()

    def on_train_end(self, logs=None):
        if self._wrapped is None:
            return
        done = self._flush()
        self._steps_before += done
        optimizer, had, previous = self._wrapped
        if had:
            optimizer.apply_gradients = previous
        else:
            del optimizer.apply_gradients  # drop the instance attribute: the class method is back
        self._wrapped = None
        self.model.train_function = None  # the next fit traces a clean step

    @property
    def table(self) -> pd.DataFrame:
        """The recorded statistics, one row per (step, weight)."""
        return pd.DataFrame(self.rows, columns=["step", "epoch", "layer", "weight", "mean_abs_grad",
                                                "max_abs_grad", "weight_norm", "update_ratio"])


def _label(row) -> str:
    return row["layer"] if row["weight"] in ("kernel", "embeddings") else f'{row["layer"]}/{row["weight"]}'


def plot_gradient_flow(table: pd.DataFrame, metric: str = "mean_abs_grad", ax=None):
    """One line per layer: ``metric`` (mean |g|, max |g| or update ratio) against the training step, log scale.

    Layers that sit orders of magnitude below the others learn orders of magnitude more slowly.
    For the update ratio, a rule of thumb is about 1e-3 per step: much lower means the layer barely
    moves, much higher means it is being overwritten.
    """
    import matplotlib.pyplot as plt

    names = {"mean_abs_grad": "mean |gradient|", "max_abs_grad": "max |gradient|",
             "update_ratio": "update / weight  (‖Δw‖ / ‖w‖)"}
    if metric not in names:
        raise ValueError(f"metric must be one of {sorted(names)}, got {metric!r}")
    if table.empty:
        raise ValueError("the table is empty: was the recorder passed to fit(callbacks=[...])?")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 4))
    table = table.assign(label=table.apply(_label, axis=1))
    order = list(dict.fromkeys(table["label"]))
    cmap = plt.get_cmap("viridis")
    for k, name in enumerate(order):
        part = table[table["label"] == name]
        ax.plot(part["step"], part[metric].clip(lower=1e-30), label=name, color=cmap(k / max(1, len(order) - 1)))
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(names[metric] + " (log scale)")
    ax.set_title(f"Gradient flow: {names[metric]} per layer (input layer = darkest)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="layer", title_fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_gradient_profile(table: pd.DataFrame, step: int | None = None, ax=None):
    """Mean |g| and max |g| per layer (input on the left) at one recorded ``step`` (default: the last)."""
    import matplotlib.pyplot as plt

    if table.empty:
        raise ValueError("the table is empty: was the recorder passed to fit(callbacks=[...])?")
    steps = table["step"].unique()
    step = steps[-1] if step is None else steps[np.abs(steps - step).argmin()]
    part = table[table["step"] == step]
    labels = [_label(r) for _, r in part.iterrows()]
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 3.8))
    x = np.arange(len(part))
    ax.bar(x, part["max_abs_grad"], color="#9ecae1", label="max |g|")
    ax.bar(x, part["mean_abs_grad"], color="#08519c", width=0.5, label="mean |g|")
    ax.set_yscale("log")
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("|gradient| (log scale)")
    ax.set_title(f"Gradient per layer at step {step} (input layer on the left)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def explore_gradient_flow(table: pd.DataFrame):
    """A slider over the recorded steps; moving it redraws :func:`plot_gradient_profile`."""
    from labkit.viz._widgets import figure_view

    steps = [int(s) for s in table["step"].unique()]
    return figure_view(lambda step: plot_gradient_profile(table, step=step),
                       step=("slider", steps))


# --------------------------------------------------------------------------- recurrent nets

def input_gradients_over_time(model: keras.Model, x, y, loss=None) -> np.ndarray:
    """‖∂loss/∂x_t‖ at every timestep t, averaged over the batch: an array of shape (timesteps,).

    This is backpropagation through time made visible: the gradient that reaches input step t has
    been multiplied by the recurrent Jacobian once per step between t and the end. If it shrinks
    geometrically, the early timesteps barely influence learning (vanishing gradients).
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(np.asarray(x, dtype="float32"))
    if x.shape.rank != 3:
        raise ValueError(f"x must have shape (batch, timesteps, features), got {tuple(x.shape)}")
    loss_fn = keras.losses.get(loss) if loss is not None else (model.loss if model.loss else keras.losses.MeanSquaredError())
    if isinstance(loss_fn, str):
        loss_fn = keras.losses.get(loss_fn)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss_value = tf.reduce_mean(loss_fn(y, model(x, training=False)))
    grad = tape.gradient(loss_value, x).numpy()  # (batch, T, features)
    return np.linalg.norm(grad, axis=-1).mean(axis=0)


def early_late_ratio(profile, fraction: float = 0.1) -> float:
    """Mean gradient over the first ``fraction`` of timesteps divided by the mean over the last ones."""
    profile = np.asarray(profile, dtype="float64")
    k = max(1, int(round(len(profile) * fraction)))
    return float(profile[:k].mean() / profile[-k:].mean())


def plot_gradients_over_time(profiles: dict, ax=None):
    """‖∂loss/∂x_t‖ against timestep t, one line per model, log scale (``profiles``: name → array)."""
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 4))
    for name, prof in profiles.items():
        prof = np.asarray(prof)
        ax.plot(np.arange(len(prof)), np.clip(prof, 1e-30, None),
                label=f"{name} (first/last 10%: {early_late_ratio(prof):.1e})")
    ax.set_yscale("log")
    ax.set_xlabel("input timestep t (0 = earliest; the loss is computed after the last)")
    ax.set_ylabel("‖∂loss / ∂x_t‖ (log scale)")
    ax.set_title("Backpropagation through time: how much gradient reaches each timestep")
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig
