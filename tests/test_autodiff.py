"""The from-scratch autodiff engine against finite differences, forward mode and tf.GradientTape."""
import math

import numpy as np
import pytest

from labkit import autodiff as ad


def test_scalar_chain_rule_matches_hand_derivation():
    a, b = ad.Value(2.0, name="a"), ad.Value(-3.0, name="b")
    c = a * b + b ** 2          # c = ab + b²
    d = c.tanh()
    d.backward()
    dd_dc = 1 - math.tanh(c.data) ** 2
    assert a.grad == pytest.approx(dd_dc * b.data)
    assert b.grad == pytest.approx(dd_dc * (a.data + 2 * b.data))


def test_node_used_twice_accumulates_both_paths():
    x = ad.Value(3.0)
    y = x * x + x               # dy/dx = 2x + 1
    y.backward()
    assert x.grad == pytest.approx(7.0)


@pytest.mark.parametrize("op", ["tanh", "sigmoid", "relu", "exp", "log"])
def test_unary_ops_match_finite_differences(op):
    x0 = np.array([[0.3, 1.7, -0.4], [2.1, 0.9, -1.3]])
    if op == "log":
        x0 = np.abs(x0) + 0.1

    def f(arr):
        return float(getattr(ad.Tensor(arr), op)().sum().data)
    x = ad.Tensor(x0)
    getattr(x, op)().sum().backward()
    np.testing.assert_allclose(x.grad, ad.numerical_gradient(f, x0), rtol=1e-5, atol=1e-7)


def test_broadcasting_and_matmul_match_finite_differences():
    rng = np.random.default_rng(0)
    X, W0, B0 = rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)

    def loss(W, B):
        return ((ad.Tensor(X) @ W + B).tanh() ** 2).mean() / 2.0 - (B * 3.0).sum()
    W, B = ad.Tensor(W0), ad.Tensor(B0)
    loss(W, B).backward()
    np.testing.assert_allclose(W.grad, ad.numerical_gradient(lambda w: float(loss(ad.Tensor(w), ad.Tensor(B0)).data), W0), atol=1e-7)
    np.testing.assert_allclose(B.grad, ad.numerical_gradient(lambda b: float(loss(ad.Tensor(W0), ad.Tensor(b)).data), B0), atol=1e-7)


def test_cross_entropy_gradient_is_softmax_minus_onehot():
    z0 = np.array([[2.0, 1.0, -1.0], [0.5, 0.5, 3.0]])
    y = np.array([0, 2])
    z = ad.Tensor(z0)
    loss = ad.softmax_cross_entropy(z, y)
    loss.backward()
    p = np.exp(z0) / np.exp(z0).sum(1, keepdims=True)
    assert loss.data == pytest.approx(-np.log(p[[0, 1], y]).mean())
    np.testing.assert_allclose(z.grad, (p - np.eye(3)[y]) / 2)


def test_mlp_gradients_match_tensorflow_gradient_tape():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 4)), rng.integers(0, 3, 16)
    params = ad.init_mlp([4, 8, 3], seed=2)
    logits, tensors = ad.mlp_forward(params, x, activation="tanh")
    loss = ad.softmax_cross_entropy(logits, y)
    loss.backward()
    tf_vars = [tf.Variable(a) for wb in params for a in wb]
    with tf.GradientTape() as tape:
        h = tf.tanh(tf.constant(x) @ tf_vars[0] + tf_vars[1])
        tf_logits = h @ tf_vars[2] + tf_vars[3]
        tf_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, tf_logits))
    grads = tape.gradient(tf_loss, tf_vars)
    assert loss.data == pytest.approx(float(tf_loss), rel=1e-10)
    for ours, theirs in zip(tensors, grads):
        np.testing.assert_allclose(ours.grad, theirs.numpy(), rtol=1e-9, atol=1e-12)


def test_forward_mode_dual_numbers_agree_with_reverse_mode():
    def f(v):  # the same code runs on Duals (forward mode) and on Values (reverse mode)
        x, y, z = v
        return x * y.exp() + (z * x).tanh() / y

    grad, passes = ad.forward_gradient(f, [0.5, 1.2, -0.7])
    xs = [ad.Value(v) for v in (0.5, 1.2, -0.7)]
    f(xs).backward()
    np.testing.assert_allclose(grad, [v.grad for v in xs], rtol=1e-12)
    assert passes == 3
    d = ad.Dual(2.0, 1.0)
    assert (d ** 3).dot == pytest.approx(12.0) and (1 / d).dot == pytest.approx(-0.25)
    assert d.sin().dot == pytest.approx(math.cos(2.0)) and d.log().dot == pytest.approx(0.5)


def test_graph_table_and_drawing():
    import matplotlib
    matplotlib.use("Agg")
    a, b = ad.Value(2.0, name="a"), ad.Value(3.0, name="b")
    out = (a * b + a).tanh()
    out.backward()
    table = ad.graph_table(out)
    assert list(table["op"]) == ["leaf", "leaf", "*", "+", "tanh"]
    assert table.iloc[-1]["inputs"] == [3] and table.iloc[0]["grad"] == pytest.approx(a.grad)
    fig = ad.plot_graph(out)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 5 and any(t.startswith("a\n") for t in texts)


def test_activation_derivatives_match_finite_differences():
    z = np.linspace(-3, 3, 13) + 0.05  # avoid ReLU's kink at 0
    for name, (f, df) in ad.ACTIVATIONS.items():
        numeric = (f(z + 1e-6) - f(z - 1e-6)) / 2e-6
        np.testing.assert_allclose(df(z), numeric, atol=1e-6, err_msg=name)
