"""``labkit scale``: run a scaling experiment from the command line (a thin layer over the harness).

    labkit scale --workers 1 2 --models cnn --batch 32 --steps 30 --trials 2 --out build/scaling
    labkit scale --global-batch 64 ...          # strong scaling
    labkit scale --published                    # the analytic model vs Horovod's published table
    labkit scale --hosts h1:1,h2:1 --links unshaped 1gbit 100mbit --models cnn mlp
                                                # the network lesson on a `labkit cluster` (root)

``labkit.cli`` calls :func:`register` to add the verb.
"""
from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = (
    "Run a Horovod scaling experiment (workers × batch × model) on this machine, with the single-process "
    "baseline that uses the same cores, and write tidy results. Machine-readable output: OUT/runs.csv "
    "(one row per run: mode, model, workers, threads_per_worker, per_worker_batch, global_batch, throughput, "
    "step_time_mean/p50/p95, final_loss, final_accuracy, time_to_target_s, ...), OUT/summary.csv (one row "
    "per configuration, with speedup, efficiency, vs_baseline), OUT/curves.csv (one row per step), "
    "OUT/allreduce.csv and OUT/results.json (everything plus environment metadata). With --json, the last "
    "line of stdout is one JSON object {\"out\": ..., \"summary\": [...]}. --published prints the analytic "
    "model against Horovod's published efficiencies instead (JSON with --json). With --links (and optionally "
    "--hosts of a running 'labkit cluster'), it measures efficiency against link bandwidth on the cluster "
    "instead: OUT/network.csv (one row per model and link: link, rate_bps, goodput_bps, compute_s, step_s, "
    "efficiency, predicted_step_s, predicted_efficiency, error, ...), OUT/network.json and OUT/network.png. "
    "Exit status 1 if a run failed.")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``scale`` verb to the ``labkit`` command line's subparsers."""
    p = subparsers.add_parser("scale", help="run a Horovod scaling experiment; write runs.csv/results.json",
                              description=DESCRIPTION)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default: 1 2)")
    p.add_argument("--models", nargs="+", default=["cnn"], help="reference models: cnn (compute-bound), mlp (communication-bound)")
    p.add_argument("--batch", type=int, nargs="+", default=[32], help="per-worker batch sizes (weak scaling; default 32)")
    p.add_argument("--global-batch", type=int, nargs="+", help="global batch sizes (strong scaling; overrides --batch)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per worker (default 1)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per run (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up steps left out of the timings (default 5)")
    p.add_argument("--trials", type=int, default=1, help="repeats of each run inside a job (default 1)")
    p.add_argument("--rounds", type=int, default=1, help="repeats of the whole sequence of jobs, interleaved (default 1)")
    p.add_argument("--target-accuracy", type=float, help="record the time to reach this training accuracy")
    p.add_argument("--pin-cores", action="store_true", help="pin each Horovod worker to its own cores")
    p.add_argument("--no-baseline", action="store_true", help="skip the single-process baseline")
    p.add_argument("--mirrored", action="store_true", help="also run tf.distribute.MultiWorkerMirroredStrategy")
    p.add_argument("--timeline", action="store_true", help="write Horovod timelines of multi-worker jobs into OUT")
    p.add_argument("--hvd-env", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="environment for the workers, e.g. --hvd-env HOROVOD_CYCLE_TIME 1")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per job (default 900)")
    p.add_argument("--out", default="build/scaling", help="output folder (default build/scaling)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.add_argument("--published", action="store_true", help="only compare the analytic model with Horovod's published table")
    p.add_argument("--hosts", help="run on these hosts of the running labkit cluster, horovodrun -H syntax "
                   "(e.g. h1:1,h2:1; default with --links: one worker per cluster host)")
    p.add_argument("--links", nargs="+", metavar="RATE",
                   help="link shapes to sweep on the cluster, e.g. unshaped 1gbit 100mbit 10mbit (needs root)")
    p.add_argument("--delay", help="one-way delay for every shaped link, e.g. 5ms (needs the kernel's netem)")
    p.add_argument("--cluster", help="which labkit cluster (default: $LABKIT_CLUSTER or the one that is up)")
    p.set_defaults(func=cmd_scale)
    return p


def cmd_scale(args) -> int:
    if args.published:
        return _published(args)
    if args.links or args.hosts:
        return _network(args)
    from labkit import launch
    from labkit.scaling import Experiment, run_experiment, summarize

    exp = Experiment(workers=args.workers, models=args.models, per_worker_batch=args.batch,
                     global_batch=args.global_batch, threads_per_worker=args.threads, pin_cores=args.pin_cores, steps=args.steps,
                     warmup_steps=args.warmup, trials=args.trials, rounds=args.rounds,
                     baseline=not args.no_baseline, mirrored=args.mirrored, target_accuracy=args.target_accuracy,
                     env=dict(args.hvd_env or []), timeline_dir=args.out if args.timeline else None)
    try:
        results = run_experiment(exp, timeout=args.timeout, echo=not args.json)
    except (launch.WorkerError, ValueError) as exc:
        print(f"labkit scale: {exc}", file=sys.stderr)
        return 1
    summary = summarize(results.runs)
    paths = results.save(args.out)
    summary.to_csv(f"{args.out}/summary.csv", index=False)
    cols = ["mode", "model", "workers", "cores_used", "global_batch", "throughput", "speedup", "efficiency", "vs_baseline"]
    if args.json:
        print(json.dumps({"out": str(paths["json"].parent), "summary": json.loads(summary[cols].to_json(orient="records"))}))
    else:
        print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(f"wrote {', '.join(str(p) for p in paths.values())} and {args.out}/summary.csv")
    return 0


def _published(args) -> int:
    from labkit.scaling import model

    fit = model.fit_published()
    table = fit.table[["model", "workers", "published", "predicted", "error", "compute_s", "allreduce_s"]]
    fitted = {"alpha_s": fit.network.alpha, "bandwidth_bytes_per_s": fit.network.bandwidth,
              "overlap": fit.overheads.overlap, "jitter": fit.overheads.jitter, "max_error": fit.max_error}
    if args.json:
        print(json.dumps({"fit": fitted, "table": json.loads(table.to_json(orient="records"))}))
    else:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(f"fitted: α = {fit.network.alpha * 1e6:.1f} µs per hop, overlap = {fit.overheads.overlap:.2f}, "
              f"jitter = {fit.overheads.jitter:.3f}; largest error {100 * fit.max_error:.1f} points")
    return 0


def _network(args) -> int:
    """The network lesson: efficiency against link bandwidth on the namespaced cluster."""
    from labkit import launch
    from labkit.cluster import netns, network

    problem = netns.root_problem()
    if problem:
        print(f"labkit scale --links: {problem}", file=sys.stderr)
        return 2
    try:
        cluster = netns.current(args.cluster)
        if cluster is None:
            print("labkit scale --links: no cluster is up; start one with 'labkit cluster up --hosts 2'", file=sys.stderr)
            return 1
        exp = network.NetworkSweep(links=args.links or ["unshaped"], models=args.models, delay=args.delay,
                                   per_worker_batch=args.batch[0], steps=args.steps, warmup_steps=args.warmup,
                                   threads=args.threads, hosts=args.hosts)
        table = network.sweep(cluster, exp, timeout=args.timeout, echo=not args.json)
    except (launch.WorkerError, netns.ClusterError, ValueError) as exc:
        print(f"labkit scale: {exc}", file=sys.stderr)
        return 1
    paths = network.save(table, args.out, exp)
    fig = network.plot_efficiency_vs_bandwidth(table)
    fig.savefig(f"{args.out}/network.png", dpi=110)
    cols = ["model", "link", "goodput_bps", "compute_s", "compute_shared_s", "step_s", "predicted_step_s", "error", "efficiency",
            "predicted_efficiency"]
    if args.json:
        print(json.dumps({"out": str(paths["json"].parent), "table": json.loads(table[cols].to_json(orient="records"))}))
    else:
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"wrote {paths['csv']}, {paths['json']} and {args.out}/network.png")
    return 0
