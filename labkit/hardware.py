"""What this machine can do, measured: caches, memory bandwidth, matmul FLOP/s, the roofline.

Record (each returns a dict or a tidy table, one row per measurement)
- :func:`cache_sizes` -- the CPU's cache levels, from Linux's sysfs.
- :func:`read_bandwidth` / :func:`bandwidth_by_size` -- bytes/s reading a buffer that fits in
  L1, L2, L3 or only in RAM: the memory hierarchy as numbers.
- :func:`stream_bandwidth` -- main-memory bandwidth (a STREAM-style copy of a large array).
- :func:`matmul_flops` / :func:`matmul_sweep` -- NumPy (BLAS) matmul FLOP/s against size and
  thread count.
- :func:`tf_matmul_flops` -- TensorFlow matmul FLOP/s for float32, bfloat16 and float16.
- :func:`arithmetic_intensity` -- FLOPs per byte of a matmul: where it sits on the roofline.
- :func:`float_formats` -- float32, bfloat16 and float16: bits, precision and range.
- :func:`cpu_flags` -- the CPU's feature flags (AVX-512, bfloat16 instructions, ...).
- :func:`gpus` -- the GPUs TensorFlow sees (none on the course machines).

Published figures
- :data:`PUBLISHED_GPUS` -- peak FLOP/s and bandwidth from vendor datasheets, with their sources.

Plot (each returns a Figure)
- :func:`plot_memory_hierarchy`, :func:`plot_matmul_sweep`, :func:`plot_roofline`.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

# --- caches and memory ---------------------------------------------------------------------------


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    for suffix, mult in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)):
        if text.endswith(suffix):
            return int(text[:-1]) * mult
    return int(text)


def cache_sizes(cpu: int = 0) -> dict[str, int]:
    """``{"L1d": bytes, "L2": bytes, "L3": bytes}`` for one core, read from
    ``/sys/devices/system/cpu/cpuN/cache`` (empty where sysfs doesn't say)."""
    found = {}
    for index in sorted(Path(f"/sys/devices/system/cpu/cpu{cpu}/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = _parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        found[f"L{level}{'d' if kind == 'Data' else ''}"] = size
    return found


def read_bandwidth(nbytes: int, total: int = 256 << 20, repeats: int = 3) -> float:
    """Bytes/s of reading a ``nbytes`` float64 buffer over and over (``total`` bytes read in all),
    with a max-reduction (SIMD-vectorised, so the arithmetic is not what limits it).

    The buffer is read many times inside a single NumPy call (a stride-0 view repeats it), so
    there is no per-call overhead: a buffer that fits in L1 is read at L1 speed, one larger than
    the last-level cache comes from RAM. Best of ``repeats``.
    """
    n = max(nbytes // 8, 64)
    a = np.ones(n)
    reps = max(total // (n * 8), 1)
    view = np.lib.stride_tricks.as_strided(a, shape=(reps, n), strides=(0, 8), writeable=False)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        view.max(axis=1)
        best = min(best, time.perf_counter() - start)
    return reps * n * 8 / best


def bandwidth_by_size(sizes=None, total: int = 128 << 20, repeats: int = 5) -> pd.DataFrame:
    """:func:`read_bandwidth` for buffer sizes from 16 KiB to 256 MiB: one row per size, with the
    smallest cache level it fits in (``level``). Best of ``repeats`` per size: on a busy machine
    the best run is the one least disturbed by other programs."""
    sizes = sizes or [16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20]
    caches = sorted(cache_sizes().items(), key=lambda kv: kv[1])
    rows = []
    for s in sizes:
        level = next((name for name, size in caches if s <= size * 0.75), "RAM")
        rows.append({"bytes": s, "bytes_per_s": read_bandwidth(s, total=max(total, 2 * s), repeats=repeats),
                     "level": level})
    return pd.DataFrame(rows)


def stream_bandwidth(nbytes: int = 256 << 20, repeats: int = 3) -> float:
    """Main-memory bandwidth in bytes/s: copy a ``nbytes`` array (far larger than the caches);
    counts the bytes read plus the bytes written, as STREAM's "copy" does. Best of ``repeats``."""
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    np.copyto(b, a)  # touch the pages first
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - start)
    return 2 * a.nbytes / best


# --- compute -----------------------------------------------------------------------------------------


def arithmetic_intensity(m: int, k: int, n: int, bytes_per_element: int = 4) -> float:
    """FLOPs per byte moved by ``(m×k) @ (k×n)``: ``2mkn / (bytes · (mk + kn + mn))``, assuming
    each matrix crosses the memory bus once. Small or skinny matmuls (an RNN step on one example)
    have low intensity and are memory-bound; big square ones (a CNN layer on a batch) are
    compute-bound."""
    return 2.0 * m * k * n / (bytes_per_element * (m * k + k * n + m * n))


def _time_best(fn, repeats: int, min_seconds: float = 0.05) -> float:
    """Best time of one call, each trial repeating ``fn`` until ``min_seconds`` have passed."""
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / calls)
    return best


def matmul_flops(m: int, k: int | None = None, n: int | None = None, dtype: str = "float32",
                 threads: int | None = None, repeats: int = 3, seed: int = 0) -> dict:
    """FLOP/s of NumPy's ``(m×k) @ (k×n)`` (BLAS), with BLAS limited to ``threads`` threads
    (None: as many as BLAS wants). ``k`` and ``n`` default to ``m`` (square). Returns one row:
    ``{m, k, n, dtype, threads, seconds, flops, flop_per_s, intensity}``."""
    from threadpoolctl import threadpool_limits

    k = k or m
    n = n or m
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    out = np.empty((m, n), dtype=dtype)
    with threadpool_limits(limits=threads, user_api="blas"):
        seconds = _time_best(lambda: np.matmul(a, b, out=out), repeats)
    flops = 2.0 * m * k * n
    return {"m": m, "k": k, "n": n, "dtype": dtype, "threads": threads or 0, "seconds": seconds,
            "flops": flops, "flop_per_s": flops / seconds,
            "intensity": arithmetic_intensity(m, k, n, np.dtype(dtype).itemsize)}


def matmul_sweep(sizes=(32, 64, 128, 256, 512, 1024), threads=(1, 2), dtype: str = "float32",
                 repeats: int = 3) -> pd.DataFrame:
    """:func:`matmul_flops` of square matrices for every size × thread count: a tidy table."""
    return pd.DataFrame([matmul_flops(s, dtype=dtype, threads=t, repeats=repeats)
                         for t in threads for s in sizes])


def tf_matmul_flops(m: int, k: int | None = None, n: int | None = None, dtype: str = "float32",
                    repeats: int = 3, seed: int = 0) -> dict:
    """FLOP/s of a compiled TensorFlow matmul in ``dtype`` (``float32``, ``bfloat16``,
    ``float16``). Half-precision inputs halve the bytes moved; whether they also speed up the
    arithmetic depends on the hardware having units for them (CPU flags such as ``avx512_bf16``
    or ``amx_bf16``; GPU tensor cores). Also returns the result's relative error against float64."""
    import tensorflow as tf

    k = k or m
    n = n or m
    rng = np.random.default_rng(seed)
    a64, b64 = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    a, b = tf.constant(a64, dtype=dtype), tf.constant(b64, dtype=dtype)
    f = tf.function(lambda: tf.linalg.matmul(a, b))
    seconds = _time_best(f, repeats)  # CPU ops run synchronously: the call returns when done
    result = tf.cast(f(), tf.float64).numpy()
    exact = a64 @ b64
    error = float(np.linalg.norm(result - exact) / np.linalg.norm(exact))
    flops = 2.0 * m * k * n
    return {"m": m, "k": k, "n": n, "dtype": dtype, "seconds": seconds, "flop_per_s": flops / seconds,
            "relative_error": error}


def float_formats() -> pd.DataFrame:
    """float32, bfloat16 and float16 side by side: bits for exponent and mantissa, machine epsilon
    (the gap after 1.0: relative precision), largest and smallest normal number (range). From
    ``ml_dtypes`` (TensorFlow's own dependency), which knows bfloat16."""
    import ml_dtypes

    rows = []
    for name, dtype in [("float32", np.float32), ("bfloat16", ml_dtypes.bfloat16), ("float16", np.float16)]:
        f = ml_dtypes.finfo(dtype)
        rows.append({"format": name, "bits": int(f.bits), "exponent bits": int(f.nexp),
                     "mantissa bits": int(f.nmant), "epsilon": float(f.eps), "max": float(f.max),
                     "smallest normal": float(f.tiny)})
    return pd.DataFrame(rows)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (e.g. ``avx512f``, ``avx512_bf16``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def gpus() -> list[str]:
    """Names of the GPUs TensorFlow can use (an empty list on the course's CPU machines)."""
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


#: Peak figures from the vendors' datasheets (dense; tensor-core numbers without sparsity).
#: FLOP/s in TFLOP/s, memory bandwidth in GB/s.
PUBLISHED_GPUS = pd.DataFrame([
    {"device": "NVIDIA T4", "fp32_tflops": 8.1, "fp16_tensor_tflops": 65.0, "memory_gb_per_s": 320,
     "source": "https://www.nvidia.com/en-us/data-center/tesla-t4/"},
    {"device": "NVIDIA V100 SXM2", "fp32_tflops": 15.7, "fp16_tensor_tflops": 125.0, "memory_gb_per_s": 900,
     "source": "https://www.nvidia.com/en-us/data-center/v100/"},
    {"device": "NVIDIA A100 SXM 80GB", "fp32_tflops": 19.5, "fp16_tensor_tflops": 312.0,
     "memory_gb_per_s": 2039, "source": "https://www.nvidia.com/en-us/data-center/a100/"},
    {"device": "NVIDIA H100 SXM", "fp32_tflops": 67.0, "fp16_tensor_tflops": 989.0, "memory_gb_per_s": 3350,
     "source": "https://www.nvidia.com/en-us/data-center/h100/"},
])


# --- plots ---------------------------------------------------------------------------------------


def plot_memory_hierarchy(table: pd.DataFrame, ax=None, title: str = "Where the bytes come from"):
    """Bytes/s by source on a log axis: ``table`` has ``source`` and ``bytes_per_s`` columns (for
    example, cache levels from :func:`bandwidth_by_size`, RAM, page cache and disk). Returns the
    Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 0.5 * len(table) + 1.5))
    else:
        fig = ax.figure
    y = np.arange(len(table))[::-1]
    colours = plt.cm.viridis(np.linspace(0.15, 0.85, len(table)))
    ax.barh(y, table["bytes_per_s"] / 1e9, color=colours)
    ax.set_yticks(y, table["source"])
    ax.set_xscale("log")
    for yi, v in zip(y, table["bytes_per_s"] / 1e9):
        ax.text(v, yi, f" {v:.3g} GB/s", va="center", fontsize=8)
    ax.set_xlabel("read throughput (GB/s, log scale)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3, which="both")
    ax.set_xlim(right=ax.get_xlim()[1] * 5)
    fig.tight_layout()
    return fig


def plot_matmul_sweep(table: pd.DataFrame, ax=None):
    """GFLOP/s against matrix size, one line per thread count (log–log). Returns the Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 4))
    else:
        fig = ax.figure
    for threads, group in table.groupby("threads"):
        ax.plot(group["m"], group["flop_per_s"] / 1e9, "o-",
                label=f"{threads} thread{'s' if threads != 1 else ''}" if threads else "BLAS default")
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted(table["m"].unique())
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlabel("matrix size n (n×n @ n×n)")
    ax.set_ylabel("throughput (GFLOP/s, log scale)")
    ax.set_title("Matmul throughput against size and threads")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_roofline(peak_flop_per_s: float, bytes_per_s: float, points: pd.DataFrame | None = None,
                  ax=None, title: str = "Roofline of this machine"):
    """The roofline ``min(peak, intensity × bandwidth)`` with measured points (``points`` has
    ``intensity``, ``flop_per_s`` and ``label`` columns). Left of the ridge point a kernel is
    memory-bound; right of it, compute-bound. Returns the Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    else:
        fig = ax.figure
    ridge = peak_flop_per_s / bytes_per_s
    lo = min(0.05, ridge / 100)
    hi = max(1000.0, ridge * 100)
    if points is not None and len(points):
        lo = min(lo, points["intensity"].min() / 2)
        hi = max(hi, points["intensity"].max() * 2)
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.plot(x, np.minimum(peak_flop_per_s, x * bytes_per_s) / 1e9, "k-", lw=2,
            label=f"roof: {peak_flop_per_s / 1e9:.0f} GFLOP/s peak, {bytes_per_s / 1e9:.1f} GB/s")
    ax.axvline(ridge, color="0.5", ls=":", lw=1)
    ax.text(ridge, peak_flop_per_s / 1e9 * 1.15, f"ridge {ridge:.1f} FLOP/B", ha="center", fontsize=8)
    if points is not None:
        for _, p in points.iterrows():
            # named in the legend: labels next to close points would overlap
            ax.plot(p["intensity"], p["flop_per_s"] / 1e9, "o", ms=7, label=p.get("label") or None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved, log scale)")
    ax.set_ylabel("attainable throughput (GFLOP/s, log scale)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
