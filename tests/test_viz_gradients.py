"""Gradient flow: recorded gradients equal a GradientTape on the same batch; BPTT vanishes for SimpleRNN only."""
from figures import save  # first: selects the headless Agg backend
import numpy as np
import pytest

import keras
from labkit import data, models, viz

#: Thresholds chosen from measurements (adding problem, length 50, 800 steps of batch 32, Adam 1e-2):
#: first/last-10% gradient ratio measured SimpleRNN ~1e-5, LSTM ~1.0, GRU ~1.0 (see the report).
SIMPLE_RNN_MAX_RATIO = 1e-3
GATED_MIN_RATIO = 1e-1
GATED_OVER_SIMPLE = 1e3


def test_recorded_gradients_equal_gradient_tape():
    import tensorflow as tf

    x, y = data.digits()
    x, y = x.reshape(len(x), -1)[:64], y[:64]
    model = models.deep_mlp(64, depth=3, width=16, init_scale=0.3, learning_rate=0.1)
    before = [w.numpy().copy() for w in model.trainable_weights]
    # the gradient of the first step, computed independently before training
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y[:32], model(x[:32], training=True))
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, model.trainable_weights)
    recorder = viz.GradientFlowRecorder(every=1, weights="all")
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
    table = recorder.table
    first = table[table["step"] == 1].reset_index(drop=True)
    assert len(first) == len(model.trainable_weights)
    for row, g, w0 in zip(first.itertuples(), grads, before):
        g = np.abs(g.numpy())
        assert row.mean_abs_grad == pytest.approx(g.mean(), rel=1e-4)
        assert row.max_abs_grad == pytest.approx(g.max(), rel=1e-4)
        assert row.weight_norm == pytest.approx(np.linalg.norm(w0), rel=1e-5)
        # SGD: Δw = −lr·g, so ‖Δw‖/‖w‖ = lr·‖g‖/‖w‖
        if np.linalg.norm(w0) > 0:
            expected = 0.1 * np.linalg.norm(g) / np.linalg.norm(w0)
            assert row.update_ratio == pytest.approx(expected, rel=1e-3)
    assert table["step"].max() == 2
    assert "apply_gradients" not in model.optimizer.__dict__  # the wrap is removed after fit
    model.fit(x, y, verbose=0)  # and training without the recorder still works


def test_kernels_only_every_n_and_plots():
    x, y = data.digits()
    x = x.reshape(len(x), -1)[:640]
    model = models.deep_mlp(64, depth=6, width=32, activation="sigmoid", init_scale=0.3, learning_rate=0.5)
    recorder = viz.GradientFlowRecorder(every=4)
    model.fit(x, y[:640], batch_size=32, epochs=2, verbose=0, callbacks=[recorder])
    t = recorder.table
    assert sorted(t["step"].unique()) == list(range(1, 41, 4))
    assert set(t["weight"]) == {"kernel"} and t["layer"].nunique() == 7
    # a deep sigmoid net: the gradient shrinks toward the input (the classic vanishing picture)
    last = t[t["step"] == t["step"].max()].set_index("layer")["mean_abs_grad"]
    assert last["dense_0"] < last["dense_5"]
    save(viz.plot_gradient_flow(t), "gradflow_mean")
    save(viz.plot_gradient_flow(t, "update_ratio"), "gradflow_update_ratio")
    save(viz.plot_gradient_profile(t), "gradflow_profile")
    assert viz.explore_gradient_flow(t) is not None


def test_input_gradients_match_finite_differences():
    x, y = data.adding_problem(n=4, length=6, seed=3)
    model = models.recurrent_model("GRU", units=4, length=6)
    profile = viz.input_gradients_over_time(model, x, y)
    assert profile.shape == (6,)
    # directional finite difference at timestep 2, per example (loss = batch mean)
    loss = lambda xx: float(np.mean((model(xx).numpy() - y) ** 2))  # noqa: E731
    eps = 1e-2
    fd = np.zeros((4, 2))
    for b in range(4):
        for f in range(2):
            xp, xm = x.copy(), x.copy()
            xp[b, 2, f] += eps
            xm[b, 2, f] -= eps
            fd[b, f] = (loss(xp) - loss(xm)) / (2 * eps)
    assert profile[2] == pytest.approx(np.linalg.norm(fd, axis=1).mean(), rel=2e-2)


@pytest.mark.slow
def test_simple_rnn_gradient_vanishes_while_lstm_and_gru_keep_it():
    length, steps, batch = 50, 800, 32
    x, y = data.adding_problem(n=steps * batch, length=length, seed=0)
    xp, yp = data.adding_problem(n=256, length=length, seed=1)
    profiles, ratios = {}, {}
    for cell in ("SimpleRNN", "LSTM", "GRU"):
        model = models.recurrent_model(cell, units=32, length=length, seed=0)
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        profiles[cell] = viz.input_gradients_over_time(model, xp, yp)
        ratios[cell] = viz.early_late_ratio(profiles[cell])
    save(viz.plot_gradients_over_time(profiles), "gradflow_bptt")
    print("first/last-10% gradient ratios:", {k: f"{v:.2e}" for k, v in ratios.items()})
    assert ratios["SimpleRNN"] < SIMPLE_RNN_MAX_RATIO, ratios
    for cell in ("LSTM", "GRU"):
        assert ratios[cell] > GATED_MIN_RATIO, ratios
        assert ratios[cell] > GATED_OVER_SIMPLE * ratios["SimpleRNN"], ratios


def test_clear_errors():
    with pytest.raises(ValueError, match="every"):
        viz.GradientFlowRecorder(every=0)
    with pytest.raises(ValueError, match="cell"):
        models.recurrent_model("Transformer")
    model = models.recurrent_model("LSTM", units=2, length=5)
    with pytest.raises(ValueError, match="batch, timesteps"):
        viz.input_gradients_over_time(model, np.zeros((5, 2)), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="empty"):
        viz.plot_gradient_flow(viz.GradientFlowRecorder().table)


def test_recorders_keep_keras_async_dispatch():
    """No per-batch hook: Keras would otherwise wait for every step's logs (measured +52% epoch time)."""
    from keras.src import backend
    from keras.src.callbacks.callback_list import CallbackList

    for recorder in (viz.GradientFlowRecorder(), viz.BatchNormRecorder()):
        assert "on_train_batch_end" not in vars(type(recorder)) and "on_batch_end" not in vars(type(recorder))
        assert CallbackList([recorder])._async_train == bool(backend.IS_THREAD_SAFE)
