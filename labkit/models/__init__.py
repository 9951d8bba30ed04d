"""Small Keras 3 models the instruments and notebooks share, each built in a few lines.

- :func:`transformer_model` -- embeddings + sinusoidal positions + MultiHeadAttention blocks.
- :func:`small_cnn` -- two conv layers and a classifier, for filters and feature maps.
- :func:`deep_mlp` -- a deep tanh/sigmoid MLP, with or without BatchNormalization.
- :func:`recurrent_model` -- a SimpleRNN / LSTM / GRU regressor for long-range sequence tasks.

Every builder takes a ``seed`` so that runs repeat.

The builders live in topic modules (``transformer``, ``cnn``, ``mlp``, ``rnn``, ...); the names
notebooks use are re-exported here.
"""
from labkit.models.cnn import small_cnn
from labkit.models.mlp import deep_mlp
from labkit.models.rnn import recurrent_model
from labkit.models.transformer import PositionalEmbedding, positional_encoding, transformer_model

__all__ = ["small_cnn", "deep_mlp", "recurrent_model", "PositionalEmbedding", "positional_encoding",
           "transformer_model"]
