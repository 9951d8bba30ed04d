"""Logistic regression: the gradient is right, every optimiser learns, L1 sparsifies, k-fold and
the parallel grid search give the same answers as the serial ones."""
import numpy as np
import pytest

from labkit import autodiff as ad
from labkit import data, linear


@pytest.fixture(scope="module")
def xy():
    x, y, w = data.logistic_data(n=3000, features=8, informative=3, seed=0)
    return x.astype("float64"), y, w


def test_gradient_matches_finite_differences(xy):
    x, y, _ = xy
    w = np.random.default_rng(1).normal(size=9)
    loss, grad = linear.loss_and_gradient(w, x[:200], y[:200], l2=0.1)
    numeric = ad.numerical_gradient(lambda v: linear.loss_and_gradient(v, x[:200], y[:200], l2=0.1)[0], w)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    assert loss == pytest.approx(linear.log_loss(w, x[:200], y[:200]) + 0.05 * w[:-1] @ w[:-1])


@pytest.mark.parametrize("method,lr,epochs", [("gd", 1.0, 100), ("sgd", 0.05, 1), ("minibatch", 0.5, 5)])
def test_every_method_learns(xy, method, lr, epochs):
    x, y, _ = xy
    w, hist = linear.train((x, y), method=method, lr=lr, epochs=epochs)
    assert hist["loss"].iloc[-1] < 0.75 * hist["loss"].iloc[0]  # from log 2 = 0.693 down
    assert hist["passes"].iloc[-1] == pytest.approx(epochs, rel=0.02)
    assert hist["seconds"].is_monotonic_increasing and linear.accuracy(w, x, y) > 0.75


def test_training_over_shards_equals_training_in_memory_for_gd(xy, tmp_path):
    x, y, _ = xy
    data.write_shards(tmp_path, x, y, rows_per_shard=700)
    w_mem, _ = linear.train((x, y), method="gd", lr=1.0, epochs=20)
    w_disk, hist = linear.train(data.Shards(tmp_path), method="gd", lr=1.0, epochs=20, evaluate=(x, y))
    np.testing.assert_allclose(w_disk, w_mem, rtol=1e-10)
    w_mb, _ = linear.train(data.Shards(tmp_path), method="minibatch", lr=0.5, epochs=2, evaluate=(x, y))
    assert linear.log_loss(w_mb, x, y) < 0.6
    with pytest.raises(ValueError, match="evaluate"):
        linear.train(data.Shards(tmp_path))


def test_l1_gives_exact_zeros_and_l2_does_not(xy):
    x, y, w_true = xy
    l1 = linear.regularization_path(x, y, "l1", strengths=[0.03], steps=300)
    l2 = linear.regularization_path(x, y, "l2", strengths=[0.3], steps=300)
    assert (l1["weight"].iloc[3:] == 0).sum() >= 3            # the distractors are cut out
    assert (l1["weight"].iloc[:3].abs() > 0.1).all()          # the informative ones stay
    assert (l2["weight"] != 0).all()
    with pytest.raises(ValueError):
        linear.regularization_path(x, y, "l3")


def test_kfold_partitions_the_rows():
    folds = linear.kfold(23, k=5, seed=0)
    val = np.concatenate([v for _, v in folds])
    assert sorted(val) == list(range(23))
    for tr, va in folds:
        assert set(tr).isdisjoint(va) and len(tr) + len(va) == 23
    with pytest.raises(ValueError):
        linear.kfold(3, k=5)


def test_cross_validate_table(xy):
    x, y, _ = xy
    table = linear.cross_validate(x, y, k=4, method="gd", lr=1.0, epochs=30)
    assert len(table) == 4 and (table["val_accuracy"] > 0.7).all()


@pytest.mark.slow
def test_grid_search_in_parallel_matches_serial(xy, tmp_path):
    x, y, _ = xy
    path = tmp_path / "xy.npz"
    np.savez(path, x=x, y=y)
    settings = linear.grid(method=["gd"], lr=[0.1, 1.0], epochs=[20], l2=[0.0, 0.5])
    assert len(settings) == 4
    one, _ = linear.grid_search(path, settings, workers=1, k=3)
    two, _ = linear.grid_search(path, settings, workers=2, k=3)
    cols = ["lr", "l2", "val_loss"]
    np.testing.assert_allclose(one[cols].to_numpy(), two[cols].to_numpy())
    assert one["worker"].nunique() == 1 and one.iloc[0]["l2"] == 0.0
