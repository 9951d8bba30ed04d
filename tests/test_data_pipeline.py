"""tf.data throughput measurement on the shop's raw CSV: counts rows right, prefetch hides input."""
import pytest

from labkit import data
from labkit.data import pipeline

tf = pytest.importorskip("tensorflow")


def test_throughput_counts_rows_for_batched_and_unbatched(tmp_path):
    paths = data.write_raw_shop(tmp_path, sessions=500, users=50)
    defaults = [tf.constant(0, tf.int64), tf.constant(0, tf.int64), "", "", tf.constant(0, tf.int64), "", "",
                tf.constant(0, tf.int64)]
    decode = pipeline.csv_decoder(defaults)
    lines = tf.data.TextLineDataset(str(paths["events"])).skip(1)
    total = sum(1 for _ in lines)
    assert pipeline.count_rows(lines) == total and pipeline.count_rows(lines.batch(7)) == total
    one = pipeline.throughput(lines.map(decode), "per row")
    batched = pipeline.throughput(lines.batch(64).map(decode), "batched", epochs=2)
    assert one["rows"] == batched["rows"] == total and batched["epoch"] == 2 and one["rows_per_s"] > 0
    table = __import__("pandas").DataFrame([one, batched])
    fig = pipeline.plot_throughput(table)
    assert "rows/s" in fig.axes[0].get_xlabel()


def test_prefetch_hides_a_slow_input_behind_the_step():
    import time

    def slow_read(i):
        time.sleep(0.01)  # 10 ms to produce each batch
        return i
    slow = tf.data.Dataset.range(40).map(lambda i: tf.py_function(slow_read, [i], tf.int64))
    slow = pipeline.as_written(slow)  # no automatic prefetch: the plain pipeline stays plain
    plain = pipeline.step_times(slow, step_ms=15, steps=20, name="plain")
    ahead = pipeline.step_times(slow.prefetch(2), step_ms=15, steps=20, name="prefetch")
    assert plain["steps"] == ahead["steps"] == 20
    assert plain["input_wait_ms"] > 5  # each step waits for its 10 ms input
    assert ahead["input_wait_ms"] < plain["input_wait_ms"]
