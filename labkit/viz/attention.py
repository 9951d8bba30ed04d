"""Attention maps: which positions each head of each layer looks at.

Extract
- :func:`attention_scores` -- the softmax(QKᵀ/√d_k) weights of every MultiHeadAttention layer of a
  model, for a given input: an array (layers, batch, heads, queries, keys).
- :func:`attention_summary` -- per layer and head: mean attention distance and entropy (a table).

Plot
- :func:`plot_attention` -- one heatmap, token labels on both axes; masked positions are greyed.
- :func:`plot_attention_grid` -- every layer × head for one sequence.
- :func:`plot_head_summary` -- the per-head summary as a layers × heads heatmap.

Explore
- :func:`explore_attention` -- dropdowns for layer and head, and a slider for the example.

The model is the one of :func:`labkit.models.transformer_model`, or any functional Keras model that
calls ``keras.layers.MultiHeadAttention``: each attention layer is called again on the inputs it
received in the model (with the same causal mask), with ``return_attention_scores=True``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

import keras


def attention_layers(model: keras.Model) -> list:
    """The model's MultiHeadAttention layers, in the order they are called."""
    found = [layer for layer in model.layers if isinstance(layer, keras.layers.MultiHeadAttention)]
    if not found:
        raise ValueError(f"model {model.name!r} has no keras.layers.MultiHeadAttention layer to read attention from")
    return found


def attention_scores(model: keras.Model, x) -> np.ndarray:
    """Attention weights of every MultiHeadAttention layer for input ``x``.

    Returns an array of shape (layers, batch, heads, queries, keys); row ``[l, b, h, i]`` is the
    probability distribution over key positions that query position i of head h uses (it sums to
    1; masked positions are exactly 0).
    """
    layers = attention_layers(model)
    nodes = []
    for layer in layers:
        if not getattr(layer, "_inbound_nodes", None):
            raise ValueError(f"attention layer {layer.name!r} was never called in a functional model")
        nodes.append(layer._inbound_nodes[0])
    wanted = [t for node in nodes for t in node.arguments.keras_tensors]
    probe = keras.Model(model.input, wanted)
    values = probe(x, training=False)
    values = values if isinstance(values, (list, tuple)) else [values]
    out, k = [], 0
    for layer, node in zip(layers, nodes):
        n = len(node.arguments.keras_tensors)
        filled = {id(t): v for t, v in zip(node.arguments.keras_tensors, values[k:k + n])}
        k += n
        args, kwargs = node.arguments.fill_in(filled)
        kwargs = {key: val for key, val in kwargs.items() if key != "training"}
        _, scores = layer(*args, **kwargs, return_attention_scores=True, training=False)
        out.append(keras.ops.convert_to_numpy(scores))
    return np.stack(out)


