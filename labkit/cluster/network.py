"""The network lesson: how link bandwidth (and latency) set data-parallel efficiency, measured on
the namespaced cluster and predicted by :mod:`labkit.scaling.model`.

    c = labkit.cluster.up(hosts=2)
    table = sweep(c, links=["unshaped", "1gbit", "100mbit"], models=["cnn", "mlp"])
    plot_efficiency_vs_bandwidth(table)

For every link shape the sweep shapes the cluster's links (:mod:`labkit.cluster.shape`),
measures what TCP really carries with iperf3, and trains the scaling workload
(:mod:`labkit.scaling.workload`) on one worker per host with :func:`labkit.launch.run`. One
worker alone on the first host gives each model's compute time. The table has one row per model
and link: the measured step, efficiency (= 1-worker step / p-worker step, weak scaling) and the
model's prediction for the same link,

    predicted step = compute + allreduce(gradient bytes, p, Network.from_link(rate, delay, goodput))

with the goodput iperf3 measured on that link. The unshaped veth link is predicted from
allreduces timed on it (:func:`labkit.scaling.model.fit_alpha_beta`). ``predicted_nominal_s``
is what the model said before it knew about goodput and latency steps (the nominal tc rate,
one step per ring hop), to show why that was wrong.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from labkit import launch
from labkit.cluster import shape as shaping
from labkit.cluster.netns import Cluster
from labkit.scaling import model as sm
from labkit.scaling.workload import RunSpec, parameter_count, worker_job

#: The table's columns, one row per (model, link).
COLUMNS = ["model", "params", "gradient_bytes", "link", "rate_bps", "delay_s", "goodput_bps", "workers",
           "per_worker_batch", "compute_s", "step_s", "step_p95_s", "throughput", "efficiency",
           "predicted_step_s", "predicted_efficiency", "error", "predicted_nominal_s", "nominal_error"]
#: Where a run recorded on the reference machine is kept, for notebooks that run without root.
RECORDED = Path(__file__).with_name("data") / "network_sweep.csv"


@dataclass
class NetworkSweep:
    """What to measure: link shapes × models, ``per_worker_batch`` samples per worker and step."""

    links: list[str] = field(default_factory=lambda: ["unshaped", "1gbit", "100mbit"])
    models: list[str] = field(default_factory=lambda: ["cnn", "mlp"])
    delay: str | None = None
    per_worker_batch: int = 32
    steps: int = 10
    warmup_steps: int = 3
    threads: int = 1
    hosts: str | None = None            # default: one worker on each of the cluster's hosts
    goodput_seconds: float = 1.5

    def specs(self) -> list[RunSpec]:
        return [RunSpec(model=m, per_worker_batch=self.per_worker_batch, steps=self.steps,
                        warmup_steps=self.warmup_steps, dataset_size=512) for m in self.models]


def measure(specs: list[RunSpec], calibrate: bool = False) -> dict:
    """What each worker runs: the scaling workload, plus the models' parameter counts (so that the
    process that plans and plots never imports TensorFlow)."""
    job = worker_job(specs, 1, calibrate, False)
    job["params"] = {s.model: parameter_count(s.model, s.image_size) for s in specs}
    return job


def _step_times(job: dict) -> dict[str, tuple[float, float]]:
    """Rank 0's mean and p95 step time per model, warm-up left out."""
    out = {}
    for rec in job["records"]:
        timed = np.asarray(rec.step_seconds[rec.spec["warmup_steps"]:])
        out[rec.spec["model"]] = (float(timed.mean()), float(np.percentile(timed, 95)))
    return out


