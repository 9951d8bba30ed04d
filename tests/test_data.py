"""The offline data generators: shapes, labels and the task definitions hold, and seeds repeat."""
import numpy as np
import pytest

from labkit import data


def test_digits_ship_with_sklearn():
    x, y = data.digits()
    assert x.shape == (1797, 8, 8, 1) and y.shape == (1797,)
    assert 0.0 <= x.min() and x.max() <= 1.0 and set(y) == set(range(10))


def test_shapes_are_balanced_and_distinct():
    x, y = data.shapes(n=90, size=16, noise=0.0, seed=1)
    assert x.shape == (90, 16, 16, 1) and np.bincount(y).tolist() == [30, 30, 30]
    area = x.reshape(90, -1).sum(1)
    assert (area > 5).all()  # every image has a shape drawn on it
    np.testing.assert_array_equal(data.shapes(n=10, seed=3)[0], data.shapes(n=10, seed=3)[0])
    with pytest.raises(ValueError):
        data.shapes(size=4)


def test_stripes_orientation():
    x, y = data.stripes(n=40, size=12, seed=0)
    vertical = x[y == 0, :, :, 0]
    horizontal = x[y == 1, :, :, 0]
    assert np.allclose(vertical, vertical[:, :1, :])  # every row equal: stripes run top to bottom
    assert np.allclose(horizontal, horizontal[:, :, :1])


def test_adding_problem_targets():
    x, y = data.adding_problem(n=50, length=20, seed=0)
    assert x.shape == (50, 20, 2) and y.shape == (50, 1)
    assert (x[:, :, 1].sum(1) == 2).all()
    assert (x[:, :10, 1].sum(1) == 1).all()  # one mark in each half
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(1), rtol=1e-6)


def test_copy_and_reversal_tasks():
    x, y = data.copy_task(n=5, symbols=4, remember=3, delay=4, seed=0)
    assert x.shape == y.shape == (5, 10)
    np.testing.assert_array_equal(y[:, -3:], x[:, :3])
    assert (x[:, 6] == 1).all() and (y[:, :-3] == 0).all()
    x, y = data.reversal_task(n=7, length=5, vocab=6)
    np.testing.assert_array_equal(y, x[:, ::-1])
    assert x.min() >= 1 and x.max() <= 5
    assert data.token_labels([4, 2]) == ["0·4", "1·2"]
