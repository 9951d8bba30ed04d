"""Convolution, step by step: the arithmetic, pooling, learned filters and feature maps.

Compute (plain numpy, so that every number can be checked by hand)
- :data:`COURSE_IMAGE`, :data:`EDGE_IMAGE`, :data:`VERTICAL_EDGE` -- the course's 6×6 examples and
  its 3×3 vertical-edge filter.
- :func:`convolve2d` -- "valid" 2-D convolution as deep-learning libraries define it (no kernel
  flip, i.e. cross-correlation), with a stride.
- :func:`convolution_steps` -- the same, one window at a time: a table of every step.
- :func:`pool2d` -- max or average pooling.
- :func:`conv_filters`, :func:`feature_maps` -- a trained Keras CNN's kernels and every conv
  layer's output for one input.

Plot
- :func:`plot_convolution_step` -- input with the sliding window, the filter, the output so far.
- :func:`plot_pooling` -- input and pooled output with the pooling windows outlined.
- :func:`plot_filters` -- a conv layer's learned filters as a grid.
- :func:`plot_feature_maps` -- one conv layer's output channels as a grid.

Explore
- :func:`explore_convolution` -- a slider that slides the window.
- :func:`explore_feature_maps` -- a dropdown over conv layers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

import keras

#: The course's 6×6 worked example (its top-left 3×3 window gives 3+1+2 − 1−8−2 = −5).
COURSE_IMAGE = np.array([[3, 0, 1, 2, 7, 4],
                         [1, 5, 8, 9, 3, 1],
                         [2, 7, 2, 5, 1, 3],
                         [0, 1, 3, 1, 7, 8],
                         [4, 2, 1, 6, 2, 8],
                         [2, 4, 5, 2, 3, 9]], dtype="float64")
#: A 6×6 image with a vertical edge in the middle: bright (10) on the left, dark (0) on the right.
EDGE_IMAGE = np.array([[10, 10, 10, 0, 0, 0]] * 6, dtype="float64")
#: The vertical-edge detector: responds where the left is brighter than the right.
VERTICAL_EDGE = np.array([[1, 0, -1],
                          [1, 0, -1],
                          [1, 0, -1]], dtype="float64")


def _check_2d(name, a):
    a = np.asarray(a, dtype="float64")
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {a.shape}")
    return a


def output_size(n: int, f: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution: ⌊(n + 2p − f) / s⌋ + 1 (6×6 with a 3×3 filter → 4×4)."""
    return (n + 2 * padding - f) // stride + 1


def convolve2d(image, kernel, stride: int = 1) -> np.ndarray:
    """'Valid' convolution as in deep learning: out[i, j] = Σ window(i, j) ⊙ kernel (no flip)."""
    image, kernel = _check_2d("image", image), _check_2d("kernel", kernel)
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    if kernel.shape[0] > image.shape[0] or kernel.shape[1] > image.shape[1]:
        raise ValueError(f"kernel {kernel.shape} is larger than image {image.shape}")
    rows, cols = (output_size(image.shape[0], kernel.shape[0], stride), output_size(image.shape[1], kernel.shape[1], stride))
    out = np.empty((rows, cols))
    for i in range(rows):
        for j in range(cols):
            window = image[i * stride:i * stride + kernel.shape[0], j * stride:j * stride + kernel.shape[1]]
            out[i, j] = np.sum(window * kernel)
    return out


def convolution_steps(image, kernel, stride: int = 1) -> pd.DataFrame:
    """Every step of :func:`convolve2d` in the order the window slides (row by row).

    Columns: ``step``, ``row``, ``col`` (output position), ``top``, ``left`` (window corner in the
    image), ``products`` (the element-wise products, written out) and ``value`` (their sum).
    """
    image, kernel = _check_2d("image", image), _check_2d("kernel", kernel)
    out = convolve2d(image, kernel, stride)
    rows = []
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            top, left = i * stride, j * stride
            window = image[top:top + kernel.shape[0], left:left + kernel.shape[1]]
            terms = " + ".join(f"{a:g}·{b:g}" for a, b in zip(window.ravel(), kernel.ravel()) if b != 0)
            rows.append({"step": len(rows), "row": i, "col": j, "top": top, "left": left,
                         "products": terms, "value": out[i, j]})
    return pd.DataFrame(rows)


def pool2d(image, size: int = 2, stride: int | None = None, mode: str = "max") -> np.ndarray:
    """Max or average pooling of a 2-D array over ``size``×``size`` windows (stride defaults to ``size``)."""
    image = _check_2d("image", image)
    stride = stride or size
    reduce = {"max": np.max, "average": np.mean, "avg": np.mean, "mean": np.mean}.get(mode)
    if reduce is None:
        raise ValueError(f"mode must be 'max' or 'average', got {mode!r}")
    rows, cols = output_size(image.shape[0], size, stride), output_size(image.shape[1], size, stride)
    if rows < 1 or cols < 1:
        raise ValueError(f"pooling window {size} is larger than image {image.shape}")
    return np.array([[reduce(image[i * stride:i * stride + size, j * stride:j * stride + size])
                      for j in range(cols)] for i in range(rows)])


