"""The analytic scaling model: the α–β ring allreduce, calibration, and Horovod's published table."""
import numpy as np
import pandas as pd
import pytest

from labkit.scaling import model as m


def test_ring_allreduce_cost_follows_alpha_beta():
    net = m.Network(alpha=1e-5, bandwidth=1e9)
    assert m.allreduce_time(4e6, 1, net) == 0.0  # nothing to exchange alone
    # 2 workers: 2 ring steps + 2 negotiation steps of latency, and each sends half the buffer
    # twice (= the whole buffer once)
    assert m.allreduce_time(4e6, 2, net) == pytest.approx(4 * 1e-5 + 4e6 / 1e9)
    # many workers: the bandwidth term tends to 2·N·s/B, the latency term grows linearly
    big = m.allreduce_time(4e6, 1000, m.Network(0.0, 1e9))
    assert big == pytest.approx(2 * 4e6 / 1e9, rel=1e-2)
    # fused buffers each pay the ring's latency (the negotiation is paid once)
    assert m.allreduce_time(200e6, 3, net, fusion_bytes=64 * 2**20) == pytest.approx(
        (2 * 2 * 3 + 2) * 1e-5 + 2 * 2 / 3 * 200e6 / 1e9)


def test_a_shaped_link_as_the_cluster_measured_it():
    """On tc-shaped links: TCP carries ~0.93 of the nominal rate, and a 2-worker allreduce costs
    about 8 one-way delays (each ring step a round trip, plus Horovod's negotiation)."""
    link = m.Network.from_link(100e6, one_way_delay_s=0.005)
    assert link.bandwidth == pytest.approx(m.TCP_GOODPUT * 100e6 / 8)
    assert 0.89 <= m.TCP_GOODPUT <= 0.95
    latency_only = m.allreduce_time(0.0, 2, link)
    assert latency_only == pytest.approx(8 * 0.005)
    # a 7.4 MB gradient at 100 Mbit/s: the bandwidth term, at goodput, not at the nominal rate
    assert m.allreduce_time(7.37e6, 2, m.Network.from_link(100e6)) == pytest.approx(7.37e6 / (0.93 * 12.5e6))
    measured = m.Network.from_link(100e6, goodput=0.9, base_alpha=1e-4)
    assert measured.alpha == 1e-4 and measured.bandwidth == pytest.approx(0.9 * 12.5e6)


def test_efficiency_falls_with_workers_and_is_one_alone():
    w = [m.Workload("a", 10e6, 0.2, 32)]
    pred = m.predict(w, m.Network(1e-5, 1e9), m.Overheads(0.5, 0.01), workers=[1, 2, 8, 64, 512])
    assert pred["efficiency"].iloc[0] == pytest.approx(1.0)
    assert np.all(np.diff(pred["efficiency"]) < 0)
    assert np.all(pred["throughput"].diff().dropna() > 0)


def test_fit_alpha_beta_recovers_a_known_network():
    true = m.Network(alpha=3e-5, bandwidth=2e9)
    rows = [{"workers": p, "bytes": b, "seconds": float(m.allreduce_time(b, p, true, 0))}
            for p in (2, 4) for b in (1e3, 1e5, 1e6, 8e6)]
    fitted = m.fit_alpha_beta(pd.DataFrame(rows))
    assert fitted.alpha == pytest.approx(3e-5, rel=1e-6)
    assert fitted.bandwidth == pytest.approx(2e9, rel=1e-6)
    with pytest.raises(ValueError):
        m.fit_alpha_beta(pd.DataFrame(columns=["workers", "bytes", "seconds"]))


def test_published_sources_are_what_horovod_reports():
    t = m.PUBLISHED.set_index(["model", "workers"])["efficiency"]
    assert t[("Inception V3", 512)] == t[("ResNet-101", 512)] == 0.90
    assert t[("VGG-16", 512)] == 0.68 and t[("VGG-16", 128)] == 0.79
    assert m.PUBLISHED_NETWORK.bandwidth == pytest.approx(25e9 / 8)
    params = {w.name: w.params for w in m.published_workloads()}
    assert params == {"Inception V3": 23.8e6, "ResNet-101": 44.5e6, "VGG-16": 138e6}


