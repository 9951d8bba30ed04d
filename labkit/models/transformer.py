"""A small Transformer encoder with sinusoidal positions, whose attention the instruments read."""
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
