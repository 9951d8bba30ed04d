"""Attention maps: extracted scores equal a NumPy softmax(QKᵀ/√d_k); masks give exact zeros; plots render."""
from figures import save  # first: selects the headless Agg backend
import numpy as np
import pytest

from labkit import data, models, viz


def numpy_attention(x, layer, causal):
    """softmax(QKᵀ/√d_k) per head, from the layer's own weights, in plain NumPy (float64)."""
    wq, bq = (np.asarray(w, "float64") for w in layer.query_dense.get_weights())
    wk, bk = (np.asarray(w, "float64") for w in layer.key_dense.get_weights())
    q = np.einsum("btd,dhk->bhtk", x, wq) + bq[None, :, None, :]
    k = np.einsum("btd,dhk->bhtk", x, wk) + bk[None, :, None, :]
    logits = np.einsum("bhik,bhjk->bhij", q, k) / np.sqrt(wq.shape[-1])
    if causal:
        t = x.shape[1]
        logits = np.where(np.tril(np.ones((t, t), bool)), logits, -np.inf)
    logits -= logits.max(-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(-1, keepdims=True)


def sinusoid(length, d):
    out = np.zeros((length, d))
    for p in range(length):
        for i in range(0, d, 2):
            out[p, i] = np.sin(p / 10000 ** (i / d))
            if i + 1 < d:
                out[p, i + 1] = np.cos(p / 10000 ** (i / d))
    return out


@pytest.fixture(scope="module")
def trained():
    x, y = data.reversal_task(n=1200, length=8, vocab=10, seed=0)
    model = models.transformer_model(vocab=10, length=8, d_model=32, heads=2, layers=2, seed=0)
    model.fit(x, y, batch_size=64, epochs=5, verbose=0)
    return model, x[:4]


@pytest.mark.parametrize("causal", [False, True])
def test_scores_equal_numpy_softmax_qk(causal):
    import keras

    x, _ = data.reversal_task(n=3, length=7, vocab=9, seed=1)
    model = models.transformer_model(vocab=9, length=7, d_model=16, heads=4, layers=2, causal=causal, seed=3)
    scores = viz.attention_scores(model, x)
    assert scores.shape == (2, 3, 4, 7, 7)
    # layer 0's input, rebuilt from the embedding table and our own sinusoid: token·√d + position
    table = model.get_layer("embed").embedding.get_weights()[0].astype("float64")
    x0 = table[x] * np.sqrt(16) + sinusoid(7, 16)[None]
    np.testing.assert_allclose(scores[0], numpy_attention(x0, model.get_layer("attention_0"), causal), atol=1e-5)
    # layer 1's input is block 0's output
    x1 = keras.Model(model.input, model.get_layer("norm_0b").output)(x).numpy().astype("float64")
    np.testing.assert_allclose(scores[1], numpy_attention(x1, model.get_layer("attention_1"), causal), atol=1e-5)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    if causal:
        upper = np.triu(np.ones((7, 7), bool), 1)
        assert (scores[..., upper] == 0).all(), "masked (future) positions must carry exactly zero weight"
        assert (scores[..., ~upper] > 0).all()


def test_summary_distance_and_entropy_against_hand_values():
    eye = np.eye(4)[None, None, None]  # every query attends to itself: distance 0, entropy 0
    uniform = np.full((1, 1, 1, 4, 4), 0.25)
    s = viz.attention_summary(np.concatenate([eye, uniform], axis=2))
    assert s.loc[0, "mean_distance"] == 0 and s.loc[0, "entropy"] == 0
    # uniform over 4 keys: entropy log 4, mean |i-j| over the 4x4 grid = 20/16
    assert s.loc[1, "entropy"] == pytest.approx(np.log(4))
    assert s.loc[1, "mean_distance"] == pytest.approx(20 / 16)


def test_trained_reversal_model_attends_anti_diagonally(trained):
    model, x = trained
    scores = viz.attention_scores(model, x)
    summary = viz.attention_summary(scores)
    # reversing a length-8 sequence means looking |i - (7-i)| positions away: 4 on average
    best = summary.sort_values("entropy").iloc[0]
    assert best["mean_distance"] > 3.0, summary
    tokens = data.token_labels(x[0])
    save(viz.plot_attention(scores[int(best["layer"]), 0, int(best["head"])], tokens, tokens,
                            title="Reversal task: the sharpest head attends to position 7 − i"), "attention_heatmap")
    save(viz.plot_attention_grid(scores, tokens), "attention_grid")
    save(viz.plot_head_summary(summary, "mean_distance"), "attention_head_distance")
    save(viz.plot_head_summary(summary, "entropy"), "attention_head_entropy")


def test_causal_heatmap_and_explorer():
    x, _ = data.reversal_task(n=2, length=6, seed=2)
    model = models.transformer_model(vocab=10, length=6, d_model=16, heads=2, layers=1, causal=True)
    scores = viz.attention_scores(model, x)
    fig = viz.plot_attention(scores[0, 0, 0], data.token_labels(x[0]), title="Causal mask: no looking ahead")
    assert any("masked" in t.get_text() for t in fig.axes[0].texts)
    save(fig, "attention_causal")
    box = viz.explore_attention(scores)
    assert len(box.children[0].children) == 3  # layer, head, example


def test_clear_errors():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no keras.layers.MultiHeadAttention"):
        viz.attention_scores(model, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="divisible"):
        models.transformer_model(vocab=5, length=4, d_model=10, heads=3)
    with pytest.raises(ValueError, match="token labels"):
        viz.plot_attention(np.eye(3), ["a", "b"])
