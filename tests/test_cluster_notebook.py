"""The cluster lab's exercises: each self-check fails on a wrong answer with a helpful message and
passes on the right one; the recorded network run the lab shows without root is sane."""
from pathlib import Path

import pytest

from labkit import check
from labkit.cluster import network
from labkit.scaling import model

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "33_clusters.ipynb"


def _run(question, **answers):
    table = network.recorded()
    ns = {"model": model, "table": table, "mlp": table[table["model"] == "mlp"].iloc[0], **answers}
    return check(question, notebook=NOTEBOOK, namespace=ns, quiet=True)


def _why(result):
    return " ".join(str(why) for _, ok, why in result.results if not ok)


def test_net1_allreduce_at_100mbit():
    right = 2 * (2 - 1) / 2 * 1_841_162 * 4 / (model.TCP_GOODPUT * 100e6 / 8)
    assert _run("net1", allreduce_100mbit_s=right)
    placeholder = _run("net1", allreduce_100mbit_s=None)
    assert not placeholder and "replace None" in _why(placeholder)
    bits_for_bytes = _run("net1", allreduce_100mbit_s=1_841_162 * 4 / (model.TCP_GOODPUT * 100e6))
    assert not bits_for_bytes and "bits vs bytes" in _why(bits_for_bytes)


def test_net2_break_even_bandwidth():
    mlp = network.recorded().query("model == 'mlp'").iloc[0]
    right = mlp["gradient_bytes"] * 8 / (model.TCP_GOODPUT * mlp["compute_s"]) / 1e6
    assert _run("net2", break_even_mbit=right)
    in_bytes = _run("net2", break_even_mbit=right / 8)
    assert not in_bytes and "Mbit/s" in _why(in_bytes)


def test_net3_latency_steps():
    assert _run("net3", tiny_allreduce_ms=40.0)          # (2 + 2) steps × 2 × 5 ms
    one_way_per_hop = _run("net3", tiny_allreduce_ms=10.0)  # the old model: 2 hops × 5 ms
    assert not one_way_per_hop and "round trip" in _why(one_way_per_hop)


def test_the_recorded_run_shows_the_lesson():
    t = network.recorded()
    assert set(network.COLUMNS) <= set(t.columns)
    mlp = t[t["model"] == "mlp"].set_index("link")
    assert mlp.loc["1 Gbit/s", "efficiency"] > mlp.loc["100 Mbit/s", "efficiency"]
    assert abs(mlp.loc["100 Mbit/s", "error"]) <= 0.10
    # the goodput is below the nominal rate on every shaped link
    shaped = t[t["rate_bps"].notna()]
    assert (shaped["goodput_bps"] < shaped["rate_bps"]).all()


def test_the_plot_has_labelled_axes_with_units():
    fig = network.plot_efficiency_vs_bandwidth(network.recorded())
    for ax in fig.axes:
        assert "Mbit/s" in ax.get_xlabel() and ax.get_ylabel()
    assert "%" in fig.axes[0].get_ylabel() and "ms" in fig.axes[1].get_ylabel()


@pytest.mark.parametrize("question", ["net1", "net2", "net3"])
def test_every_exercise_has_a_visible_test(question):
    assert f"# TEST {question} " in NOTEBOOK.read_text()


def test_the_sweeps_parameter_counts_are_the_workloads():
    from labkit.scaling.workload import parameter_count

    assert network._PARAMS == {m: parameter_count(m) for m in network._PARAMS}
