"""Batch-norm recorder: recorded batch statistics equal a direct computation on the same batch."""
from figures import save  # first: selects the headless Agg backend
import numpy as np
import pytest

import keras
from labkit import data, models, viz


@pytest.fixture(scope="module")
def digits():
    x, y = data.digits()
    return x.reshape(len(x), -1)[:320], y[:320]


def test_batch_statistics_equal_direct_computation(digits):
    x, y = digits
    # learning rate 0: the Dense weights stay put, so the BN inputs of batch k can be recomputed after fit
    model = models.deep_mlp(64, depth=3, width=16, batch_norm=True, init_scale=0.3, learning_rate=0.0)
    recorder = viz.BatchNormRecorder(every=1)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
    table = recorder.table
    assert sorted(table["layer"].unique()) == ["bn_0", "bn_1", "bn_2"]
    assert table["step"].max() == 10
    for name in ("bn_0", "bn_2"):
        layer = model.get_layer(name)
        inputs = keras.Model(model.input, layer.input)
        momentum = layer.momentum
        for step in (1, 4, 10):
            batch = x[(step - 1) * 32: step * 32]
            z = inputs(batch, training=True).numpy().astype("float64")
            rec = table[(table["layer"] == name) & (table["step"] == step)].sort_values("channel")
            np.testing.assert_allclose(rec["batch_mean"], z.mean(axis=0), atol=1e-5)
            np.testing.assert_allclose(rec["batch_var"], z.var(axis=0), rtol=1e-4, atol=1e-5)
        # moving averages follow m ← momentum·m + (1 − momentum)·batch, step by step
        per = table[table["layer"] == name].pivot(index="step", columns="channel")
        mm, bm = per["moving_mean"].to_numpy(), per["batch_mean"].to_numpy()
        np.testing.assert_allclose(mm[1:], momentum * mm[:-1] + (1 - momentum) * bm[1:], atol=1e-5)


def test_first_layer_bn_sees_the_raw_batch_and_conv_channels(digits):
    x, y = digits
    imgs = x.reshape(-1, 8, 8, 1)
    model = models.small_cnn(input_shape=(8, 8, 1), classes=10, filters=(4,), batch_norm=True)
    inp = keras.Input((8, 8, 1))
    bn_first = keras.Sequential([inp, keras.layers.BatchNormalization(name="bn_in"), model])
    bn_first.compile("adam", "sparse_categorical_crossentropy")
    recorder = viz.BatchNormRecorder(every=5)
    bn_first.fit(imgs, y, batch_size=32, epochs=2, shuffle=False, verbose=0, callbacks=[recorder])
    t = recorder.table
    assert set(t["layer"]) == {"bn_in", "bn_0"}  # the nested model's BN is found too
    assert sorted(t["step"].unique()) == [1, 6, 11, 16]
    step7 = t[(t["layer"] == "bn_in") & (t["step"] == 11)]  # 10 steps per epoch: step 11 = epoch 1, batch 0
    batch = imgs[0:32]
    assert step7["epoch"].iloc[0] == 1
    np.testing.assert_allclose(step7["batch_mean"].iloc[0], batch.mean(), atol=1e-6)
    np.testing.assert_allclose(step7["batch_var"].iloc[0], batch.var(), atol=1e-6)
    assert len(t[(t["layer"] == "bn_0") & (t["step"] == 1)]) == 4  # one row per conv channel
    # the wrap is gone after fit
    assert "_moments" not in bn_first.get_layer("bn_in").__dict__ and "call" not in bn_first.get_layer("bn_in").__dict__


def test_per_epoch_plots_and_explorer(digits):
    x, y = digits
    model = models.deep_mlp(64, depth=3, width=16, batch_norm=True, init_scale=0.5, learning_rate=0.05)
    recorder = viz.BatchNormRecorder(every=2)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[recorder])
    save(viz.plot_batchnorm_stats(recorder.table, "bn_1"), "batchnorm_stats")
    assert viz.explore_batchnorm(recorder.table) is not None
    per_epoch = viz.BatchNormRecorder(per_epoch=True)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[per_epoch])
    assert sorted(per_epoch.table["epoch"].unique()) == [0, 1]


def test_bn_undoes_saturation(digits):
    x, y = digits
    runs = {}
    for name, bn in (("without BN", False), ("with BN", True)):
        model = models.deep_mlp(64, depth=4, width=32, batch_norm=bn, init_scale=1.0)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        runs[name] = viz.activations(model, x[:256], training=True)
    without = viz.activation_table(runs["without BN"])
    with_bn = viz.activation_table(runs["with BN"])
    # hand check of the saturated fraction on one layer
    a = runs["without BN"]["act_2"]
    assert without.set_index("layer").loc["act_2", "saturated_fraction"] == pytest.approx(np.mean(np.abs(a) > 0.99))
    assert without["saturated_fraction"].mean() > 2 * with_bn["saturated_fraction"].mean()
    save(viz.plot_activation_distributions(runs), "batchnorm_activations")


def test_clear_errors():
    model = models.deep_mlp(4, depth=1, width=4)
    with pytest.raises(ValueError, match="no BatchNormalization layer"):
        model.fit(np.zeros((4, 4)), np.zeros(4), verbose=0, callbacks=[viz.BatchNormRecorder()])
    assert viz.saturated_fraction([0.0, 0.995, -1.0, 0.5]) == 0.5
    with pytest.raises(ValueError, match="activation"):
        viz.saturated_fraction([0.0], "gelu")
