"""An analytic model of data-parallel step time, to extrapolate past this machine.

One synchronous data-parallel step on ``p`` workers takes

    step(p) = compute · (1 + jitter · √(2 ln p))          # waiting for the slowest worker
            + allreduce(p)                                # ring allreduce of every gradient
            − overlap · min(allreduce(p), compute)        # the part hidden behind backprop

with the α–β cost of a ring allreduce of N parameters of s bytes over links of bandwidth B,
sent in ``k`` fused buffers (Horovod's tensor fusion, 64 MiB by default):

    allreduce(p) = (2(p − 1) · k + 2) · α  +  2(p − 1)/p · N·s / B

- ``α`` (latency per step) and ``B`` (bandwidth) describe the network; the bandwidth term
  barely grows with p (that is why the ring is "bandwidth-optimal"), the latency term grows
  linearly with p.
- The latency count, measured on shaped links (labkit's namespaced cluster): a 2-worker
  allreduce costs about **8 one-way delays**, not 2. Each ring step is a round trip, not a
  one-way trip (Gloo's receiver first tells the sender its buffer is ready, then the data
  comes), and before the ring starts Horovod's coordinator negotiates the tensors (requests to
  rank 0, its response back: two more steps). So on a link with one-way delay d,
  α ≈ 2d (:meth:`Network.from_link`), and for p = 2: (2 + 2) · 2d = 8d.
- ``B`` is what TCP really carries, not the nominal link rate: on a link shaped to R bit/s
  (``tc tbf``), iperf3 measured 0.89–0.95 · R (headers, acknowledgements, the bucket's bursts).
  :meth:`Network.from_link` takes the measured goodput, or :data:`TCP_GOODPUT` by default; with
  the nominal rate the model under-predicts step times by 9–21 % on slow links.
- ``jitter`` is the relative spread of one worker's step time: with p workers a synchronous step
  waits for the slowest, whose delay grows like √(2 ln p) (the expected maximum of p normal
  variables). Without it the model cannot explain why even compute-bound models lose ~10%.
- Scaling efficiency = compute / step(p): 1.0 means p workers are p times faster than one.

The model is calibrated two ways:

- :func:`fit_alpha_beta` from allreduces timed on this machine (the harness's ``allreduce``
  table) and :func:`calibrate_local` from the measured 1- and p-worker step times;
- :func:`fit_published` from Horovod's published benchmark (:data:`PUBLISHED`), where the
  network (25 Gbit/s), the models' sizes and their single-GPU speed are known and only α,
  overlap and jitter are fitted: three numbers shared by all models and both cluster sizes.

Why VGG-16 scales worst: it has 138 M parameters (552 MB of gradients per step) for about the
same compute per image as Inception V3 (23.8 M). Its allreduce takes ~0.35 s at 25 Gbit/s
against ~0.06 s for Inception V3, while a step of compute takes ~0.4 s for both: the network,
not the GPU, sets VGG-16's pace.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

GBIT = 1e9 / 8  # bytes per second in one Gbit/s
FUSION_BYTES = 64 * 1024 * 1024  # Horovod's default HOROVOD_FUSION_THRESHOLD
#: TCP goodput as a fraction of a shaped link's nominal rate (iperf3 on tc tbf links: 0.89–0.95).
TCP_GOODPUT = 0.93
#: Latency steps Horovod adds to each allreduce: the coordinator's negotiation (requests, response).
NEGOTIATION_STEPS = 2
#: One-way delays per latency step: a ring step is a round trip (buffer-ready notice, then data).
DELAYS_PER_STEP = 2


@dataclass(frozen=True)
class Network:
    """The interconnect: ``alpha`` seconds per latency step, ``bandwidth`` in bytes per second."""

    alpha: float
    bandwidth: float
    name: str = ""

    @classmethod
    def from_link(cls, rate_bps: float, one_way_delay_s: float = 0.0, goodput: float = TCP_GOODPUT,
                  base_alpha: float = 0.0, name: str = "") -> "Network":
        """A network of links of nominal ``rate_bps`` bits per second and ``one_way_delay_s``.

        ``goodput`` is the fraction of the rate TCP carries (measure it with iperf3, or keep
        :data:`TCP_GOODPUT`); a latency step costs :data:`DELAYS_PER_STEP` one-way delays plus
        ``base_alpha``, the software stack's own cost per step (fitted from timed allreduces).
        """
        return cls(alpha=base_alpha + DELAYS_PER_STEP * one_way_delay_s, bandwidth=goodput * rate_bps / 8,
                   name=name or f"{rate_bps / 1e6:g} Mbit/s" + (f", {one_way_delay_s * 1e3:g} ms" if one_way_delay_s else ""))


@dataclass(frozen=True)
class Workload:
    """One model on one worker: ``params`` gradients of ``bytes_per_param`` bytes, and
    ``compute_s`` seconds of forward+backward per step (``batch`` samples)."""

    name: str
    params: float
    compute_s: float
    batch: int = 64
    bytes_per_param: int = 4

    @property
    def gradient_bytes(self) -> float:
        return self.params * self.bytes_per_param


@dataclass(frozen=True)
class Overheads:
    """How much of the allreduce hides behind compute (0–1), and the step-time jitter (relative)."""

    overlap: float = 0.0
    jitter: float = 0.0


def latency_steps(workers, buffers: int = 1):
    """How many latency steps (α each) an allreduce of ``buffers`` fused buffers takes: 2(p − 1)
    ring steps per buffer, plus Horovod's negotiation; none alone."""
    p = np.asarray(workers, dtype=float)
    return np.where(p > 1, 2 * (p - 1) * buffers + NEGOTIATION_STEPS, 0.0)


