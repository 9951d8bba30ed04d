"""Benchmark: scaling efficiency against link bandwidth on the namespaced cluster, measured and
predicted by labkit.scaling.model (root only).

    .venv/bin/python bench/cluster_network.py              # unshaped, 1gbit, 100mbit, 10mbit; cnn and mlp (~4 min)
    .venv/bin/python bench/cluster_network.py --quick      # 1gbit and 100mbit, mlp only (~1 min)
    .venv/bin/python bench/cluster_network.py --record     # also refresh the recorded run that
                                                           # notebooks show without root (quiet machine!)

Everything runs in one Horovod job, links reshaped between phases, so the figures are side by
side. Also times the cluster's own set-up and tear-down. Human-readable lines first; the last
line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from labkit.cluster import netns, network


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--record", action="store_true", help="write labkit/cluster/data/network_sweep.{csv,json}")
    args = ap.parse_args()
    problem = netns.root_problem()
    if problem:
        print(f"skipped: {problem}")
        print(json.dumps({"skipped": problem}))
        return 0
    name = f"bench{os.getpid() % 10000}"
    t0 = time.monotonic()
    c = netns.up(2, name=name)
    up_s = time.monotonic() - t0
    try:
        links = ["1gbit", "100mbit"] if args.quick else ["unshaped", "1gbit", "100mbit", "10mbit"]
        models = ["mlp"] if args.quick else ["cnn", "mlp"]
        exp = network.NetworkSweep(links=links, models=models, steps=5 if args.quick else 10, warmup_steps=3)
        t0 = time.monotonic()
        table = network.sweep(c, exp, timeout=1200, echo=True)
        sweep_s = time.monotonic() - t0
    finally:
        t0 = time.monotonic()
        netns.down(name)
        down_s = time.monotonic() - t0
    print(table[["model", "link", "goodput_bps", "compute_s", "compute_shared_s", "step_s", "predicted_step_s",
                 "error", "efficiency", "predicted_efficiency"]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"cluster up {up_s:.1f} s, sweep {sweep_s:.1f} s, down {down_s:.1f} s; load average {os.getloadavg()[0]:.1f}")
    if args.record:
        with tempfile.TemporaryDirectory() as tmp:
            paths = network.save(table, tmp, exp)
            shutil.copy(paths["csv"], network.RECORDED)
            meta = json.loads(paths["json"].read_text())
            meta["command"] = "python bench/cluster_network.py --record"
            meta.pop("table", None)
            network.RECORDED.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        print(f"recorded into {network.RECORDED}")
    print(json.dumps({"cluster_up_s": up_s, "sweep_s": sweep_s, "cluster_down_s": down_s,
                      "load_average_1m": os.getloadavg()[0],
                      "table": json.loads(table.to_json(orient="records"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
