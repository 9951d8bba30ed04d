"""Speedup, efficiency, and the baseline a sceptic would pick.

McSherry, Isard and Murray ("Scalability! But at what COST?", HotOS 2015) showed that many
systems that "scale" never beat one well-used core. So next to every scaled-out run, labkit
reports a *single plain process that uses all the cores the workers use*, on the same global
batch. A data-parallel run is only worth its complexity if it beats that.

- :func:`summarize`: mean (and spread) over trials and rounds, one row per configuration.
- :func:`with_speedups`: adds ``speedup`` (against one worker), ``ideal_speedup``,
  ``efficiency`` = speedup / ideal, ``baseline_throughput`` (the single process with the same
  cores and global batch), ``vs_baseline`` = throughput / baseline_throughput, and
  ``beats_baseline``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

CONFIG = ["mode", "model", "scaling", "workers", "threads_per_worker", "cores_used", "per_worker_batch", "global_batch"]


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: means over trials/rounds (``throughput_std``, ``n_runs`` kept)."""
    if runs.empty:
        raise ValueError("no runs to summarize")
    g = runs.groupby(CONFIG, as_index=False, dropna=False)
    out = g.agg(throughput=("throughput", "mean"), throughput_std=("throughput", "std"),
                step_time_mean=("step_time_mean", "mean"), step_time_p50=("step_time_p50", "median"),
                step_time_p95=("step_time_p95", "median"), final_loss=("final_loss", "mean"),
                final_accuracy=("final_accuracy", "mean"), time_to_target_s=("time_to_target_s", "mean"),
                n_runs=("throughput", "size"))
    return with_speedups(out)


def with_speedups(table: pd.DataFrame) -> pd.DataFrame:
    """Add speedup, ideal speedup, efficiency and the single-process comparison to a summary
    (or to the raw runs table: then each run is compared with the mean of its reference)."""
    t = table.copy()
    hv = t[t["mode"] == "horovod"]
    if hv.empty:
        raise ValueError("the table has no Horovod runs to compare against")
    unit = int(hv["threads_per_worker"].min())  # the cores of one worker
    t["ideal_speedup"] = (t["cores_used"] // unit).clip(lower=1)
    one = hv[hv["workers"] == 1].groupby(["model", "scaling", "per_worker_batch"])["throughput"].mean()
    single = t[t["mode"] == "single-process"].groupby(["model", "cores_used", "global_batch"])["throughput"].mean()

    def reference(row):
        batch = row["global_batch"] if row["scaling"] == "strong" else row["global_batch"] // row["ideal_speedup"]
        return one.get((row["model"], row["scaling"], batch), np.nan)

    def baseline(row):
        if row["cores_used"] == unit:  # with one worker's cores, the 1-worker run is the baseline
            return one.get((row["model"], row["scaling"], row["global_batch"] if row["scaling"] == "strong"
                            else row["per_worker_batch"]), np.nan)
        return single.get((row["model"], row["cores_used"], row["global_batch"]), np.nan)

    t["reference_throughput"] = t.apply(reference, axis=1)
    t["speedup"] = t["throughput"] / t["reference_throughput"]
    t["efficiency"] = t["speedup"] / t["ideal_speedup"]
    t["baseline_throughput"] = t.apply(baseline, axis=1)
    t["vs_baseline"] = t["throughput"] / t["baseline_throughput"]
    t["beats_baseline"] = t["vs_baseline"] > 1.0
    return t