def allreduce_time(nbytes: float, workers, network: Network, fusion_bytes: float = FUSION_BYTES):
    """Seconds for a ring allreduce of ``nbytes`` on ``workers`` workers (array or scalar)."""
    p = np.asarray(workers, dtype=float)
    buffers = max(1, math.ceil(nbytes / fusion_bytes)) if fusion_bytes else 1
    out = latency_steps(p, buffers) * network.alpha + 2 * (p - 1) / p * nbytes / network.bandwidth
    return float(out) if out.ndim == 0 else out


def predict(workloads: list[Workload], network: Network, overheads: Overheads = Overheads(),
            workers=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), fusion_bytes: float = FUSION_BYTES) -> pd.DataFrame:
    """Predicted step time, throughput and efficiency: one row per (model, worker count)."""
    rows = []
    for w in workloads:
        for p in workers:
            comm = float(allreduce_time(w.gradient_bytes, p, network, fusion_bytes))
            wait = w.compute_s * overheads.jitter * math.sqrt(2 * math.log(p)) if p > 1 else 0.0
            hidden = overheads.overlap * min(comm, w.compute_s)
            step = w.compute_s + wait + comm - hidden
            rows.append({"model": w.name, "workers": p, "compute_s": w.compute_s, "straggler_s": wait,
                         "allreduce_s": comm, "hidden_s": hidden, "step_s": step,
                         "throughput": p * w.batch / step, "efficiency": w.compute_s / step,
                         "comm_to_compute": comm / w.compute_s})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Horovod's published benchmark (the validation target)
# --------------------------------------------------------------------------------------------
#: Scaling efficiencies Horovod published for tf_cnn_benchmarks (synthetic data, batch 64 per GPU).
#: - 512 GPUs: Horovod docs, docs/benchmarks.rst and README: "128 servers with 4 Pascal GPUs each
#:   connected by RoCE-capable 25 Gbit/s network. Horovod achieves 90% scaling efficiency for both
#:   Inception V3 and ResNet-101, and 68% scaling efficiency for VGG-16."
#: - 128 GPUs: the earlier README of the same project (Sergeev & Del Balso 2018, arXiv:1802.05799,
#:   period): "32 servers with 4 Pascal GPUs each connected by RoCE-capable 25 Gbit/s network ...
#:   90% scaling efficiency for both Inception V3 and ResNet-101, and 79% ... for VGG-16."
#: The benchmark command in the docs uses ``--batch_size 64`` per GPU.
PUBLISHED = pd.DataFrame([
    {"model": "Inception V3", "workers": 128, "efficiency": 0.90, "source": "Horovod README (32 servers × 4 Pascal GPUs, 25 Gbit/s RoCE)"},
    {"model": "ResNet-101", "workers": 128, "efficiency": 0.90, "source": "Horovod README (32 servers × 4 Pascal GPUs, 25 Gbit/s RoCE)"},
    {"model": "VGG-16", "workers": 128, "efficiency": 0.79, "source": "Horovod README (32 servers × 4 Pascal GPUs, 25 Gbit/s RoCE)"},
    {"model": "Inception V3", "workers": 512, "efficiency": 0.90, "source": "Horovod docs/benchmarks (128 servers × 4 Pascal GPUs, 25 Gbit/s RoCE)"},
    {"model": "ResNet-101", "workers": 512, "efficiency": 0.90, "source": "Horovod docs/benchmarks (128 servers × 4 Pascal GPUs, 25 Gbit/s RoCE)"},
    {"model": "VGG-16", "workers": 512, "efficiency": 0.68, "source": "Horovod docs/benchmarks (128 servers × 4 Pascal GPUs, 25 Gbit/s RoCE)"},
])

