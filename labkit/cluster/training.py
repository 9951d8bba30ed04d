"""A small training job for any launcher: each rank trains on its shard of scikit-learn's digits.

    launch.run(train_digits, 20, np=2, hosts="h1:1,h2:1")                # horovodrun over ssh
    horovod_spark.run(train_digits, 20, np=2, master="spark://h1:7077")  # Spark schedules the ranks

It is the function the cluster notebook and tests hand to both launchers: a Keras MLP, gradients
averaged with :mod:`labkit.distributed`, state broadcast from rank 0 after the first step,
progress reported to the launcher. It returns where it ran and a digest of the final weights, so
that a caller can check that every rank ended with the same model.
"""
from __future__ import annotations

import hashlib


def train_digits(steps: int = 20, batch: int = 32, learning_rate: float = 0.05, seed: int = 0) -> dict:
    """Train a 64-32-10 MLP for ``steps`` steps on this rank's shard; return a summary of the run."""
    import socket

    import horovod.tensorflow as hvd
    import keras
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_digits

    from labkit import distributed, launch

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")[hvd.rank()::hvd.size()]
    y = y.astype("int32")[hvd.rank()::hvd.size()]
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    optimizer = keras.optimizers.SGD(learning_rate * hvd.size())  # linear scaling of the rate
    step = distributed.train_step_fn(model, optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(seed + hvd.rank())
    losses = []
    for i in range(steps):
        pick = rng.integers(0, len(x), size=batch)
        losses.append(float(step(tf.constant(x[pick]), tf.constant(y[pick]))))
        if i == 0:
            distributed.broadcast_state(model, optimizer)  # rank 0's state, once the optimizer exists
        launch.progress(i + 1, steps, desc="digits", loss=losses[-1])
    mean_loss = distributed.average_metrics({"loss": float(np.mean(losses[-5:]))})["loss"]
    digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()[:16]
    return {"rank": hvd.rank(), "size": hvd.size(), "host": socket.gethostname(), "loss": mean_loss,
            "first_loss": losses[0], "weights": digest,
            "threads": tf.config.threading.get_intra_op_parallelism_threads()}
