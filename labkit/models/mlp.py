"""Deep multilayer perceptrons, with or without batch normalization."""
from __future__ import annotations

import keras


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
