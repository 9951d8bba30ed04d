"""Read a Horovod timeline and split each training step into compute and allreduce.

Horovod writes its timeline (``HOROVOD_TIMELINE=file.json``, or ``labkit.launch.run(...,
timeline="file.json")``) from rank 0 in Chrome's trace format: open it at ``chrome://tracing``
or https://ui.perfetto.dev to browse it. Each tensor is a "process" (``pid``) whose activities
are nested ``B``/``E`` events:

- ``NEGOTIATE_ALLREDUCE``: rank 0 has the tensor and waits until *every* rank has it (its ``X``
  marks show which rank reported when). Long negotiation = waiting for a slower worker.
- then, after the background thread's next cycle (``HOROVOD_CYCLE_TIME``), ``ALLREDUCE`` with
  its parts: ``MEMCPY_IN_FUSION_BUFFER``, the transfer (``GLOO_ALLREDUCE`` here; ``NCCL_…``
  on GPUs), ``MEMCPY_OUT_FUSION_BUFFER``; on GPUs also ``QUEUE``/``WAIT_FOR_DATA``.

:func:`read_timeline` returns every activity as a row; :func:`step_breakdown` groups them into
steps (the k-th allreduce of each gradient tensor belongs to step k) and reports per step:
``compute_s`` (from the end of the previous step's allreduce to this step's first negotiation:
forward and backward pass), ``negotiation_s``, ``waiting_s`` (negotiated, not yet reducing) and
``allreduce_s`` (copies and transfer).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

TRANSFER = ("GLOO_ALLREDUCE", "MPI_ALLREDUCE", "NCCL_ALLREDUCE", "MPI_NCCL_ALLREDUCE", "CCL_ALLREDUCE")
WAITING = ("QUEUE", "WAIT_FOR_DATA", "WAIT_FOR_OTHER_TENSOR_DATA")


def _load_events(path: str | os.PathLike) -> list[dict]:
    """Chrome-trace events; tolerates the unterminated array a killed job leaves behind."""
    text = Path(path).read_text().strip()
    if not text:
        raise ValueError(f"{path} is empty: was the job run with the timeline on, and did it run a step?")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = json.loads(text.rstrip(",") + "]")
    return data["traceEvents"] if isinstance(data, dict) else data


def read_timeline(path: str | os.PathLike) -> pd.DataFrame:
    """Every activity in a Horovod timeline: one row per (tensor, activity) interval.

    Columns: ``tensor``, ``activity``, ``start_s``, ``end_s``, ``duration_s``, ``depth``
    (0 = top level, 1 = a part of it), times in seconds from the timeline's start.
    """
    names, stacks, rows = {}, {}, []
    for e in _load_events(path):
        ph, pid = e.get("ph"), e.get("pid")
        if ph == "M" and e.get("name") == "process_name":
            names[pid] = e.get("args", {}).get("name", str(pid))
        elif ph == "B":
            stacks.setdefault(pid, []).append((e["name"], e["ts"]))
        elif ph == "E" and stacks.get(pid):
            name, start = stacks[pid].pop()
            rows.append({"tensor": names.get(pid, str(pid)), "activity": name, "start_s": start / 1e6,
                         "end_s": e["ts"] / 1e6, "depth": len(stacks[pid])})
    t = pd.DataFrame(rows, columns=["tensor", "activity", "start_s", "end_s", "depth"])
    t["duration_s"] = t["end_s"] - t["start_s"]
    return t.sort_values("start_s", ignore_index=True)


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, -np.inf
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def step_breakdown(events: pd.DataFrame, tensors: list[str] | None = None) -> pd.DataFrame:
    """Per training step: ``compute_s``, ``negotiation_s``, ``waiting_s``, ``allreduce_s``
    (``transfer_s`` and ``copy_s`` are its parts), ``step_s`` and ``allreduce_fraction``.

    Only gradient allreduces count (``tensors`` to choose others): one-off allreduces, e.g. of
    metrics, are left out. Steps are numbered in time order across every run in the job.
    The first step has no "previous step", so its compute time is NaN.
    """
    top = events[(events["depth"] == 0) & events["activity"].isin(["NEGOTIATE_ALLREDUCE", "ALLREDUCE"])].copy()
    if top.empty:
        raise ValueError("no allreduce in this timeline")
    if tensors is None:  # the gradients: named after the gradient tape (eager one-offs are just "HorovodAllreduce")
        names = top["tensor"].unique()
        tensors = [n for n in names if "gradient" in n.lower()] or list(names)
    top = top[top["tensor"].isin(tensors)]
    per_step = set(tensors)
    # A grouped allreduce is one tensor per gradient, "<group>_3of10": the group is one step's worth.
    top["group"] = top["tensor"].str.replace(r"_\d+of\d+$", "", regex=True)
    top["occurrence"] = top.groupby(["tensor", "activity"]).cumcount()
    firsts = top.groupby(["group", "occurrence"])["start_s"].min().sort_values()
    order = {key: i for i, key in enumerate(firsts.index)}
    top["step"] = [order[(g, o)] for g, o in zip(top["group"], top["occurrence"])]
    parts = events[events["depth"] >= 1]
    rows, prev_end = [], np.nan
    for step, g in top.groupby("step"):
        neg = g[g["activity"] == "NEGOTIATE_ALLREDUCE"]
        red = g[g["activity"] == "ALLREDUCE"]
        start = g["start_s"].min()
        end = red["end_s"].max() if not red.empty else g["end_s"].max()
        inside = parts[(parts["start_s"] >= start) & (parts["end_s"] <= end) & parts["tensor"].isin(per_step)]
        negotiation = _union(list(zip(neg["start_s"], neg["end_s"])))
        reduce_ = _union(list(zip(red["start_s"], red["end_s"])))
        transfer = _union([(s, e) for s, e, a in zip(inside["start_s"], inside["end_s"], inside["activity"]) if a in TRANSFER])
        waits = _union([(s, e) for s, e, a in zip(inside["start_s"], inside["end_s"], inside["activity"]) if a in WAITING])
        gap = max(0.0, (end - start) - negotiation - reduce_)  # negotiated but not yet reducing (cycle wait)
        rows.append({"step": int(step), "start_s": start, "end_s": end,
                     "compute_s": start - prev_end if np.isfinite(prev_end) else np.nan,
                     "negotiation_s": negotiation, "waiting_s": gap + waits,
                     "allreduce_s": max(0.0, reduce_ - waits), "transfer_s": transfer,
                     "copy_s": max(0.0, reduce_ - waits - transfer)})
        prev_end = end
    t = pd.DataFrame(rows)
    comm = t["negotiation_s"] + t["waiting_s"] + t["allreduce_s"]
    t["step_s"] = t["compute_s"] + comm
    t["allreduce_fraction"] = comm / t["step_s"]
    return t


def summarize_steps(steps: pd.DataFrame, skip: int = 1) -> dict:
    """Mean seconds per step of each part (after ``skip`` warm-up steps), and their shares."""
    s = steps.iloc[skip:] if len(steps) > skip else steps
    parts = ["compute_s", "negotiation_s", "waiting_s", "allreduce_s"]
    means = {k: float(s[k].mean()) for k in parts}
    total = sum(means.values())
    return {**means, "step_s": total, **{k.replace("_s", "_share"): v / total for k, v in means.items()}}
