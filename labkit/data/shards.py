"""Data bigger than memory: write a dataset to on-disk shards, stream it back, and see where the
bytes come from (RAM, the operating system's page cache, or the disk).

- :func:`write_shards` -- arrays → ``shard-NNNNN.x.npy`` / ``.y.npy`` files plus ``manifest.json``.
- :func:`write_synthetic_shards` -- a labelled data set generated shard by shard, so that it
  never has to fit in memory at once.
- :class:`Shards` -- a folder of shards: read one, iterate them, stream mini-batches.
- :func:`drop_from_page_cache` -- ask the kernel to forget the cached pages of some files
  (``posix_fadvise(DONTNEED)``; no root needed), so that the next read comes from the disk.
- :func:`drop_all_caches` -- the whole page cache, through ``/proc/sys/vm/drop_caches`` (root only).
- :func:`cached_fraction` -- how much of a file is in the page cache right now (``mincore``).
- :func:`read_throughput` -- bytes per second reading files; :func:`storage_tiers` measures the
  same shards from RAM, page cache and disk side by side, as a tidy table.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

MANIFEST = "manifest.json"


def _shard_names(i: int) -> tuple[str, str]:
    return f"shard-{i:05d}.x.npy", f"shard-{i:05d}.y.npy"


def _write_manifest(folder: Path, shards: list[dict], features: int, dtype: str) -> dict:
    manifest = {"format": "labkit-shards-1", "features": features, "dtype": dtype,
                "rows": sum(s["rows"] for s in shards), "shards": shards}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def write_shards(folder, x, y, rows_per_shard: int = 10_000) -> dict:
    """Split ``x`` (n, d) and ``y`` (n,) into shards of ``rows_per_shard`` rows in ``folder``.
    Returns the manifest (also written as ``manifest.json``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    shards = []
    for i, start in enumerate(range(0, len(x), rows_per_shard)):
        xs, ys = _shard_names(i)
        np.save(folder / xs, x[start:start + rows_per_shard])
        np.save(folder / ys, y[start:start + rows_per_shard])
        shards.append({"x": xs, "y": ys, "rows": int(len(x[start:start + rows_per_shard]))})
    return _write_manifest(folder, shards, int(x.shape[1]), str(x.dtype))


def write_synthetic_shards(folder, rows: int, features: int = 32, rows_per_shard: int = 50_000,
                           informative: int = 8, seed: int = 0) -> dict:
    """A logistic-model data set (float32 features, 0/1 labels) written shard by shard: only one
    shard is ever in memory, so ``rows`` may exceed RAM. The true weights are stored in the
    manifest (``"w_true"``, bias last)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w = np.zeros(features + 1)
    w[:informative] = rng.choice([-1.0, 1.0], informative) * rng.uniform(0.5, 2.0, informative)
    shards = []
    for i, start in enumerate(range(0, rows, rows_per_shard)):
        n = min(rows_per_shard, rows - start)
        x = rng.standard_normal((n, features), dtype="float32")
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(x @ w[:-1] + w[-1])))).astype("int8")
        xs, ys = _shard_names(i)
        np.save(folder / xs, x)
        np.save(folder / ys, y)
        shards.append({"x": xs, "y": ys, "rows": n})
    manifest = _write_manifest(folder, shards, features, "float32")
    manifest["w_true"] = w.tolist()
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


class Shards:
    """A folder written by :func:`write_shards`: ``len`` shards of ``rows`` rows in all."""

    def __init__(self, folder):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.exists():
            raise FileNotFoundError(f"no {MANIFEST} in {self.folder}: write the shards first "
                                    "(labkit.data.write_shards)")
        self.manifest = json.loads(path.read_text())
        self.rows = self.manifest["rows"]
        self.features = self.manifest["features"]

    def __len__(self) -> int:
        return len(self.manifest["shards"])

    def __repr__(self) -> str:
        return (f"Shards({str(self.folder)!r}: {len(self)} shards, {self.rows} rows × "
                f"{self.features} features, {self.nbytes / 1e6:.1f} MB)")

    @property
    def paths(self) -> list[Path]:
        """Every file of the data set (features and labels)."""
        return [self.folder / s[k] for s in self.manifest["shards"] for k in ("x", "y")]

    @property
    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths)

    def read(self, i: int, mmap_mode: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Shard ``i`` as ``(x, y)``; ``mmap_mode="r"`` maps it instead of reading it."""
        s = self.manifest["shards"][i]
        return (np.load(self.folder / s["x"], mmap_mode=mmap_mode),
                np.load(self.folder / s["y"], mmap_mode=mmap_mode))

    def __iter__(self):
        for i in range(len(self)):
            yield self.read(i)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0):
        """Stream ``(x, y)`` mini-batches over one pass, one shard in memory at a time.

        With ``shuffle``, the shard order and the rows within each shard are shuffled (the usual
        compromise: a full shuffle of data bigger than memory would need random disk reads).
        """
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self)) if shuffle else range(len(self))
        for i in order:
            x, y = self.read(int(i))
            rows = rng.permutation(len(x)) if shuffle else np.arange(len(x))
            for start in range(0, len(x), batch_size):
                idx = rows[start:start + batch_size]
                yield x[idx], y[idx]


