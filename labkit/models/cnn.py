"""Small convolutional networks, for filters and feature maps."""
from __future__ import annotations

import keras


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
