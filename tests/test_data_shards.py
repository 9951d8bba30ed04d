"""Shards round-trip, stream in bounded batches, and the page-cache tools say what they did."""
import numpy as np
import pytest

from labkit import data
from labkit.data import shards as sh


def test_write_read_round_trip(tmp_path):
    x = np.arange(250 * 3, dtype="float32").reshape(250, 3)
    y = np.arange(250) % 2
    m = data.write_shards(tmp_path, x, y, rows_per_shard=100)
    s = data.Shards(tmp_path)
    assert len(s) == 3 and s.rows == 250 and m["rows"] == 250 and s.features == 3
    back_x = np.concatenate([xs for xs, _ in s])
    back_y = np.concatenate([ys for _, ys in s])
    np.testing.assert_array_equal(back_x, x)
    np.testing.assert_array_equal(back_y, y)
    xs, _ = s.read(1, mmap_mode="r")
    assert isinstance(xs, np.memmap) and xs.shape == (100, 3)


def test_batches_cover_every_row_once_when_shuffled(tmp_path):
    x = np.arange(230, dtype="float32")[:, None]
    data.write_shards(tmp_path, x, np.zeros(230), rows_per_shard=64)
    seen = np.concatenate([xb[:, 0] for xb, _ in data.Shards(tmp_path).batches(10, shuffle=True, seed=3)])
    assert sorted(seen) == list(range(230)) and not np.array_equal(seen, np.arange(230))
    assert max(len(xb) for xb, _ in data.Shards(tmp_path).batches(10)) == 10


def test_synthetic_shards_follow_their_logistic_model(tmp_path):
    m = data.write_synthetic_shards(tmp_path, rows=20_000, features=6, rows_per_shard=7_000, informative=3)
    s = data.Shards(tmp_path)
    assert len(s) == 3 and s.rows == 20_000 and len(m["w_true"]) == 7
    x, y = s.read(0)
    w = np.array(m["w_true"])
    p = 1 / (1 + np.exp(-(x @ w[:-1] + w[-1])))
    assert abs(p.mean() - y.mean()) < 0.02  # labels drawn from the stored model
    with pytest.raises(FileNotFoundError, match="write the shards first"):
        data.Shards(tmp_path / "nothing")


def test_fadvise_drops_pages_and_mincore_sees_it(tmp_path):
    data.write_synthetic_shards(tmp_path, rows=40_000, features=16, rows_per_shard=20_000)
    s = data.Shards(tmp_path)
    sh.read_throughput(s.paths)
    before = [sh.cached_fraction(p) for p in s.paths]
    if None in before:
        pytest.skip("mincore is not available here")
    assert min(before) > 0.9  # just read: in the page cache
    assert sh.drop_from_page_cache(s.paths)
    after = [sh.cached_fraction(p) for p in s.paths]
    assert max(after) < 0.5, after


def test_storage_tiers_table(tmp_path):
    data.write_synthetic_shards(tmp_path, rows=20_000, features=16, rows_per_shard=10_000)
    table = sh.storage_tiers(data.Shards(tmp_path))
    assert list(table["source"]) == ["disk", "page cache", "RAM"]
    assert (table["bytes"] == table["bytes"].iloc[0]).all() and (table["bytes_per_s"] > 0).all()
    assert table["cached_before"].iloc[0] < 0.5 and table["cached_before"].iloc[1] > 0.9