# --- the page cache ----------------------------------------------------------------------------
def drop_from_page_cache(paths) -> bool:
    """Ask the kernel to drop these files' pages from the page cache (``posix_fadvise`` with
    ``POSIX_FADV_DONTNEED``, after ``fsync`` so no page is dirty). Any user may do this for files
    they can open. Returns False where the call is not available (not Linux)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def drop_all_caches() -> tuple[bool, str]:
    """Drop the whole page cache (``echo 1 > /proc/sys/vm/drop_caches``): needs root, and slows
    every other program on the machine for a while. Returns ``(done, why_not)``."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return True, ""
    except OSError as exc:
        return False, f"cannot write /proc/sys/vm/drop_caches ({exc.strerror}): it needs root " \
                      "outside a container"


_libc = None


def cached_fraction(path) -> float | None:
    """Fraction of ``path``'s pages that are in the page cache now, from ``mincore(2)``; None where
    that can't be asked (not Linux)."""
    global _libc
    size = os.path.getsize(path)
    if size == 0:
        return 1.0
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            _libc.mmap.restype = ctypes.c_void_p
            _libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                                   ctypes.c_int, ctypes.c_long]
            _libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
            _libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            vec = (ctypes.c_ubyte * pages)()
            if _libc.mincore(addr, size, vec) != 0:
                return None
            return float((np.frombuffer(vec, dtype=np.uint8) & 1).sum()) / pages
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def read_throughput(paths, block: int = 4 << 20) -> dict:
    """Read every file start to end into one reused buffer: ``{bytes, seconds, bytes_per_s}``.
    Nothing is parsed, so this is the storage's speed plus the system-call cost."""
    buf = bytearray(block)
    view = memoryview(buf)
    total = 0
    start = time.perf_counter()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while True:
                n = f.readinto(view)
                if not n:
                    break
                total += n
    seconds = time.perf_counter() - start
    return {"bytes": total, "seconds": seconds, "bytes_per_s": total / seconds if seconds else float("nan")}


def storage_tiers(shards: Shards, drop: str = "fadvise", repeats: int = 1) -> pd.DataFrame:
    """Throughput of the same shard bytes from three places, one row per (source, repeat):

    - ``RAM``: copy the shards' bytes already held in this process's memory;
    - ``page cache``: read the files right after reading them once (the kernel keeps them);
    - ``disk``: read them after dropping them from the cache (``drop="fadvise"`` per file,
      ``"all"`` for the whole cache as root, ``"none"`` to skip). The row's ``note`` says whether
      the drop worked, with the fraction still cached (from ``mincore``).
    """
    paths = shards.paths
    rows = []
    for rep in range(repeats):
        # disk first: drop, check, read
        note = "not dropped"
        if drop == "all":
            done, why = drop_all_caches()
            note = "dropped (drop_caches)" if done else why
        elif drop == "fadvise":
            note = "dropped (posix_fadvise)" if drop_from_page_cache(paths) else "posix_fadvise unavailable"
        before = [cached_fraction(p) for p in paths]
        known = [b for b in before if b is not None]
        cached_before = float(np.mean(known)) if known else np.nan
        if drop != "none":
            r = read_throughput(paths)
            rows.append({"source": "disk", "repeat": rep, **r, "cached_before": cached_before, "note": note})
        r = read_throughput(paths)
        after = [cached_fraction(p) for p in paths]
        known = [a for a in after if a is not None]
        rows.append({"source": "page cache", "repeat": rep, **r,
                     "cached_before": float(np.mean(known)) if known else np.nan, "note": "second read"})
        blob = np.concatenate([np.fromfile(p, dtype=np.uint8) for p in paths])
        dst = np.empty_like(blob)
        np.copyto(dst, blob)  # touch every page of dst first: time the copy, not page faults
        start = time.perf_counter()
        np.copyto(dst, blob)
        seconds = time.perf_counter() - start
        rows.append({"source": "RAM", "repeat": rep, "bytes": blob.nbytes, "seconds": seconds,
                     "bytes_per_s": blob.nbytes / seconds, "cached_before": np.nan,
                     "note": "memcpy of the same bytes"})
        del blob, dst
    return pd.DataFrame(rows)