def attention_summary(scores: np.ndarray) -> pd.DataFrame:
    """Per layer and head, averaged over the batch and query positions:

    - ``mean_distance``: Σ_j a_ij·|i − j|, how far (in positions) a head looks on average;
    - ``entropy``: −Σ_j a_ij·log a_ij in nats; low = sharp, focused head, high = spread-out head.

    ``scores`` is what :func:`attention_scores` returns. One row per (layer, head).
    """
    scores = np.asarray(scores, dtype="float64")
    if scores.ndim == 4:
        scores = scores[:, None]
    if scores.ndim != 5:
        raise ValueError(f"scores must have shape (layers, batch, heads, queries, keys), got {scores.shape}")
    q, k = scores.shape[-2:]
    distance = np.abs(np.arange(q)[:, None] - np.arange(k)[None, :])
    mean_distance = (scores * distance).sum(-1).mean(axis=(1, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(scores > 0, scores * np.log(scores), 0.0)
    entropy = (-plogp.sum(-1)).mean(axis=(1, 3))
    rows = [{"layer": l, "head": h, "mean_distance": mean_distance[l, h], "entropy": entropy[l, h]}
            for l in range(scores.shape[0]) for h in range(scores.shape[2])]
    return pd.DataFrame(rows)


def _labels(tokens, n):
    if tokens is None:
        return [str(i) for i in range(n)]
    tokens = [str(t) for t in tokens]
    if len(tokens) != n:
        raise ValueError(f"got {len(tokens)} token labels for {n} positions")
    return tokens


def plot_attention(weights, query_tokens=None, key_tokens=None, ax=None, title: str = "Attention weights",
                   colorbar: bool = True):
    """One attention map: rows are query positions (who attends), columns key positions (attended to).

    ``weights`` is a (queries, keys) array (rows sum to 1). Masked positions (weight exactly 0, as a
    causal mask gives) are drawn in light grey with a ×, so that a student sees they carry no weight.
    """
    import matplotlib.pyplot as plt

    w = np.asarray(weights, dtype="float64")
    if w.ndim != 2:
        raise ValueError(f"weights must be a 2-D (queries, keys) map, got shape {w.shape}")
    qlab, klab = _labels(query_tokens, w.shape[0]), _labels(key_tokens if key_tokens is not None else query_tokens, w.shape[1])
    own = ax is None
    fig, ax = plt.subplots(figsize=(1.6 + 0.42 * w.shape[1], 1.2 + 0.42 * w.shape[0])) if own else (ax.figure, ax)
    masked = np.ma.masked_where(w == 0.0, w)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#e6e6e6")
    im = ax.imshow(masked, cmap=cmap, vmin=0.0, vmax=1.0, aspect="equal")
    for i, j in zip(*np.nonzero(w == 0.0)):
        ax.text(j, i, "×", ha="center", va="center", color="#999999", fontsize=7)
    small = w.shape[1] <= 20
    ax.set_xticks(range(w.shape[1]), klab if small else None, rotation=90, fontsize=7)
    ax.set_yticks(range(w.shape[0]), qlab if small else None, fontsize=7)
    ax.set_xlabel("key: position attended to")
    ax.set_ylabel("query: position attending")
    ax.set_title(title, fontsize=9)
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight (row sums to 1)")
    if (w == 0.0).any():
        ax.annotate("grey × = masked (weight 0)", (0.0, -0.02), xycoords="axes fraction", va="top",
                    fontsize=7, color="#666666", xytext=(0, -38 if small else -28), textcoords="offset points")
    if own:
        fig.tight_layout()
    return fig


def plot_attention_grid(scores, tokens=None, example: int = 0):
    """Every layer (rows) × head (columns) attention map for one example of the batch.

    ``scores`` is what :func:`attention_scores` returns; ``tokens`` label the positions.
    """
    import matplotlib.pyplot as plt

    scores = np.asarray(scores)
    if scores.ndim != 5:
        raise ValueError(f"scores must have shape (layers, batch, heads, queries, keys), got {scores.shape}")
    n_layers, _, n_heads, q, k = scores.shape
    size = 1.2 + 0.28 * max(q, k)
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(size * n_heads + 1.2, size * n_layers + 0.4), squeeze=False,
                             layout="constrained")
    for l in range(n_layers):
        for h in range(n_heads):
            plot_attention(scores[l, example, h], tokens, tokens, ax=axes[l, h], title=f"layer {l}, head {h}",
                           colorbar=False)
            if h:
                axes[l, h].set_ylabel("")
            if l < n_layers - 1:
                axes[l, h].set_xlabel("")
    fig.suptitle(f"Attention of every layer and head, example {example}\n"
                 "(rows: query position attending, columns: key position attended to)", fontsize=10)
    fig.colorbar(axes[0, 0].images[0], ax=axes.ravel().tolist(), fraction=0.03, pad=0.02,
                 label="attention weight (row sums to 1)")
    return fig


def plot_head_summary(summary: pd.DataFrame, metric: str = "mean_distance", ax=None):
    """A layers × heads heatmap of one column of :func:`attention_summary`, values written in the cells."""
    import matplotlib.pyplot as plt

    names = {"mean_distance": "mean attention distance (positions)", "entropy": "attention entropy (nats)"}
    if metric not in names:
        raise ValueError(f"metric must be one of {sorted(names)}, got {metric!r}")
    grid = summary.pivot(index="layer", columns="head", values=metric)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(1.8 + 1.1 * grid.shape[1], 1.4 + 0.8 * grid.shape[0]))
    im = ax.imshow(grid.to_numpy(), cmap="magma", aspect="auto")
    for (i, j), v in np.ndenumerate(grid.to_numpy()):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < grid.to_numpy().mean() else "black", fontsize=9)
    ax.set_xticks(range(grid.shape[1]), [f"head {h}" for h in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"layer {l}" for l in grid.index])
    ax.set_title(f"Per head: {names[metric]}", fontsize=10)
    fig.colorbar(im, ax=ax, label=names[metric])
    fig.tight_layout()
    return fig


def explore_attention(scores, tokens_per_example=None):
    """Dropdowns for layer and head and a slider for the example; redraws :func:`plot_attention`.

    ``tokens_per_example``: a list (one per example) of token labels, or None for position numbers.
    """
    from labkit.viz._widgets import figure_view

    scores = np.asarray(scores)
    n_layers, batch, n_heads = scores.shape[:3]

    def draw(layer, head, example):
        tokens = None if tokens_per_example is None else tokens_per_example[example]
        return plot_attention(scores[layer, example, head], tokens, tokens,
                              title=f"example {example}: layer {layer}, head {head}")

    return figure_view(draw, layer=("dropdown", range(n_layers)), head=("dropdown", range(n_heads)),
                       example=("slider", range(batch)))
