"""labkit.distributed with real Horovod (Gloo) processes, started by labkit.launch."""
import numpy as np
import pytest

from labkit import launch
from labkit.threads import ThreadBudget, thread_budget


def test_thread_budget_splits_cores_fairly():
    assert thread_budget(1, cores=2) == ThreadBudget(2, 1)
    assert thread_budget(2, cores=2) == ThreadBudget(1, 1)
    assert thread_budget(4, cores=2) == ThreadBudget(1, 1)  # never below one thread
    assert thread_budget(2, cores=16).env() == {"OMP_NUM_THREADS": "8", "TF_NUM_INTRAOP_THREADS": "8",
                                                 "TF_NUM_INTEROP_THREADS": "1"}
    with pytest.raises(ValueError):
        thread_budget(0)


def _train_on_every_rank(steps):
    """Runs on each worker: seeds differ per rank, so without broadcast the models would differ."""
    import horovod.tensorflow as hvd
    import keras
    import tensorflow as tf

    from labkit import distributed

    rank = hvd.rank()
    rng = np.random.default_rng(100 + rank)  # each rank sees its own shard of data
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x @ np.arange(8, dtype="float32") > 0).astype("float32")

    def model_for(seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                 keras.layers.Dense(1, activation="sigmoid")])

    # 1. custom training loop
    model, opt = model_for(rank), keras.optimizers.Adam(0.01)
    distributed.broadcast_state(model, opt)
    loop_initial = [w.copy() for w in model.get_weights()]
    step = distributed.train_step_fn(model, opt, keras.losses.BinaryCrossentropy())
    for i in range(steps):
        step(tf.constant(x[i * 16:(i + 1) * 16]), tf.constant(y[i * 16:(i + 1) * 16]))

    # 2. model.fit
    fit_model = model_for(1000 + rank)
    fit_model.compile(optimizer=distributed.DistributedOptimizer(keras.optimizers.SGD(0.1)),
                      loss="binary_crossentropy", metrics=["accuracy"])
    captured = {}

    class Capture(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0 and "initial" not in captured:
                captured["initial"] = [w.copy() for w in self.model.get_weights()]

    history = fit_model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                            callbacks=distributed.callbacks() + [Capture()])
    return {"rank": rank, "size": hvd.size(), "threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "loop_initial": loop_initial, "loop_final": model.get_weights(),
            "fit_initial": captured["initial"], "fit_final": fit_model.get_weights(),
            "fit_loss": history.history["loss"][-1],
            "optimizer_vars": [np.array(v) for v in fit_model.optimizer.variables]}


@pytest.mark.slow
def test_two_horovod_workers_end_with_identical_weights():
    r0, r1 = launch.run(_train_on_every_rank, 4, np=2, timeout=240, echo=False)
    assert (r0["size"], r1["size"]) == (2, 2)
    assert r0["threads"] == r1["threads"] == 1  # 2 cores / 2 workers
    for kind in ("loop", "fit"):
        # the broadcast gave both ranks rank 0's initial weights ...
        for a, b in zip(r0[f"{kind}_initial"], r1[f"{kind}_initial"]):
            np.testing.assert_array_equal(a, b)
        # ... averaged gradients kept them identical through training ...
        for a, b in zip(r0[f"{kind}_final"], r1[f"{kind}_final"]):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
        # ... and training really moved them.
        moved = max(np.abs(f - i).max() for f, i in zip(r0[f"{kind}_final"], r0[f"{kind}_initial"]))
        assert moved > 1e-3, f"{kind}: weights did not change"
    # metrics were averaged across ranks, so both report the same loss
    assert r0["fit_loss"] == pytest.approx(r1["fit_loss"], abs=1e-7)
    for a, b in zip(r0["optimizer_vars"], r1["optimizer_vars"]):
        np.testing.assert_allclose(a, b, atol=1e-6)


def _one_worker_against_plain_keras():
    """Runs on a single Horovod worker: labkit's paths against plain Keras on the same seed/data."""
    import keras
    import tensorflow as tf

    from labkit import distributed

    rng = np.random.default_rng(7)
    x = rng.normal(size=(96, 6)).astype("float32")
    y = rng.integers(0, 3, size=96)

    def fresh(optimizer):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(12, activation="tanh"),
                                  keras.layers.Dense(3)])
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    plain = fresh(keras.optimizers.Adam(0.02))
    plain_hist = plain.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    ours = fresh(distributed.DistributedOptimizer(keras.optimizers.Adam(0.02)))
    ours_hist = ours.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0, callbacks=distributed.callbacks())

    # custom loop: plain tf.GradientTape against labkit's train step
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    a, b = fresh("sgd"), fresh("sgd")
    opt_a, opt_b = keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05)
    step_b = distributed.train_step_fn(b, opt_b, loss_fn)
    for i in range(3):
        xb, yb = tf.constant(x[i * 32:(i + 1) * 32]), tf.constant(y[i * 32:(i + 1) * 32])
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, a(xb, training=True))
        opt_a.apply_gradients(zip(tape.gradient(loss, a.trainable_variables), a.trainable_variables))
        step_b(xb, yb)
    return {"fit": (plain.get_weights(), ours.get_weights()),
            "loss": (plain_hist.history["loss"], ours_hist.history["loss"]),
            "loop": (a.get_weights(), b.get_weights()),
            "optimizer_class": type(ours.optimizer).__name__}


@pytest.mark.slow
def test_one_worker_matches_plain_keras():
    (r,) = launch.run(_one_worker_against_plain_keras, np=1, timeout=180, echo=False)
    assert r["optimizer_class"] == "DistributedAdam"
    for kind in ("fit", "loop"):
        plain, ours = r[kind]
        for p, o in zip(plain, ours):
            np.testing.assert_allclose(o, p, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(r["loss"][1], r["loss"][0], rtol=1e-6)
