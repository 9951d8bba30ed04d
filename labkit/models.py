"""Small Keras 3 models the instruments and notebooks share, each built in a few lines.

- :func:`transformer_model` -- embeddings + sinusoidal positions + MultiHeadAttention blocks.
- :func:`small_cnn` -- two conv layers and a classifier, for filters and feature maps.
- :func:`deep_mlp` -- a deep tanh/sigmoid MLP, with or without BatchNormalization.
- :func:`recurrent_model` -- a SimpleRNN / LSTM / GRU regressor for long-range sequence tasks.

Every builder takes a ``seed`` so that runs repeat.
"""
from __future__ import annotations

import numpy as np

import keras


def positional_encoding(length: int, d_model: int) -> np.ndarray:
    """The sinusoidal positional encoding of "Attention is all you need", shape (length, d_model).

    ``PE[p, 2i] = sin(p / 10000^(2i/d))`` and ``PE[p, 2i+1] = cos(p / 10000^(2i/d))``: each position
    gets a unique pattern, and nearby positions get similar ones.
    """
    pos = np.arange(length)[:, None]
    i = np.arange(d_model)[None, :]
    angle = pos / np.power(10000.0, (2 * (i // 2)) / d_model)
    return np.where(i % 2 == 0, np.sin(angle), np.cos(angle)).astype("float32")


@keras.saving.register_keras_serializable(package="labkit")
class PositionalEmbedding(keras.layers.Layer):
    """Token embedding plus the (fixed) sinusoidal positional encoding."""

    def __init__(self, vocab: int, length: int, d_model: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab, self.length, self.d_model = vocab, length, d_model
        self.embedding = keras.layers.Embedding(vocab, d_model, name="tokens")
        self.positions = positional_encoding(length, d_model)

    def call(self, tokens):
        x = self.embedding(tokens) * np.sqrt(self.d_model).astype("float32")
        return x + keras.ops.convert_to_tensor(self.positions)[None, : keras.ops.shape(tokens)[1]]

    def get_config(self):
        return {**super().get_config(), "vocab": self.vocab, "length": self.length, "d_model": self.d_model}


def transformer_model(vocab: int, length: int, d_model: int = 32, heads: int = 2, layers: int = 2,
                      ff: int = 64, causal: bool = False, outputs: int | None = None, dropout: float = 0.0,
                      seed: int = 0) -> keras.Model:
    """A small Transformer encoder that predicts one token per position.

    Tokens → :class:`PositionalEmbedding` → ``layers`` blocks of [MultiHeadAttention (``heads``
    heads) + residual + LayerNorm, then a ReLU feed-forward net + residual + LayerNorm] → Dense
    softmax over ``outputs`` classes (default ``vocab``). With ``causal=True`` position i may only
    attend to positions ≤ i (a decoder's mask). The attention layers are named ``attention_0``,
    ``attention_1``, ...; :func:`labkit.viz.attention_scores` reads them out. Compiled with Adam and
    sparse categorical cross-entropy.
    """
    if d_model % heads:
        raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    x = PositionalEmbedding(vocab, length, d_model, name="embed")(tokens)
    for i in range(layers):
        mha = keras.layers.MultiHeadAttention(heads, d_model // heads, dropout=dropout, name=f"attention_{i}")
        x = keras.layers.LayerNormalization(name=f"norm_{i}a")(x + mha(x, x, use_causal_mask=causal))
        h = keras.layers.Dense(ff, activation="relu", name=f"ff_{i}a")(x)
        h = keras.layers.Dense(d_model, name=f"ff_{i}b")(h)
        x = keras.layers.LayerNormalization(name=f"norm_{i}b")(x + h)
    probs = keras.layers.Dense(outputs or vocab, activation="softmax", name="predict")(x)
    model = keras.Model(tokens, probs, name="transformer")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def small_cnn(input_shape=(16, 16, 1), classes: int = 3, filters=(8, 16), batch_norm: bool = False,
              seed: int = 0) -> keras.Model:
    """Conv(3×3)+ReLU+MaxPool blocks (``filters`` per block), then a softmax classifier.

    The conv layers are named ``conv_0``, ``conv_1``, ...; with ``batch_norm=True`` each conv is
    followed by a BatchNormalization layer ``bn_i`` before the ReLU. Compiled with Adam.
    """
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input(input_shape, name="image")
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=not batch_norm, name=f"conv_{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation("relu", name=f"relu_{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predict")(x)
    model = keras.Model(inputs, outputs, name="small_cnn" + ("_bn" if batch_norm else ""))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def deep_mlp(input_dim: int, classes: int = 10, depth: int = 5, width: int = 64, activation: str = "tanh",
             batch_norm: bool = False, init_scale: float = 1.0, learning_rate: float = 1e-2,
             seed: int = 0) -> keras.Model:
    """``depth`` Dense layers of ``width`` units and ``activation``, optionally with BatchNormalization.

    With ``batch_norm=True`` each Dense (``dense_i``) is followed by ``bn_i`` and then the
    activation (``act_i``); without, the activation follows the Dense directly. ``init_scale`` is
    the standard deviation of the Normal kernel initialiser: large values (like 1.0) push tanh and
    sigmoid units into saturation, which BN undoes. Compiled with SGD.
    """
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((input_dim,), name="features")
    for i in range(depth):
        x = keras.layers.Dense(width, use_bias=not batch_norm, name=f"dense_{i}",
                               kernel_initializer=keras.initializers.RandomNormal(stddev=init_scale))(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation(activation, name=f"act_{i}")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predict")(x)
    model = keras.Model(inputs, outputs, name="mlp_bn" if batch_norm else "mlp")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def recurrent_model(cell: str = "SimpleRNN", units: int = 32, length: int = 50, features: int = 2,
                    learning_rate: float = 1e-2, seed: int = 0) -> keras.Model:
    """A one-layer recurrent regressor (``cell`` = "SimpleRNN", "LSTM" or "GRU") + Dense(1), compiled with Adam/MSE."""
    cells = {"simplernn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    if cell.lower() not in cells:
        raise ValueError(f"cell must be SimpleRNN, LSTM or GRU, got {cell!r}")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((length, features)), cells[cell.lower()](units, name=cell.lower()),
                              keras.layers.Dense(1, name="out")], name=f"{cell.lower()}_regressor")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model