def conv_layers(model: keras.Model) -> list:
    """The model's Conv2D layers, input side first; a clear error if there are none."""
    found = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if not found:
        raise ValueError(f"model {model.name!r} has no Conv2D layer")
    return found


def _conv_layer(model, layer):
    layers = conv_layers(model)
    if layer is None:
        return layers[0]
    if isinstance(layer, int):
        return layers[layer]
    for candidate in layers:
        if candidate.name == layer:
            return candidate
    raise ValueError(f"no Conv2D layer named {layer!r}; the conv layers are {[l.name for l in layers]}")


def conv_filters(model: keras.Model, layer=None) -> np.ndarray:
    """The kernels of a Conv2D layer (name or index; default the first): shape (kh, kw, in, out)."""
    return keras.ops.convert_to_numpy(_conv_layer(model, layer).kernel)


def feature_maps(model: keras.Model, x) -> dict[str, np.ndarray]:
    """The output of every Conv2D layer for input ``x`` (one image or a batch): name → (batch, h, w, channels)."""
    x = np.asarray(x, dtype="float32")
    if x.ndim == len(model.input.shape) - 1:
        x = x[None]
    layers = conv_layers(model)
    probe = keras.Model(model.input, [layer.output for layer in layers])
    outs = probe(x, training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return {layer.name: keras.ops.convert_to_numpy(o) for layer, o in zip(layers, outs)}


# ------------------------------------------------------------------------------------- plots

def _matrix(ax, a, title, cmap="gray", vmin=None, vmax=None, annotate=True, fmt="{:g}"):
    im = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax)
    if annotate:
        mid = (np.nanmax(a) + np.nanmin(a)) / 2 if np.isfinite(a).any() else 0
        for (i, j), v in np.ndenumerate(a):
            if np.isfinite(v):
                if cmap == "gray":
                    color = "white" if v < mid else "black"
                else:  # diverging map: dark at both ends
                    color = "white" if abs(v) > 0.6 * max(abs(vmin or 0), abs(vmax or 0), 1e-12) else "black"
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return im


