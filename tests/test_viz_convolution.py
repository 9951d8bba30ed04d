"""Convolution arithmetic equals scipy.signal.correlate2d and keras Conv2D; pooling; filters and feature maps."""
from figures import save  # first: selects the headless Agg backend
import numpy as np
import pytest
from scipy.signal import correlate2d

from labkit import data, models, viz


def test_course_example_is_4x4_and_matches_scipy():
    out = viz.convolve2d(viz.COURSE_IMAGE, viz.VERTICAL_EDGE)
    assert out.shape == (4, 4)
    assert out[0, 0] == -5  # the course's first step: 3+1+2 - (1+8+2)
    np.testing.assert_array_equal(out, correlate2d(viz.COURSE_IMAGE, viz.VERTICAL_EDGE, mode="valid"))
    edges = viz.convolve2d(viz.EDGE_IMAGE, viz.VERTICAL_EDGE)
    np.testing.assert_array_equal(edges, np.tile([0, 30, 30, 0], (4, 1)))  # the edge shows up in the middle


@pytest.mark.parametrize("shape,k,stride", [((7, 9), 3, 1), ((8, 8), 2, 2), ((10, 7), 5, 3)])
def test_random_inputs_match_scipy_and_keras(shape, k, stride):
    import keras

    rng = np.random.default_rng(sum(shape) + k)
    image, kernel = rng.normal(size=shape), rng.normal(size=(k, k))
    ours = viz.convolve2d(image, kernel, stride)
    np.testing.assert_allclose(ours, correlate2d(image, kernel, mode="valid")[::stride, ::stride], atol=1e-12)
    conv = keras.layers.Conv2D(1, k, strides=stride, use_bias=False, padding="valid")
    conv.build((1, *shape, 1))
    conv.set_weights([kernel[:, :, None, None].astype("float32")])
    keras_out = conv(image[None, :, :, None].astype("float32")).numpy()[0, :, :, 0]
    np.testing.assert_allclose(ours, keras_out, atol=1e-4)
    assert ours.shape == (viz.output_size(shape[0], k, stride), viz.output_size(shape[1], k, stride))


def test_steps_walk_every_window_in_order():
    steps = viz.convolution_steps(viz.COURSE_IMAGE, viz.VERTICAL_EDGE)
    assert len(steps) == 16 and list(steps["step"]) == list(range(16))
    assert steps.iloc[0]["products"].startswith("3·1 + 1·-1 + 1·1")  # zero kernel entries are left out
    np.testing.assert_array_equal(steps["value"].to_numpy().reshape(4, 4),
                                  correlate2d(viz.COURSE_IMAGE, viz.VERTICAL_EDGE, mode="valid"))
    save(viz.plot_convolution_step(step=0), "conv_step_01")
    save(viz.plot_convolution_step(step=6), "conv_step_07")
    save(viz.plot_convolution_step(viz.EDGE_IMAGE, step=15), "conv_edge_step_16")
    save(viz.plot_convolution_steps(), "conv_all_steps")
    assert viz.explore_convolution() is not None


def test_pooling_against_reshape():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(6, 8))
    blocks = image.reshape(3, 2, 4, 2)
    np.testing.assert_allclose(viz.pool2d(image, 2, mode="max"), blocks.max(axis=(1, 3)))
    np.testing.assert_allclose(viz.pool2d(image, 2, mode="average"), blocks.mean(axis=(1, 3)))
    np.testing.assert_array_equal(viz.pool2d(viz.COURSE_IMAGE, 2), [[5, 9, 7], [7, 5, 8], [4, 6, 9]])
    save(viz.plot_pooling(), "conv_pooling")
    with pytest.raises(ValueError, match="mode"):
        viz.pool2d(image, 2, mode="median")


def test_trained_cnn_filters_and_feature_maps():
    x, y = data.shapes(n=240, size=16, seed=0)
    model = models.small_cnn(input_shape=(16, 16, 1), classes=3, filters=(8, 8), seed=0)
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    k = viz.conv_filters(model, "conv_0")
    assert k.shape == (3, 3, 1, 8)
    maps = viz.feature_maps(model, x[0])
    assert list(maps) == ["conv_0", "conv_1"] and maps["conv_0"].shape == (1, 16, 16, 8)
    # channel 0 of conv_0 by hand: zero-padded correlation + bias
    bias = model.get_layer("conv_0").bias.numpy()[0]
    padded = np.pad(x[0, :, :, 0], 1)
    np.testing.assert_allclose(maps["conv_0"][0, :, :, 0], correlate2d(padded, k[:, :, 0, 0], mode="valid") + bias,
                               atol=1e-4)
    save(viz.plot_filters(k, title="Learned 3×3 filters of conv_0 (trained on shapes)"), "conv_filters")
    save(viz.plot_feature_maps(maps["conv_0"], "conv_0", image=x[0]), "conv_feature_maps_0")
    save(viz.plot_feature_maps(maps["conv_1"], "conv_1", image=x[0]), "conv_feature_maps_1")
    assert viz.explore_feature_maps(model, x[:3]) is not None


def test_clear_errors():
    import keras

    with pytest.raises(ValueError, match="2-D"):
        viz.convolve2d(np.zeros((3, 3, 3)), viz.VERTICAL_EDGE)
    with pytest.raises(ValueError, match="larger"):
        viz.convolve2d(np.zeros((2, 2)), viz.VERTICAL_EDGE)
    with pytest.raises(ValueError, match="no Conv2D"):
        viz.conv_filters(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]))
    with pytest.raises(ValueError, match="step must be"):
        viz.plot_convolution_step(step=99)