def sweep(cluster: Cluster, exp: NetworkSweep | None = None, timeout: float = 600, echo: bool = True,
          **overrides) -> pd.DataFrame:
    """Measure and predict efficiency for every link shape and model; return the tidy table.

    The links are left unshaped afterwards. ``overrides`` set :class:`NetworkSweep` fields.
    """
    exp = exp or NetworkSweep()
    for k, v in overrides.items():
        setattr(exp, k, v)
    hosts = exp.hosts or cluster.hosts_arg()
    workers = sum(launch._slots(hosts).values())
    first = launch._rank_hosts(hosts, workers)[0]
    receiver = next((h for h in launch._rank_hosts(hosts, workers) if h != first), None)
    specs = exp.specs()

    def say(text):
        if echo:
            print(text, flush=True)

    try:
        shaping.shape(cluster, None)
        say(f"— compute: 1 worker on {first}")
        base = launch.run(measure, specs, np=1, hosts=f"{first}:1", threads=exp.threads,
                          timeout=timeout, echo=False)[0]
        params = base["params"]
        compute = {m: t[0] for m, t in _step_times(base).items()}
        rows = []
        for link in exp.links:
            bits = shaping.parse_rate(link)
            info = shaping.shape(cluster, bits, exp.delay)
            delay = info["delay_s"] or 0.0
            goodput = shaping.goodput(cluster, first, receiver, exp.goodput_seconds) if receiver else float("nan")
            say(f"— {info['label']}: TCP goodput {goodput / 1e6:.1f} Mbit/s; {workers} workers on {hosts}")
            calibrate = bits is None  # the unshaped link is predicted from allreduces timed on it
            job = launch.run(measure, specs, calibrate, np=workers, hosts=hosts, threads=exp.threads,
                             timeout=timeout, echo=False)[0]
            if calibrate:
                net = sm.fit_alpha_beta(pd.DataFrame(job["allreduce"]), name="veth, unshaped")
            else:
                net = sm.Network.from_link(bits, delay, goodput=goodput / bits if goodput == goodput else sm.TCP_GOODPUT)
            for model, (step, p95) in _step_times(job).items():
                nbytes = params[model] * 4
                pred = compute[model] + float(sm.allreduce_time(nbytes, workers, net))
                if bits:  # the model as it was: nominal rate, one latency step per ring hop
                    nominal = compute[model] + 2 * (workers - 1) * delay + 2 * (workers - 1) / workers * nbytes / (bits / 8)
                else:
                    nominal = float("nan")
                rows.append({"model": model, "params": params[model], "gradient_bytes": nbytes, "link": info["label"],
                             "rate_bps": bits, "delay_s": delay, "goodput_bps": goodput, "workers": workers,
                             "per_worker_batch": exp.per_worker_batch, "compute_s": compute[model], "step_s": step,
                             "step_p95_s": p95, "throughput": workers * exp.per_worker_batch / step,
                             "efficiency": compute[model] / step, "predicted_step_s": pred,
                             "predicted_efficiency": compute[model] / pred, "error": pred / step - 1,
                             "predicted_nominal_s": nominal, "nominal_error": nominal / step - 1})
                say(f"   {model}: step {1e3 * step:.1f} ms measured, {1e3 * pred:.1f} ms predicted "
                    f"({100 * (pred / step - 1):+.0f} %), efficiency {100 * compute[model] / step:.0f} %")
    finally:
        shaping.shape(cluster, None)
    return pd.DataFrame(rows, columns=COLUMNS)


def save(table: pd.DataFrame, folder: str | os.PathLike, exp: NetworkSweep | None = None) -> dict[str, Path]:
    """``network.csv`` (the table) and ``network.json`` (table, settings, machine, time)."""
    from labkit.scaling.harness import environment

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / "network.csv", "json": folder / "network.json"}
    table.to_csv(paths["csv"], index=False)
    paths["json"].write_text(json.dumps({"environment": environment(), "sweep": asdict(exp) if exp else {},
                                         "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                         "table": json.loads(table.to_json(orient="records"))}, indent=2))
    return paths


def recorded() -> pd.DataFrame:
    """A sweep recorded on the 2-core reference machine as root (for runs without root)."""
    return pd.read_csv(RECORDED)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def _x(table: pd.DataFrame) -> np.ndarray:
    """Link rate in Mbit/s; the unshaped veth is drawn at its measured goodput."""
    rate = table["rate_bps"].astype(float)
    return np.where(rate.notna(), rate, table["goodput_bps"].astype(float)) / 1e6


def plot_efficiency_vs_bandwidth(table: pd.DataFrame, title: str = ""):
    """Left: scaling efficiency against link bandwidth, measured (points) and predicted (lines), per
    model. Right: step time, measured against predicted, with the old nominal-rate prediction."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, (model, g) in enumerate(table.groupby("model", sort=False)):
        g = g.assign(x=_x(g)).sort_values("x")
        color = f"C{i}"
        label = f"{model} ({g['params'].iloc[0] / 1e6:.2g} M parameters)"
        a.plot(g["x"], 100 * g["efficiency"], "o", color=color, ms=8, label=f"{label}: measured")
        a.plot(g["x"], 100 * g["predicted_efficiency"], "-", color=color, alpha=0.7, label=f"{label}: predicted")
        b.plot(g["x"], 1e3 * g["step_s"], "o", color=color, ms=8, label=f"{model}: measured")
        b.plot(g["x"], 1e3 * g["predicted_step_s"], "-", color=color, alpha=0.7, label=f"{model}: predicted")
        if g["predicted_nominal_s"].notna().any():
            b.plot(g["x"], 1e3 * g["predicted_nominal_s"], ":", color=color, alpha=0.7,
                   label=f"{model}: nominal rate, 1 step per hop (old model)")
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("link bandwidth (Mbit/s, log scale; unshaped veth at its measured TCP goodput)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    a.set_ylabel("scaling efficiency (%)")
    a.set_ylim(0, 110)
    a.set_title(title or f"Efficiency vs bandwidth, {int(table['workers'].iloc[0])} workers on separate hosts")
    b.set_yscale("log")
    b.set_ylabel("time per training step (ms, log scale)")
    b.set_title("Step time: measured vs the analytic model")
    fig.tight_layout()
    return fig
