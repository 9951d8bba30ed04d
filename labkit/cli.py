"""The ``labkit`` command line (also ``python -m labkit``): a thin layer over the library.

Each verb prints progress for people and names its machine-readable output in ``--help``.
"""
from __future__ import annotations

import argparse
import json
import sys


def _parse_value(text: str):
    """Parameter values as JSON when they parse (3, 0.1, true, "x"), else as plain strings."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cmd_doctor(args) -> int:
    from labkit import doctor

    checks = doctor.collect(brief=args.brief)
    if args.json:
        print(json.dumps(doctor.as_dict(checks), indent=2))
    elif args.brief:
        print(doctor.summary(checks))
    else:
        print(doctor.format_report(checks))
    return 0 if all(c.ok for c in checks) else 1


def cmd_run(args) -> int:
    from labkit import runner

    params = {name: _parse_value(value) for name, value in (args.parameter or [])}
    try:
        report = runner.run(args.paths, build=args.build, parameters=params, cell_timeout=args.cell_timeout,
                            assignments=args.assignments, notebook_budget=args.notebook_budget,
                            cell_budget=args.cell_budget)
    except FileNotFoundError as exc:
        print(f"labkit run: {exc}", file=sys.stderr)
        return 2
    ok = all(n["status"] == "ok" for n in report["notebooks"] + report["assignments"])
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description="The scalable deep-learning teaching lab's helper.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("doctor", help="report Python/TF/Keras/Horovod versions, Horovod's build, cores and threads",
                       description="Check the environment and say how to fix what is missing. "
                       "Machine-readable output: --json prints {\"ok\": bool, \"checks\": [{name, ok, value, fix}]}. "
                       "Exit status 1 when something is missing.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--brief", action="store_true", help="skip the checks that import TensorFlow (fast)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("run", help="execute notebooks with papermill and write build/report.{json,html}",
                       description="Execute notebooks headless with their fast defaults. Machine-readable "
                       "output: BUILD/report.json ({\"notebooks\": [{path, status, seconds, error, figures, cells, "
                       "flags, recovered, clean}], \"assignments\": [{name, status, summary, grades}], "
                       "\"environment\": {...}}); status is ok, failed or stalled. "
                       "Exit status 1 when any notebook failed or stalled, or a sample grading failed.")
    p.add_argument("paths", nargs="*", default=["notebooks"], help="notebooks or folders (default: notebooks/)")
    p.add_argument("--build", default="build", help="output folder (default: build)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override a parameters-cell value in every notebook, e.g. -p EPOCHS 5")
    p.add_argument("--cell-timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    p.add_argument("--notebook-budget", type=float, default=90.0,
                   help="seconds a notebook should take; the report flags longer runs (default 90)")
    p.add_argument("--cell-budget", type=float, default=60.0,
                   help="seconds a cell should take; the report flags slower cells (default 60)")
    p.add_argument("--assignments", metavar="DIR",
                   help="also grade the sample submissions of every assignment in DIR (make run: assignments)")
    p.set_defaults(func=cmd_run)

    from labkit.cluster.cli import register as register_cluster
    from labkit.grading.cli import register as register_grading
    from labkit.scaling.cli import register as register_scaling

    register_grading(sub)   # release, grade
    register_scaling(sub)   # scale
    register_cluster(sub)   # cluster up|down|shape|status|spark
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