def test_model_reproduces_horovods_published_efficiencies():
    fit = m.fit_published()
    table = fit.table
    print(table[["model", "workers", "published", "predicted", "error"]].round(3).to_string())
    assert fit.max_error <= 0.03, "predicted efficiencies must be within 3 points of the published ones"
    # the three fitted numbers are physically plausible, and shared by all models and both sizes
    assert 1e-6 <= fit.network.alpha <= 1e-4          # seconds per ring hop
    assert 0.0 < fit.overheads.overlap < 1.0
    assert 0.0 <= fit.overheads.jitter <= 0.05
    pred = table.set_index(["model", "workers"])["predicted"]
    for p in (128, 512):  # VGG-16 scales worst at both sizes ...
        assert pred[("VGG-16", p)] < min(pred[("Inception V3", p)], pred[("ResNet-101", p)]) - 0.05
    # ... and is the only one that loses much going from 128 to 512 GPUs, as published
    assert pred[("VGG-16", 128)] - pred[("VGG-16", 512)] > 0.05
    for name in ("Inception V3", "ResNet-101"):
        assert abs(pred[(name, 128)] - pred[(name, 512)]) < 0.04


def test_why_vgg16_scales_worst_needs_no_fitting():
    """With no free terms at all (bandwidth and sizes only), VGG-16 already has by far the most
    communication per unit of compute, and the lowest efficiency."""
    table = m.compare_published(m.PUBLISHED_NETWORK, m.Overheads())
    at512 = table[table["workers"] == 512].set_index("model")
    assert at512["comm_to_compute"].idxmax() == "VGG-16"
    assert at512["comm_to_compute"]["VGG-16"] > 4 * at512["comm_to_compute"]["Inception V3"]
    assert at512["predicted"].idxmin() == "VGG-16"


def test_conclusion_is_robust_to_the_source_revision():
    fit = m.fit_published(workloads=m.published_workloads("later"))
    assert fit.max_error <= 0.04
    two_terms = m.fit_published(terms=("alpha", "overlap"))
    assert two_terms.max_error <= 0.06  # without the straggler term it is close, but worse
    assert two_terms.max_error > fit.max_error - 0.01


def test_calibrate_local_from_a_summary():
    net = m.Network(alpha=1e-4, bandwidth=5e8)
    allreduce = pd.DataFrame([{"workers": 2, "bytes": b, "seconds": float(m.allreduce_time(b, 2, net, 0))}
                              for b in (4096, 65536, 1 << 20, 4 << 20)])
    comm = float(m.allreduce_time(1e6 * 4, 2, net, 0))
    summary = pd.DataFrame([
        {"mode": "horovod", "model": "x", "workers": 1, "per_worker_batch": 32, "step_time_mean": 0.1},
        {"mode": "horovod", "model": "x", "workers": 2, "per_worker_batch": 32, "step_time_mean": 0.1 + 0.75 * comm},
    ])
    fitted, per_model = m.calibrate_local(summary, allreduce, {"x": 1_000_000})
    assert fitted.bandwidth == pytest.approx(5e8, rel=1e-6)
    w, ov = per_model["x"]
    assert w.compute_s == 0.1 and ov.overlap == pytest.approx(0.25, abs=1e-6) and ov.jitter == 0.0
    # a step slower than compute + allreduce: the excess is waiting for the slowest worker
    slow = summary.assign(step_time_mean=[0.1, 0.1 + comm + 0.02])
    _, per_model = m.calibrate_local(slow, allreduce, {"x": 1_000_000})
    w, ov = per_model["x"]
    assert ov.overlap == 0.0 and ov.jitter == pytest.approx(0.02 / (0.1 * np.sqrt(2 * np.log(2))))
    # and the calibrated model reproduces the measured 2-worker step
    pred = m.predict([w], fitted, ov, workers=[2])
    assert pred["step_s"].iloc[0] == pytest.approx(0.1 + comm + 0.02)
