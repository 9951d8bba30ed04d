"""The network lesson: how link bandwidth (and latency) set data-parallel efficiency, measured on
the namespaced cluster and predicted by :mod:`labkit.scaling.model`.

    c = labkit.cluster.up(hosts=2)
    table = sweep(c, links=["unshaped", "1gbit", "100mbit"], models=["cnn", "mlp"])
    plot_efficiency_vs_bandwidth(table)

One Horovod job (:func:`launch.run` with one worker per host) runs the whole sweep: rank 0 first
times each model's purely local step (forward, backward, update, no allreduce) while the others
wait, the model's compute time; then for every link shape this process shapes the cluster's
links (:mod:`labkit.cluster.shape`), measures what TCP carries each way with both directions
loaded (``iperf3 --bidir``, as in a ring allreduce), and the workers train the scaling
workload's models (:mod:`labkit.scaling.workload`) with averaged gradients. The table has one
row per model and link: the measured step, efficiency (= compute time / p-worker step, weak
scaling) and the model's prediction for the same link,

    predicted step = compute (shared) + allreduce(gradient bytes, p, Network.from_link(rate, delay, goodput))

with the goodput measured on that link, and the compute time of the workers computing together
(``compute_shared_s``): the namespaced hosts share this machine's cores (and whatever else runs
on them), so each worker computes more slowly than one worker alone (``compute_s``), whatever
the network. To show what the *network* costs, ``efficiency`` is compute (shared) ÷ step: the
fraction of a step spent computing, which is the scaling efficiency on a real cluster, where
the two compute times are equal. ``scaling_efficiency`` (compute alone ÷ step) is the
efficiency against one worker alone on this machine, cores and all. The unshaped veth link is predicted from
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
from labkit.scaling.workload import RunSpec

#: Trainable parameters of the scaling workload's models at 32×32 inputs
#: (``labkit.scaling.workload.parameter_count``, which needs TensorFlow: tests check they agree).
_PARAMS = {"cnn": 66_218, "mlp": 1_841_162}

#: The table's columns, one row per (model, link).
COLUMNS = ["model", "params", "gradient_bytes", "link", "rate_bps", "delay_s", "goodput_bps", "workers",
           "per_worker_batch", "compute_s", "compute_shared_s", "step_s", "step_p95_s", "throughput", "efficiency",
           "predicted_step_s", "predicted_efficiency", "error", "predicted_nominal_s", "nominal_error",
           "scaling_efficiency"]
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


def sweep_worker(specs: list[RunSpec], links: int, sync_dir: str, calibrate: list[bool]) -> dict | None:
    """What every worker runs: the whole sweep in one Horovod job (one start-up, not one per link).

    Rank 0 first times ``steps`` purely local steps of each model (no allreduce) while the other
    ranks wait: the compute time of one worker alone. Then, for each link, rank 0 tells the
    launcher it is ready (``ready.<i>`` in ``sync_dir``) and waits for ``go.<i>``, written once
    the links are shaped. Per model, every rank first computes local steps at once (the compute
    time when the hosts' workers share this machine's cores, under the load of that moment; on a
    real cluster it equals the time alone), then all train with averaged gradients; rank 0 times
    every step (the models train only to be timed; their weights are not kept). Returns rank 0's
    timings (None on other ranks).
    """
    import horovod.tensorflow as hvd
    import keras
    import tensorflow as tf

    from labkit import distributed
    from labkit.scaling.workload import allreduce_timings, build_model, make_dataset

    rank, size = hvd.rank(), hvd.size()
    sync = Path(sync_dir)
    runs = []
    for spec in specs:
        x_all, y_all = make_dataset(spec.dataset_size, spec.image_size, spec.seed)
        x, y = x_all[rank::size], y_all[rank::size]
        model = build_model(spec.model, spec.image_size, spec.seed)
        opt = keras.optimizers.SGD(spec.base_lr, momentum=0.9)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def make(average, model=model, opt=opt, loss_fn=loss_fn):
            def step(xb, yb):
                with tf.GradientTape() as tape:
                    loss = loss_fn(yb, model(xb, training=True))
                grads = tape.gradient(loss, model.trainable_variables)
                if average:
                    grads = distributed.average_gradients(grads)
                opt.apply_gradients(zip(grads, model.trainable_variables))
                return loss
            return tf.function(step)

        distributed.broadcast_state(model, opt)
        runs.append((spec, model, make(False), make(True), x, y))

    def batches(spec, x, y, n):
        b = spec.per_worker_batch
        for i in range(n):
            lo = (i * b) % max(1, len(x) - b + 1)
            yield tf.constant(x[lo:lo + b]), tf.constant(y[lo:lo + b])

    def timed(step, spec, x, y):
        times = []
        for xb, yb in batches(spec, x, y, spec.warmup_steps + spec.steps):
            t0 = time.perf_counter()
            float(step(xb, yb))  # waits for the step, its allreduce included
            times.append(time.perf_counter() - t0)
        return times[spec.warmup_steps:]

    out = {"compute": {}, "compute_shared": {}, "steps": {}, "allreduce": {}}
    for spec, _, local, _, x, y in runs:  # rank 0 alone, the others idle
        if rank == 0:
            out["compute"][spec.model] = timed(local, spec, x, y)
        hvd.allreduce(tf.constant(0.0), name=f"labkit.net.compute.{spec.model}")
    for i in range(links):
        if rank == 0:
            (sync / f"ready.{i}").touch()
            while not (sync / f"go.{i}").exists():
                time.sleep(0.05)
        hvd.allreduce(tf.constant(0.0), name=f"labkit.net.link.{i}")  # every rank waits for the shaped link
        for spec, _, local, averaged, x, y in runs:
            # every rank computing at once, right before the real steps (the same load on the
            # shared cores), then the real steps with averaged gradients
            out["compute_shared"][(i, spec.model)] = timed(local, spec, x, y)
            hvd.allreduce(tf.constant(0.0), name=f"labkit.net.shared.{i}.{spec.model}")
            out["steps"][(i, spec.model)] = timed(averaged, spec, x, y)
            launch.progress(i + 1, links, desc=f"link {i + 1}/{links}")
        if calibrate[i]:
            out["allreduce"][i] = allreduce_timings(repeats=3)
    return out if rank == 0 else None


def _coordinate(cluster: Cluster, exp: "NetworkSweep", sync: Path, links: list, shapes: list, stop, say) -> None:
    """The launcher's side: when rank 0 is ready for link i, shape it, measure goodput, say go."""
    hosts = launch._rank_hosts(exp.hosts or cluster.hosts_arg(), 2)
    for i, bits in enumerate(links):
        while not (sync / f"ready.{i}").exists():
            if stop.is_set():
                return
            time.sleep(0.05)
        info = shaping.shape(cluster, bits, exp.delay)
        if len(hosts) > 1:
            info["goodput_bps"] = shaping.goodput(cluster, hosts[0], hosts[1], exp.goodput_seconds,
                                                  both_ways=True)
        shapes.append(info)
        say(f"— {info['label']}: TCP goodput {info.get('goodput_bps', float('nan')) / 1e6:.1f} Mbit/s "
            f"(each way, both loaded)")
        (sync / f"go.{i}").touch()


