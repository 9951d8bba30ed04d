"""Figures for scaling experiments. Each function takes tidy data (and, where it draws one
panel, an optional ``ax``) and returns the matplotlib Figure; none calls ``plt.show()``.

- :func:`plot_scaling`: throughput, speedup against ideal, and efficiency against worker count,
  with the single-process baseline (same cores, same global batch) marked.
- :func:`plot_vs_baseline`: scaled-out throughput against the single process with the same cores.
- :func:`plot_convergence`: loss against epochs and against wall time, one line per worker count.
- :func:`plot_timeline_steps`: each step split into compute, negotiation, waiting and allreduce.
- :func:`plot_model_efficiency`: the analytic model's efficiency out to 512 workers, with
  published or measured points.
- :func:`plot_published_comparison`: published against predicted efficiencies, side by side.
- :func:`plot_step_anatomy`: what a step is made of, per model, at one worker count.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

MODE_STYLE = {"horovod": dict(marker="o", ls="-", color="C0", label="Horovod workers"),
              "mirrored": dict(marker="s", ls="--", color="C2", label="MultiWorkerMirroredStrategy"),
              "single-process": dict(marker="*", ls=":", color="C3", ms=11,
                                     label="single process, same cores (baseline)")}
PART_COLORS = {"compute_s": "C0", "negotiation_s": "C1", "waiting_s": "C7", "allreduce_s": "C3",
               "straggler_s": "C4", "exposed_s": "C3", "hidden_s": "C9"}


def _axes(ax, figsize=(6, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_scaling(summary: pd.DataFrame, model: str | None = None) -> plt.Figure:
    """Three panels against worker count (x = cores used): throughput, speedup vs ideal, efficiency.

    ``summary`` is :func:`labkit.scaling.summarize` output. Points of the single-process baseline
    sit at the number of cores (threads) they use, so each Horovod point has its sceptic's point
    above or below it.
    """
    data = summary if model is None else summary[summary["model"] == model]
    models = list(dict.fromkeys(data["model"]))
    fig, axes = plt.subplots(len(models), 3, figsize=(13, 3.6 * len(models)), squeeze=False)
    for row, name in zip(axes, models):
        d = data[data["model"] == name]
        for mode, style in MODE_STYLE.items():
            m = d[d["mode"] == mode].sort_values("ideal_speedup")
            if m.empty:
                continue
            x = m["ideal_speedup"]
            row[0].errorbar(x, m["throughput"], yerr=m.get("throughput_std"), capsize=3, **style)
            row[1].plot(x, m["speedup"], **style)
            row[2].plot(x, 100 * m["efficiency"], **style)
        xs = np.array(sorted(d["ideal_speedup"].unique()))
        row[1].plot(xs, xs, color="gray", lw=1, label="ideal (linear)")
        row[2].axhline(100, color="gray", lw=1, label="ideal")
        row[0].set_ylabel("throughput (samples/s)")
        row[0].set_ylim(bottom=0)  # from zero, so that small differences don't look large
        row[1].set_ylabel("speedup over 1 worker")
        row[2].set_ylabel("scaling efficiency (%)")
        row[2].set_ylim(0, max(110, float(100 * d["efficiency"].max()) + 10))
        for ax, title in zip(row, ("Throughput", "Speedup vs ideal", "Efficiency = speedup / ideal")):
            ax.set_xlabel("cores used (= Horovod workers)")
            ax.set_xticks(xs)
            ax.set_title(f"{title} — {name}", fontsize=10)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_vs_baseline(summary: pd.DataFrame, ax=None) -> plt.Figure:
    """Bars: each scaled-out configuration's throughput against the single process with the same
    cores and global batch (McSherry et al.'s COST question: does scaling out ever beat it?)."""
    fig, ax = _axes(ax, (7, 4))
    rows = summary[(summary["mode"] != "single-process") & summary["baseline_throughput"].notna()]
    rows = rows.sort_values(["model", "cores_used", "mode"])
    labels = [f"{r.model}\n{r.mode} ×{r.workers}" for r in rows.itertuples()]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, rows["throughput"], 0.4, label="scaled out", color="C0")
    ax.bar(x + 0.2, rows["baseline_throughput"], 0.4, label="single process, same cores", color="C3")
    for xi, r in zip(x, rows.itertuples()):
        ax.annotate(f"{r.vs_baseline:.2f}×", (xi, max(r.throughput, r.baseline_throughput)),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("throughput (samples/s)")
    ax.set_title("Does scaling out beat one process with the same cores?\n(label: scaled-out ÷ baseline)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_convergence(curves: pd.DataFrame, model: str | None = None, mode: str = "horovod",
                     trial: int = 0, smooth: int = 5) -> plt.Figure:
    """Training loss against epochs (left) and against wall time (right), one line per worker count.

    With the linear scaling rule, more workers mean a larger global batch and learning rate: per
    epoch they take fewer, larger steps. ``smooth`` is a rolling mean over steps.
    """
    d = curves[(curves["mode"] == mode) & (curves["trial"] == trial)]
    if model is not None:
        d = d[d["model"] == model]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for (workers, gb), g in d.groupby(["workers", "global_batch"]):
        g = g.drop_duplicates("step").sort_values("step")
        loss = g["loss"].rolling(smooth, min_periods=1).mean()
        label = f"{workers} worker(s), global batch {gb}, lr {g['learning_rate'].iloc[-1]:.3g}"
        a.plot(g["epoch"], loss, label=label)
        b.plot(g["wall_time_s"], loss, label=label)
    a.set_xlabel("epochs (samples seen / data set size)")
    b.set_xlabel("wall time (s)")
    a.set_ylabel(f"training loss (rolling mean of {smooth} steps)")
    a.set_title(f"Loss vs epochs{' — ' + model if model else ''}")
    b.set_title("Loss vs wall time")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    a.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_timeline_steps(steps: pd.DataFrame, ax=None, skip: int = 1, title: str = "") -> plt.Figure:
    """Stacked bars, one per step: compute, negotiation, waiting and allreduce (milliseconds),
    from :func:`labkit.scaling.timeline.step_breakdown`. The first ``skip`` steps are left out."""
    fig, ax = _axes(ax, (8, 3.8))
    s = steps.iloc[skip:]
    bottom = np.zeros(len(s))
    names = {"compute_s": "compute (forward + backward)", "negotiation_s": "negotiation (waiting for all ranks)",
             "waiting_s": "waiting (for the next cycle)", "allreduce_s": "allreduce (copy + transfer)"}
    for col, label in names.items():
        vals = 1000 * s[col].fillna(0).to_numpy()
        ax.bar(s["step"], vals, bottom=bottom, label=label, color=PART_COLORS[col])
        bottom += vals
    ax.set_xlabel("training step (rank 0's timeline)")
    ax.set_ylabel("milliseconds")
    ax.set_title(title or "Where each step's time goes (Horovod timeline)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_model_efficiency(predicted: pd.DataFrame, points: pd.DataFrame | None = None, ax=None,
                          title: str = "Predicted scaling efficiency", points_label: str = "published") -> plt.Figure:
    """The model's efficiency against worker count (log scale), one line per model; ``points``
    (columns model, workers, efficiency) are drawn as markers in the same colours."""
    fig, ax = _axes(ax, (7, 4.2))
    colors = {}
    for i, (name, g) in enumerate(predicted.groupby("model", sort=False)):
        colors[name] = f"C{i}"
        ax.plot(g["workers"], 100 * g["efficiency"], color=colors[name], label=f"{name} (model)")
    if points is not None and not points.empty:
        for marker, (name, g) in zip("osD^v<>", points.groupby("model", sort=False)):  # equal points stay visible
            ax.plot(g["workers"], 100 * g["efficiency"], marker, ms=8, mfc="none", mew=2,
                    color=colors.get(name, "k"), label=f"{name} ({points_label})")
    ax.set_xscale("log", base=2)
    ticks = sorted(predicted["workers"].unique())
    ax.set_xticks(ticks, [str(int(t)) for t in ticks])
    ax.set_xlabel("workers")
    ax.set_ylabel("scaling efficiency (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_published_comparison(table: pd.DataFrame, ax=None) -> plt.Figure:
    """Grouped bars: Horovod's published efficiency next to the model's, per model and GPU count
    (``table`` from :func:`labkit.scaling.model.compare_published`)."""
    fig, ax = _axes(ax, (7.5, 4))
    labels = [f"{r.model}\n{r.workers} GPUs" for r in table.itertuples()]
    x = np.arange(len(table))
    ax.bar(x - 0.2, 100 * table["published"], 0.4, label="published (Horovod)", color="C7")
    ax.bar(x + 0.2, 100 * table["predicted"], 0.4, label="analytic model", color="C0")
    for xi, r in zip(x, table.itertuples()):
        ax.annotate(f"{100 * r.published:.0f} / {100 * r.predicted:.0f}", (xi, 100 * max(r.published, r.predicted)),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("scaling efficiency (%)")
    ax.set_ylim(0, 110)
    ax.set_title("Horovod's published benchmark vs the analytic model")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def plot_step_anatomy(predicted: pd.DataFrame, workers: int, ax=None) -> plt.Figure:
    """Stacked bars per model at ``workers``: compute, straggler wait, and the allreduce split into
    the part hidden behind backprop and the part that adds to the step."""
    fig, ax = _axes(ax, (7, 4))
    d = predicted[predicted["workers"] == workers]
    x = np.arange(len(d))
    exposed = d["allreduce_s"] - d["hidden_s"]
    parts = [("compute_s", d["compute_s"], "compute (forward + backward)"),
             ("straggler_s", d["straggler_s"], "waiting for the slowest worker"),
             ("exposed_s", exposed, "allreduce, not hidden"),
             ("hidden_s", d["hidden_s"], "allreduce hidden behind backprop (not added)")]
    bottom = np.zeros(len(d))
    for key, vals, label in parts:
        kw = dict(hatch="//", alpha=0.5) if key == "hidden_s" else {}
        ax.bar(x, 1000 * vals.to_numpy(), bottom=bottom, label=label, color=PART_COLORS[key], **kw)
        if key != "hidden_s":
            bottom += 1000 * vals.to_numpy()
    for xi, r in zip(x, d.itertuples()):
        ax.annotate(f"eff. {100 * r.efficiency:.0f}%", (xi, 1000 * (r.step_s + r.hidden_s)), ha="center",
                    va="bottom", fontsize=9)
    ax.set_xticks(x, d["model"])
    ax.set_ylabel("milliseconds per step")
    ax.set_title(f"Anatomy of one step at {workers} workers (model)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
