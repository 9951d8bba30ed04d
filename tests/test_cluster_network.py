"""The network lesson on real shaped links: efficiency falls with bandwidth, and the analytic model
predicts the communication-bound step at 100 Mbit/s within 10 % (root only)."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from clusters import cluster, needs_root

pytestmark = [pytest.mark.slow, needs_root]


def test_labkit_scale_sweeps_link_shapes_on_the_cluster(tmp_path):
    with cluster("net") as c:
        res = subprocess.run([sys.executable, "-m", "labkit", "scale", "--cluster", c.name, "--links", "1gbit",
                              "100mbit", "--models", "mlp", "--steps", "5", "--warmup", "2", "--out", str(tmp_path),
                              "--json"], capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert all("tbf" not in q for q in __import__("labkit.cluster.shape", fromlist=["x"]).qdiscs(c).values()), \
            "the sweep must leave the links unshaped"
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    table = pd.read_csv(tmp_path / "network.csv").set_index("link")
    assert (tmp_path / "network.png").stat().st_size > 10_000
    print(table[["goodput_bps", "compute_s", "step_s", "predicted_step_s", "error", "efficiency"]].to_string())
    assert len(summary["table"]) == 2
    # TCP carries less than the token bucket's rate, but most of it
    for link, rate in (("1 Gbit/s", 1e9), ("100 Mbit/s", 1e8)):
        assert 0.75 * rate <= table.loc[link, "goodput_bps"] < rate
    # a tenth of the bandwidth: the communication-bound model's efficiency drops
    assert table.loc["100 Mbit/s", "efficiency"] < table.loc["1 Gbit/s", "efficiency"]
    assert table.loc["100 Mbit/s", "step_s"] > 2 * table.loc["1 Gbit/s", "step_s"]
    # the model, with the measured goodput, predicts the 100 Mbit/s step within 10 %
    assert abs(table.loc["100 Mbit/s", "error"]) <= 0.10, table.loc["100 Mbit/s"].to_dict()