def sweep(cluster: Cluster, exp: NetworkSweep | None = None, timeout: float = 600, echo: bool = True,
          **overrides) -> pd.DataFrame:
    """Measure and predict efficiency for every link shape and model; return the tidy table.

    One Horovod job runs the whole sweep (:func:`sweep_worker`); between links, this process
    reshapes the links and measures goodput while the workers wait. The links are left unshaped
    afterwards. ``overrides`` set :class:`NetworkSweep` fields.
    """
    import tempfile
    import threading

    exp = exp or NetworkSweep()
    for k, v in overrides.items():
        setattr(exp, k, v)
    hosts = exp.hosts or cluster.hosts_arg()
    workers = sum(launch._slots(hosts).values())
    links = [shaping.parse_rate(link) for link in exp.links]

    def say(text):
        if echo:
            print(text, flush=True)

    shapes: list[dict] = []
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="labkit-netsweep-") as sync:
        coordinator = threading.Thread(target=_coordinate, args=(cluster, exp, Path(sync), links, shapes, stop, say),
                                       daemon=True)
        coordinator.start()
        try:
            say(f"— one Horovod job, {workers} workers on {hosts}; compute time first, then each link")
            job = launch.run(sweep_worker, exp.specs(), len(links), sync, [b is None for b in links], np=workers,
                             hosts=hosts, threads=exp.threads, timeout=timeout, echo=echo, progress_bar=echo,
                             cluster=cluster)[0]
        finally:
            stop.set()
            coordinator.join(timeout=30)
            shaping.shape(cluster, None)
    params = _PARAMS
    rows = []
    for i, (bits, info) in enumerate(zip(links, shapes)):
        delay = info["delay_s"] or 0.0
        goodput = info.get("goodput_bps", float("nan"))
        if i in job["allreduce"]:  # the unshaped link: predicted from allreduces timed on it
            net = sm.fit_alpha_beta(pd.DataFrame(job["allreduce"][i]), name="veth, unshaped")
        else:
            net = sm.Network.from_link(bits, delay, goodput=goodput / bits if goodput == goodput else sm.TCP_GOODPUT)
        for spec in exp.specs():
            model = spec.model
            compute = float(np.mean(job["compute"][model]))
            shared = float(np.mean(job["compute_shared"][(i, model)]))
            times = np.asarray(job["steps"][(i, model)])
            step = float(times.mean())
            nbytes = params[model] * 4
            pred = shared + float(sm.allreduce_time(nbytes, workers, net))
            # the model as it was: the nominal rate, one latency step per ring hop
            nominal = (shared + 2 * (workers - 1) * delay + 2 * (workers - 1) / workers * nbytes / (bits / 8)
                       if bits else float("nan"))
            rows.append({"model": model, "params": params[model], "gradient_bytes": nbytes, "link": info["label"],
                         "rate_bps": bits, "delay_s": delay, "goodput_bps": goodput, "workers": workers,
                         "per_worker_batch": exp.per_worker_batch, "compute_s": compute,
                         "compute_shared_s": shared, "step_s": step,
                         "step_p95_s": float(np.percentile(times, 95)),
                         "throughput": workers * exp.per_worker_batch / step, "efficiency": shared / step,
                         "predicted_step_s": pred, "predicted_efficiency": shared / pred, "error": pred / step - 1,
                         "predicted_nominal_s": nominal, "nominal_error": nominal / step - 1,
                         "scaling_efficiency": compute / step})
            say(f"   {info['label']}, {model}: step {1e3 * step:.1f} ms measured, {1e3 * pred:.1f} ms predicted "
                f"({100 * (pred / step - 1):+.0f} %), efficiency {100 * shared / step:.0f} %")
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