def plot_convolution_step(image=None, kernel=None, step: int = 0, stride: int = 1):
    """Three panels: the input with the current 3×3 window outlined, the filter, and the output so far.

    Defaults to the course's example (:data:`COURSE_IMAGE` ∗ :data:`VERTICAL_EDGE`). The output
    cells not yet computed are blank; the current one is outlined, and the title shows its sum.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    image = COURSE_IMAGE if image is None else _check_2d("image", image)
    kernel = VERTICAL_EDGE if kernel is None else _check_2d("kernel", kernel)
    steps = convolution_steps(image, kernel, stride)
    if not 0 <= step < len(steps):
        raise ValueError(f"step must be in 0..{len(steps) - 1}, got {step}")
    s = steps.iloc[step]
    out = convolve2d(image, kernel, stride)
    partial = np.full(out.shape, np.nan)
    partial.flat[:step + 1] = out.flat[:step + 1]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), gridspec_kw={"width_ratios": [image.shape[1], kernel.shape[1] + 1, out.shape[1]]})
    _matrix(axes[0], image, f"input {image.shape[0]}×{image.shape[1]}")
    axes[0].add_patch(Rectangle((s.left - 0.5, s.top - 0.5), kernel.shape[1], kernel.shape[0], fill=False, ec="red", lw=2.5))
    _matrix(axes[1], kernel, f"filter {kernel.shape[0]}×{kernel.shape[1]}", cmap="coolwarm", vmin=-1, vmax=1)
    lim = max(1.0, np.abs(out).max())
    _matrix(axes[2], partial, f"output {out.shape[0]}×{out.shape[1]}", cmap="coolwarm", vmin=-lim, vmax=lim)
    axes[2].add_patch(Rectangle((s.col - 0.5, s.row - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
    fig.suptitle(f"step {step + 1} of {len(steps)}: window at row {s.top}, column {s.left} → "
                 f"sum of products = {s.value:g}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_convolution_steps(image=None, kernel=None, stride: int = 1, steps=None):
    """Small multiples: the input with the window at each of ``steps`` (default: every step) and its value."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    image = COURSE_IMAGE if image is None else _check_2d("image", image)
    kernel = VERTICAL_EDGE if kernel is None else _check_2d("kernel", kernel)
    table = convolution_steps(image, kernel, stride)
    chosen = table if steps is None else table.iloc[list(steps)]
    cols = min(4, len(chosen))
    rows = int(np.ceil(len(chosen) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (_, s) in zip(axes.ravel(), chosen.iterrows()):
        ax.axis("on")
        ax.imshow(image, cmap="gray", alpha=0.45)
        ax.add_patch(Rectangle((s.left - 0.5, s.top - 0.5), kernel.shape[1], kernel.shape[0], fill=False, ec="red", lw=2))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"out[{s.row},{s.col}] = {s.value:g}", fontsize=9)
    fig.suptitle("The filter's window slides over the input, one output value per position", fontsize=10)
    fig.tight_layout()
    return fig


def plot_pooling(image=None, size: int = 2, stride: int | None = None):
    """The input with the pooling windows outlined, and its max-pooled and average-pooled outputs."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    image = COURSE_IMAGE if image is None else _check_2d("image", image)
    stride = stride or size
    mx, avg = pool2d(image, size, stride, "max"), pool2d(image, size, stride, "average")
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), gridspec_kw={"width_ratios": [image.shape[1], mx.shape[1], mx.shape[1]]})
    _matrix(axes[0], image, f"input {image.shape[0]}×{image.shape[1]}")
    colors = plt.get_cmap("tab10")
    for k, (i, j) in enumerate(np.ndindex(mx.shape)):
        axes[0].add_patch(Rectangle((j * stride - 0.45, i * stride - 0.45), size - 0.1, size - 0.1, fill=False,
                                    ec=colors(k % 10), lw=2))
    _matrix(axes[1], mx, f"max pooling {size}×{size}, stride {stride}")
    _matrix(axes[2], avg, f"average pooling {size}×{size}, stride {stride}", fmt="{:.2f}")
    fig.suptitle("Pooling keeps one number per window: the largest, or the mean", fontsize=10)
    fig.tight_layout()
    return fig


def _grid(n):
    cols = int(np.ceil(np.sqrt(n)))
    return int(np.ceil(n / cols)), cols


def plot_filters(kernels, in_channel: int = 0, title: str | None = None):
    """The filters of a conv layer, one small image each, on a shared colour scale centred at 0.

    ``kernels`` is (kh, kw, in, out) as :func:`conv_filters` returns (or a Keras model: its first
    conv layer). Red = positive weight, blue = negative: a red column next to a blue one is a
    vertical-edge detector.
    """
    import matplotlib.pyplot as plt

    if isinstance(kernels, keras.Model):
        kernels = conv_filters(kernels)
    k = np.asarray(kernels)
    if k.ndim != 4:
        raise ValueError(f"kernels must have shape (kh, kw, in_channels, filters), got {k.shape}")
    n = k.shape[-1]
    rows, cols = _grid(n)
    lim = np.abs(k[:, :, in_channel]).max() or 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols + 1.4, 1.5 * rows + 0.6), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for f in range(n):
        im = axes.ravel()[f].imshow(k[:, :, in_channel, f], cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes.ravel()[f].set_title(f"filter {f}", fontsize=8)
    fig.suptitle(title or f"Learned {k.shape[0]}×{k.shape[1]} filters (input channel {in_channel})", fontsize=10)
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.04, label="weight")
    return fig


def plot_feature_maps(maps: np.ndarray, layer_name: str = "", image=None, max_channels: int = 16):
    """One conv layer's output channels for one input, as a grid (with the input itself first).

    ``maps`` is (h, w, channels) or (1, h, w, channels), e.g. ``feature_maps(model, x)["conv_0"]``.
    Bright = the filter responds strongly here.
    """
    import matplotlib.pyplot as plt

    m = np.asarray(maps)
    if m.ndim == 4:
        m = m[0]
    if m.ndim != 3:
        raise ValueError(f"maps must have shape (h, w, channels), got {np.asarray(maps).shape}")
    n = min(m.shape[-1], max_channels) + (image is not None)
    rows, cols = _grid(n)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols + 1.4, 1.7 * rows + 0.6), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    cells = list(axes.ravel())
    if image is not None:
        ax = cells.pop(0)
        ax.imshow(np.squeeze(image), cmap="gray")
        ax.set_title("input", fontsize=8, fontweight="bold")
    vmax = m.max() if m.max() > 0 else 1.0
    for c in range(n - (image is not None)):
        im = cells[c].imshow(m[:, :, c], cmap="viridis", vmin=min(0.0, m.min()), vmax=vmax)
        cells[c].set_title(f"channel {c}", fontsize=8)
    fig.suptitle(f"Feature maps of {layer_name or 'a conv layer'} ({m.shape[0]}×{m.shape[1]}, "
                 f"{min(m.shape[-1], max_channels)} of {m.shape[-1]} channels)", fontsize=10)
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.04, label="activation (before ReLU)")
    return fig


def explore_convolution(image=None, kernel=None, stride: int = 1):
    """A slider over the steps of the convolution; each move redraws :func:`plot_convolution_step`."""
    from labkit.viz._widgets import figure_view

    image = COURSE_IMAGE if image is None else image
    kernel = VERTICAL_EDGE if kernel is None else kernel
    n = len(convolution_steps(image, kernel, stride))
    return figure_view(lambda step: plot_convolution_step(image, kernel, step, stride), step=("slider", range(n)))


def explore_feature_maps(model: keras.Model, images):
    """Dropdown over conv layers and slider over ``images``; redraws :func:`plot_feature_maps`."""
    from labkit.viz._widgets import figure_view

    images = np.asarray(images, dtype="float32")
    maps = [feature_maps(model, img) for img in images]
    names = list(maps[0])
    return figure_view(lambda layer, image: plot_feature_maps(maps[image][layer], layer, images[image]),
                       layer=("dropdown", names), image=("slider", range(len(images))))
