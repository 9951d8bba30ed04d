"""Batch-norm statistics: what each BatchNormalization layer sees and learns during training.

Record
- :class:`BatchNormRecorder` -- a Keras callback: per BN layer, channel and recorded step, the batch
  mean and variance of the layer's inputs (the very numbers BN normalised with),
  ``moving_mean``/``moving_variance`` (what inference will use) and ``gamma``/``beta``.
- :func:`activations` -- the outputs of chosen layers for a batch (e.g. every activation layer).
- :func:`activation_table` -- per layer: mean, std and the *saturated fraction* of the units.

Plot
- :func:`plot_batchnorm_stats` -- four panels for one BN layer over training.
- :func:`plot_activation_distributions` -- histograms per layer, side by side for several models
  (say, without and with BN), each with its saturated fraction.

Explore
- :func:`explore_batchnorm` -- dropdowns for layer and channel count.

How the recorder works: for the length of ``fit`` it wraps each BN layer's moment computation
and its ``call``. On every ``every``-th training step (decided inside the compiled step, from
``optimizer.iterations``) the batch moments, the freshly updated moving averages and γ, β are
written into a small buffer variable; the other steps skip that work. Python reads the buffer only
at the end of each epoch, and the recorder has no per-batch hook, so Keras keeps dispatching steps
asynchronously. The wraps are removed when training ends.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

import keras
from keras import ops

STAT_COLUMNS = ["batch_mean", "batch_var", "moving_mean", "moving_var", "gamma", "beta"]


def batchnorm_layers(model: keras.Model) -> list:
    """The model's BatchNormalization layers (nested models included); a clear error if there are none."""
    found = []

    def walk(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        for sub in getattr(layer, "layers", []) if isinstance(layer, keras.Model) else []:
            walk(sub)

    for layer in model.layers:
        walk(layer)
    if not found:
        raise ValueError(f"model {model.name!r} has no BatchNormalization layer, so there are no batch-norm "
                         "statistics to record (add keras.layers.BatchNormalization, or build it with "
                         "labkit.models.deep_mlp(..., batch_norm=True))")
    return found


class BatchNormRecorder(keras.callbacks.Callback):
    """Record every BatchNormalization layer's statistics during ``fit``.

    Args:
        every: record every ``every`` training steps (steps 1, 1 + every, ...; default 10; 1 records
            each step).
        per_epoch: record at the end of each epoch instead (the statistics of its last batch).

    After ``fit``, :attr:`table` holds one row per (step, layer, channel): ``step``, ``epoch``,
    ``layer``, ``channel`` and the columns of :data:`STAT_COLUMNS`. ``batch_mean``/``batch_var``
    are the moments of the layer's *inputs* over the batch (and spatial positions), i.e. the
    numbers BN used to normalise that step; ``moving_mean``/``moving_var`` are the averages just
    after that step updated them; ``gamma``/``beta`` the values that step used.
    """

    def __init__(self, every: int = 10, per_epoch: bool = False):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.every, self.per_epoch = every, per_epoch
        self.rows: list[dict] = []
        self._steps_before = 0  # steps of earlier fits with this recorder
        self._epoch = 0
        self._wrapped = []

    def on_train_begin(self, logs=None):
        self._layers = batchnorm_layers(self.model)
        optimizer = self.model.optimizer
        if optimizer is None:
            raise ValueError("BatchNormRecorder needs a compiled model (call model.compile first).")
        steps = (self.params or {}).get("steps")
        every = self.every
        self._capacity = capacity = (-(-steps // every) + 1) if steps else 1024  # records per epoch
        self._base = base = int(optimizer.iterations.numpy())
        self._flushed = 0
        self._vars, self._buffers = {}, {}
        for layer in self._layers:
            if not layer.built:
                raise ValueError(f"BatchNormalization layer {layer.name!r} is not built yet: build the model first")
            channels = int(np.prod(layer.moving_mean.shape))
            bm = keras.Variable(np.zeros(channels, "float32"), trainable=False, name=f"{layer.name}_batch_mean")
            bv = keras.Variable(np.zeros(channels, "float32"), trainable=False, name=f"{layer.name}_batch_var")
            buffer = keras.Variable(np.zeros((capacity, len(STAT_COLUMNS), channels), "float32"), trainable=False,
                                    name=f"{layer.name}_stats")
            self._vars[layer.name], self._buffers[layer.name] = (bm, bv), buffer
            original_moments, original_call = layer._moments, layer.call
            traced = {"moments": False}

            def moments(inputs, mask, _original=original_moments, _bm=bm, _bv=bv, _traced=traced):
                mean, variance = _original(inputs, mask)
                _bm.assign(ops.reshape(ops.cast(mean, "float32"), (-1,)))
                _bv.assign(ops.reshape(ops.cast(variance, "float32"), (-1,)))
                _traced["moments"] = True
                return mean, variance

            def call(*args, _original=original_call, _layer=layer, _bm=bm, _bv=bv, _buffer=buffer, _traced=traced,
                     **kwargs):
                _traced["moments"] = False
                out = _original(*args, **kwargs)
                if not _traced["moments"]:  # inference mode: BN used its moving averages, nothing to record
                    return out
                step = ops.cast(optimizer.iterations, "int64") - base
                slot = ops.cast((step // every) % capacity, "int32")

                def write():
                    nan = ops.full((_bm.shape[0],), np.nan, "float32")
                    flat = lambda v: nan if v is None else ops.reshape(ops.cast(v, "float32"), (-1,))  # noqa: E731
                    row = ops.stack([flat(_bm), flat(_bv), flat(_layer.moving_mean), flat(_layer.moving_variance),
                                     flat(_layer.gamma), flat(_layer.beta)])
                    _buffer.assign(ops.slice_update(_buffer, (slot, 0, 0), row[None]))
                    return ops.zeros((), "int32")

                ops.cond(ops.equal(step % every, 0), write, lambda: ops.zeros((), "int32"))
                return out

            layer._moments, layer.call = moments, call
            self._wrapped.append(layer)
        self.model.make_train_function(force=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _append(self, step, layer, arrays):
        for c in range(len(arrays[0])):
            row = {"step": step, "epoch": self._epoch, "layer": layer.name, "channel": c}
            row.update({k: float(a[c]) for k, a in zip(STAT_COLUMNS, arrays)})
            self.rows.append(row)

    def _done(self):
        return int(self.model.optimizer.iterations.numpy()) - self._base

    def _flush(self):
        """Copy the records written since the last flush out of the in-graph buffers."""
        done = self._done()
        made = -(-done // self.every)
        if made - self._flushed > self._capacity:
            import warnings

            warnings.warn(f"BatchNormRecorder: {made - self._flushed - self._capacity} records were overwritten "
                          "before they could be read; raise `every`", stacklevel=2)
            self._flushed = made - self._capacity
        values = {name: buf.numpy() for name, buf in self._buffers.items()}
        for k in range(self._flushed, made):
            for layer in self._layers:
                self._append(self._steps_before + k * self.every + 1, layer, values[layer.name][k % self._capacity])
        self._flushed = made
        return done

    def on_epoch_end(self, epoch, logs=None):
        if not self.per_epoch:
            self._flush()
            return
        step = self._steps_before + self._done()
        for layer in self._layers:
            bm, bv = self._vars[layer.name]
            stats = [bm, bv, layer.moving_mean, layer.moving_variance, layer.gamma, layer.beta]
            self._append(step, layer, [np.ravel(v.numpy()) if v is not None else np.full(bm.shape, np.nan)
                                       for v in stats])

    def on_train_end(self, logs=None):
        if not self._wrapped:
            return
        done = self._done() if self.per_epoch else self._flush()
        self._steps_before += done
        for layer in self._wrapped:
            del layer._moments, layer.call  # the class methods are back
        self._wrapped = []
        self.model.train_function = None

    @property
    def table(self) -> pd.DataFrame:
        """The recorded statistics, one row per (step, layer, channel)."""
        return pd.DataFrame(self.rows, columns=["step", "epoch", "layer", "channel"] + STAT_COLUMNS)


def plot_batchnorm_stats(table: pd.DataFrame, layer: str | None = None, channels: int = 4):
    """Four panels for one BN layer over training (first ``channels`` channels, one colour each):

    mean (batch: solid, moving average: dashed), variance (same), gamma (learned scale) and beta
    (learned shift). The moving statistics trail the noisy batch statistics: they are what the
    layer uses at inference time.
    """
    import matplotlib.pyplot as plt

    if table.empty:
        raise ValueError("the table is empty: was the recorder passed to fit(callbacks=[...])?")
    layers = list(dict.fromkeys(table["layer"]))
    layer = layers[0] if layer is None else layer
    if layer not in layers:
        raise ValueError(f"no recorded BatchNormalization layer {layer!r}; recorded: {layers}")
    part = table[(table["layer"] == layer) & (table["channel"] < channels)]
    fig, axes = plt.subplots(2, 2, figsize=(9, 5.6), sharex=True)
    colors = plt.get_cmap("tab10")
    panels = [(axes[0, 0], "batch_mean", "moving_mean", "mean of the layer's inputs"),
              (axes[0, 1], "batch_var", "moving_var", "variance of the layer's inputs"),
              (axes[1, 0], "gamma", None, "γ (learned scale)"),
              (axes[1, 1], "beta", None, "β (learned shift)")]
    for ax, col, moving, title in panels:
        for c, ch in part.groupby("channel"):
            ax.plot(ch["step"], ch[col], color=colors(c % 10), lw=1.2, label=f"channel {c}")
            if moving:
                ax.plot(ch["step"], ch[moving], color=colors(c % 10), lw=1.5, ls="--")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("training step")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Batch-norm statistics of layer {layer!r} during training\n"
                 "(solid: this batch's statistics, dashed: the moving averages used at inference)", fontsize=10)
    fig.tight_layout()
    return fig


def explore_batchnorm(table: pd.DataFrame):
    """Dropdowns over the recorded BN layers and the number of channels shown."""
    from labkit.viz._widgets import figure_view

    layers = list(dict.fromkeys(table["layer"]))
    n = int(table["channel"].max()) + 1
    return figure_view(lambda layer, channels: plot_batchnorm_stats(table, layer, channels),
                       layer=("dropdown", layers), channels=("dropdown", sorted({1, min(4, n), min(8, n), n})))


# ---------------------------------------------------------------------------- activations

def activations(model: keras.Model, x, layers=None, training: bool = False) -> dict[str, np.ndarray]:
    """Outputs of ``layers`` (names; default: every ``keras.layers.Activation`` layer) for input ``x``.

    ``training=True`` runs BatchNormalization with the statistics of ``x`` itself, as during a
    training step (what the gradients see); ``False`` uses the moving averages, as at inference,
    which early in training are still close to their initial values (mean 0, variance 1).
    """
    if layers is None:
        chosen = [l for l in model.layers if isinstance(l, keras.layers.Activation)]
        if not chosen:
            raise ValueError(f"model {model.name!r} has no Activation layers; name the layers to read")
    else:
        by_name = {l.name: l for l in model.layers}
        missing = [n for n in layers if n not in by_name]
        if missing:
            raise ValueError(f"no layers named {missing} in model {model.name!r}")
        chosen = [by_name[n] for n in layers]
    probe = keras.Model(model.input, [l.output for l in chosen])
    outs = probe(np.asarray(x, dtype="float32"), training=training)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return {l.name: ops.convert_to_numpy(o) for l, o in zip(chosen, outs)}


def saturated_fraction(values, activation: str = "tanh", tolerance: float = 0.01) -> float:
    """Fraction of units whose activation's slope is almost zero, so little gradient passes them.

    tanh: |a| > 1 − tolerance; sigmoid: a < tolerance or a > 1 − tolerance; relu: a == 0 (a "dead" unit
    for this input).
    """
    a = np.asarray(values, dtype="float64")
    if activation == "tanh":
        return float(np.mean(np.abs(a) > 1 - tolerance))
    if activation == "sigmoid":
        return float(np.mean((a < tolerance) | (a > 1 - tolerance)))
    if activation == "relu":
        return float(np.mean(a <= 0))
    raise ValueError(f"activation must be 'tanh', 'sigmoid' or 'relu', got {activation!r}")


def activation_table(acts: dict[str, np.ndarray], activation: str = "tanh") -> pd.DataFrame:
    """One row per layer: ``layer``, ``mean``, ``std``, ``saturated_fraction`` of :func:`activations`."""
    return pd.DataFrame([{"layer": name, "mean": float(np.mean(a)), "std": float(np.std(a)),
                          "saturated_fraction": saturated_fraction(a, activation)} for name, a in acts.items()])


def plot_activation_distributions(runs: dict[str, dict[str, np.ndarray]], activation: str = "tanh", bins: int = 40):
    """Histograms of each layer's activations (rows), one column per model in ``runs``.

    ``runs`` maps a name (e.g. "without BN", "with BN") to :func:`activations` of that model on the
    same inputs. Each panel prints its saturated fraction: the share of units stuck where the
    activation is flat, which pass almost no gradient back.
    """
    import matplotlib.pyplot as plt

    if not runs:
        raise ValueError("runs is empty: pass {'name': activations(model, x), ...}")
    names = list(runs)
    depth = max(len(r) for r in runs.values())
    fig, axes = plt.subplots(depth, len(names), figsize=(3.6 * len(names), 1.5 * depth + 0.8), squeeze=False,
                             sharex=True)
    lo, hi = {"tanh": (-1, 1), "sigmoid": (0, 1)}.get(activation, (None, None))
    for j, name in enumerate(names):
        for i, (layer, a) in enumerate(runs[name].items()):
            ax = axes[i, j]
            frac = saturated_fraction(a, activation)
            ax.hist(np.ravel(a), bins=bins, range=(lo, hi) if lo is not None else None, color="C0" if j == 0 else "C1")
            ax.text(0.5, 0.95, f"saturated: {frac:.0%}", transform=ax.transAxes, ha="center", va="top", fontsize=8,
                    color="#b71c1c" if frac > 0.2 else "#1b5e20", fontweight="bold")
            ax.set_yticks([])
            ax.set_ylabel(layer, fontsize=8)
            if i == 0:
                ax.set_title(name, fontsize=10)
        axes[-1, j].set_xlabel(f"{activation} output")
    fig.suptitle(f"Activation distributions per layer (saturated = {activation} in its flat tails)", fontsize=10)
    fig.tight_layout()
    return fig