def recorded_info() -> str:
    """When, how and under what load the recorded sweep was taken (one line)."""
    try:
        meta = json.loads(RECORDED.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return "recorded sweep (no metadata)"
    env = meta.get("environment", {})
    return (f"recorded {env.get('time_utc', '?')} on {env.get('cores', '?')} cores at load average "
            f"{env.get('load_average_1m', float('nan')):.1f} (other jobs were running), with: {meta.get('command', '?')}")


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def _x(table: pd.DataFrame) -> np.ndarray:
    """Link rate in Mbit/s; the unshaped veth is drawn at its measured goodput."""
    rate = table["rate_bps"].astype(float)
    return np.where(rate.notna(), rate, table["goodput_bps"].astype(float)) / 1e6


def plot_efficiency_vs_bandwidth(table: pd.DataFrame, title: str = ""):
    """Left: efficiency (compute ÷ step, the share of a step spent computing) against link
    bandwidth, measured (points) and predicted (lines), per model. Right: step time, measured
    against predicted, with the old nominal-rate prediction."""
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
    a.set_ylabel("efficiency: compute ÷ step (%)")
    a.set_ylim(0, 110)
    a.set_title(title or f"Efficiency vs bandwidth, {int(table['workers'].iloc[0])} workers on separate hosts")
    b.set_yscale("log")
    b.set_ylabel("time per training step (ms, log scale)")
    b.set_title("Step time: measured vs the analytic model")
    fig.tight_layout()
    return fig