#: The published setup: a RoCE-capable 25 Gbit/s network (α is fitted, not published).
PUBLISHED_NETWORK = Network(alpha=0.0, bandwidth=25 * GBIT, name="25 Gbit/s RoCE (Horovod benchmark)")


def _p100_images_per_second() -> dict[str, float]:
    """Single-GPU training speed on a Tesla P100 (Pascal), batch 64, synthetic ImageNet data.

    TensorFlow's published benchmarks (tensorflow.org/performance/benchmarks, "Details for NVIDIA
    DGX-1 (NVIDIA Tesla P100)", training synthetic data, 1 GPU): InceptionV3 142 images/s,
    ResNet-50 219, ResNet-152 91.8, VGG16 154. (A later revision of the page lists ResNet-50 238,
    ResNet-152 95.6, VGG16 132; see :func:`published_workloads`.) ResNet-101 is not listed, so its
    time per image is interpolated linearly in FLOPs between ResNet-50 (3.8 GFLOPs) and ResNet-152
    (11.3 GFLOPs) at ResNet-101's 7.6 GFLOPs (He et al. 2016, Table 1): about 129 images/s. (The
    Horovod docs' own example, ResNet-101 on 16 GPUs, prints 1656.82 images/s, i.e. ~104 per GPU
    *including* 16-GPU scaling losses, which is consistent.)
    """
    return {"Inception V3": 142.0, "ResNet-50": 219.0, "ResNet-152": 91.8, "VGG-16": 154.0}


def published_workloads(revision: str = "first") -> list[Workload]:
    """Inception V3, ResNet-101 and VGG-16 as the Horovod benchmark ran them (batch 64 per GPU).

    Parameter counts: Inception V3 ≈ 23.8 M, ResNet-101 ≈ 44.5 M, VGG-16 ≈ 138 M.
    ``revision="later"`` uses the later TF benchmark page's speeds (a sensitivity check).
    """
    speed = _p100_images_per_second()
    if revision == "later":
        speed = {"Inception V3": 142.0, "ResNet-50": 238.0, "ResNet-152": 95.6, "VGG-16": 132.0}
    t50, t152 = 1 / speed["ResNet-50"], 1 / speed["ResNet-152"]
    t101 = t50 + (t152 - t50) * (7.6 - 3.8) / (11.3 - 3.8)
    batch = 64
    return [Workload("Inception V3", 23.8e6, batch / speed["Inception V3"], batch),
            Workload("ResNet-101", 44.5e6, batch * t101, batch),
            Workload("VGG-16", 138e6, batch / speed["VGG-16"], batch)]


@dataclass(frozen=True)
class Fit:
    """A fitted model: the network, the overheads, and the table of published vs predicted."""

    network: Network
    overheads: Overheads
    table: pd.DataFrame

    @property
    def max_error(self) -> float:
        return float(self.table["error"].abs().max())


def compare_published(network: Network, overheads: Overheads, workloads: list[Workload] | None = None) -> pd.DataFrame:
    """Published and predicted efficiencies side by side (one row per model and GPU count)."""
    workloads = workloads or published_workloads()
    pred = predict(workloads, network, overheads, workers=sorted(PUBLISHED["workers"].unique()))
    t = PUBLISHED.merge(pred, on=["model", "workers"], suffixes=("_published", "_predicted"))
    t = t.rename(columns={"efficiency_published": "published", "efficiency_predicted": "predicted"})
    t["error"] = t["predicted"] - t["published"]
    return t[["model", "workers", "published", "predicted", "error", "compute_s", "allreduce_s",
              "hidden_s", "straggler_s", "comm_to_compute", "source"]]


