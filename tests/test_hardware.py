"""The hardware probes measure what they say (no timing thresholds: the machine is shared)."""
import numpy as np
import pytest

from labkit import hardware as hw


def test_cache_sizes_are_ordered():
    caches = hw.cache_sizes()
    if not caches:
        pytest.skip("sysfs does not describe the caches here")
    sizes = [caches[k] for k in ("L1d", "L2", "L3") if k in caches]
    assert sizes == sorted(sizes) and sizes[0] >= 4096


def test_arithmetic_intensity_by_hand():
    assert hw.arithmetic_intensity(2, 2, 2, 4) == pytest.approx(16 / 48)
    big, rnn = hw.arithmetic_intensity(1024, 1024, 1024), hw.arithmetic_intensity(1, 256, 256)
    assert big == pytest.approx(1024 / 6) and rnn < 0.6 < big


def test_matmul_flops_counts_2mkn():
    row = hw.matmul_flops(64, 32, 16, threads=1, repeats=1)
    assert row["flops"] == 2 * 64 * 32 * 16 and row["flop_per_s"] == pytest.approx(row["flops"] / row["seconds"])
    table = hw.matmul_sweep(sizes=(16, 32), threads=(1,), repeats=1)
    assert list(table["m"]) == [16, 32] and (table["flop_per_s"] > 0).all()


def test_bandwidth_table_labels_levels():
    table = hw.bandwidth_by_size(sizes=[16 << 10, 512 << 20], total=16 << 20)
    assert table["level"].iloc[-1] == "RAM" and (table["bytes_per_s"] > 1e8).all()
    assert hw.stream_bandwidth(32 << 20, repeats=1) > 1e8


def test_tf_matmul_precision_errors_are_ordered():
    pytest.importorskip("tensorflow")
    rows = {dt: hw.tf_matmul_flops(128, dtype=dt, repeats=1) for dt in ("float32", "bfloat16", "float16")}
    assert rows["float32"]["relative_error"] < 1e-5
    assert rows["float16"]["relative_error"] < rows["bfloat16"]["relative_error"] < 0.05


def test_plots_have_units():
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd
    points = pd.DataFrame({"intensity": [0.5, 100.0], "flop_per_s": [5e9, 5e10], "label": ["rnn", "cnn"]})
    fig = hw.plot_roofline(8e10, 2e10, points)
    assert "FLOP per byte" in fig.axes[0].get_xlabel() and "GFLOP/s" in fig.axes[0].get_ylabel()
    fig = hw.plot_memory_hierarchy(pd.DataFrame({"source": ["L1", "disk"], "bytes_per_s": [1e11, 1e9]}))
    assert "GB/s" in fig.axes[0].get_xlabel()
    assert set(hw.PUBLISHED_GPUS.columns) >= {"device", "fp32_tflops", "memory_gb_per_s", "source"}
    assert np.all(hw.PUBLISHED_GPUS["source"].str.startswith("https://"))


def test_float_formats_know_bfloat16():
    table = hw.float_formats().set_index("format")
    assert table.loc["bfloat16", "exponent bits"] == table.loc["float32", "exponent bits"] == 8
    assert table.loc["bfloat16", "epsilon"] == 2 ** -7 and table.loc["float16", "max"] == 65504