def fit_published(terms: tuple[str, ...] = ("alpha", "overlap", "jitter"),
                  workloads: list[Workload] | None = None) -> Fit:
    """Fit the named free terms (of α, overlap, jitter) to :data:`PUBLISHED` by least squares.

    The bandwidth (25 Gbit/s), parameter counts and single-GPU speeds are fixed by the sources;
    the terms left out stay at zero.
    """
    from scipy.optimize import least_squares

    workloads = workloads or published_workloads()
    bounds = {"alpha": (0.0, 1e-3), "overlap": (0.0, 1.0), "jitter": (0.0, 0.2)}
    start = {"alpha": 1e-5, "overlap": 0.3, "jitter": 0.01}
    scale = {"alpha": 1e-5, "overlap": 1.0, "jitter": 0.01}  # keep the solver's steps well-sized

    def build(x):
        v = {"alpha": 0.0, "overlap": 0.0, "jitter": 0.0}
        v.update({k: xi * scale[k] for k, xi in zip(terms, x)})
        return replace(PUBLISHED_NETWORK, alpha=float(v["alpha"])), Overheads(float(v["overlap"]), float(v["jitter"]))

    def residuals(x):
        return compare_published(*build(x), workloads)["error"].to_numpy()

    if terms:
        sol = least_squares(residuals, [start[k] / scale[k] for k in terms],
                            bounds=([bounds[k][0] / scale[k] for k in terms], [bounds[k][1] / scale[k] for k in terms]))
        network, overheads = build(sol.x)
    else:
        network, overheads = build([])
    return Fit(network, overheads, compare_published(network, overheads, workloads))


# --------------------------------------------------------------------------------------------
# Calibration from this machine
# --------------------------------------------------------------------------------------------
def fit_alpha_beta(allreduce: pd.DataFrame, name: str = "this machine") -> Network:
    """α and B from timed allreduces (columns ``workers``, ``bytes``, ``seconds``), by least squares on
    seconds = (2(p−1) + 2)·α + 2(p−1)/p · bytes / B (one fused buffer each, as timed)."""
    if allreduce.empty:
        raise ValueError("no allreduce timings: run the experiment with calibrate=True and more than one worker")
    p = allreduce["workers"].to_numpy(float)
    a = np.column_stack([latency_steps(p), 2 * (p - 1) / p * allreduce["bytes"].to_numpy(float)])
    (alpha, inv_b), *_ = np.linalg.lstsq(a, allreduce["seconds"].to_numpy(float), rcond=None)
    return Network(alpha=max(float(alpha), 0.0), bandwidth=1.0 / max(float(inv_b), 1e-15), name=name)


def calibrate_local(summary: pd.DataFrame, allreduce: pd.DataFrame, params: dict[str, int]) -> tuple[Network, dict]:
    """Calibrate the model from this machine's runs.

    - the network from the timed allreduces (:func:`fit_alpha_beta`);
    - each model's compute time from its 1-worker Horovod step time;
    - the overlap and the jitter from the p-worker step times: when a measured step is shorter
      than compute + allreduce, the difference is overlap; when it is longer, the excess is
      "waiting for the slowest worker" (on a shared machine that includes workers competing for
      cores), expressed as jitter so that it grows like √(2 ln p) when extrapolated.

    ``summary`` is :func:`labkit.scaling.baselines.summarize` output; ``params`` maps model name to
    its parameter count. Returns the network and ``{model: (Workload, Overheads)}``.
    """
    net = fit_alpha_beta(allreduce)
    hv = summary[summary["mode"] == "horovod"]
    out = {}
    for model, group in hv.groupby("model"):
        one = group[group["workers"] == 1]
        if one.empty:
            continue
        w = Workload(model, params[model], float(one["step_time_mean"].iloc[0]), int(one["per_worker_batch"].iloc[0]))
        overlaps, jitters = [], []
        for _, row in group[group["workers"] > 1].iterrows():
            p = float(row["workers"])
            comm = float(allreduce_time(w.gradient_bytes, p, net, 0))
            excess = float(row["step_time_mean"]) - w.compute_s - comm
            if excess < 0 and comm > 0:
                overlaps.append(min(1.0, -excess / comm))
                jitters.append(0.0)
            else:
                overlaps.append(0.0)
                jitters.append(excess / (w.compute_s * math.sqrt(2 * math.log(p))))
        out[model] = (w, Overheads(overlap=float(np.mean(overlaps)) if overlaps else 0.0,
                                   jitter=float(np.mean(jitters)) if jitters else 0.0))
    return net, out
