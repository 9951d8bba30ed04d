"""``labkit release`` and ``labkit grade``: thin commands over :mod:`labkit.grading`.

``labkit/cli.py`` calls :func:`register` with its subparsers.
"""
from __future__ import annotations

import json
import sys


def cmd_release(args) -> int:
    from labkit.grading import authoring
    from labkit.grading.release import release

    try:
        manifest = release(args.assignment, out=args.out)
    except authoring.AuthoringError as exc:
        print(f"labkit release: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print(f"released {manifest['assignment']}: {manifest['notebook']} "
              f"({len(manifest['questions'])} questions, {manifest['max_score']:g} points, "
              f"{len(manifest['visible_tests'])} visible and {manifest['hidden_tests']} hidden tests, "
              f"{len(manifest['protected_cells'])} protected cells)")
    return 0


def cmd_grade(args) -> int:
    from labkit.grading import authoring, batch
    from labkit.grading.gradebook import Gradebook
    from labkit.grading.sandbox import SandboxUnavailable

    try:
        if args.override:
            name = authoring.load_assignment(args.assignment).name
            with Gradebook(args.gradebook or f"{args.out}/gradebook.sqlite") as gb:
                for student, test_id, points in args.override:
                    gb.set_override(name, student, test_id, float(points), note="set with labkit grade --override")
        summary = batch.grade(args.assignment, args.submissions, args.out, workers=args.workers,
                              force=args.force, sandbox=not args.unsafe_no_sandbox, progress=not args.no_progress,
                              gradebook=args.gradebook)
    except (authoring.AuthoringError, SandboxUnavailable, OSError) as exc:
        print(f"labkit grade: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    return 0


def register(subparsers) -> None:
    """Add the ``release`` and ``grade`` subcommands to ``labkit``'s parser."""
    p = subparsers.add_parser(
        "release", help="write the student version of an assignment (no solutions, no hidden tests)",
        description="Write OUT/<name>/<notebook>.ipynb: solutions replaced by prompts, hidden tests removed, "
        "outputs cleared, protected cells fingerprinted. Machine-readable output: OUT/<name>/release.json "
        "(also printed with --json): {assignment, notebook, questions: {id: points}, max_score, visible_tests, "
        "hidden_tests, protected_cells}.")
    p.add_argument("assignment", help="the assignment folder, e.g. assignments/tf_basics")
    p.add_argument("--out", default="build/release", help="output folder (default: build/release)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_release)

    p = subparsers.add_parser(
        "grade", help="grade SUBMISSIONS/<student_id>/<notebook>.ipynb in a sandbox into a SQLite gradebook",
        description="Run each submission's kernel in a sandbox (no network, unprivileged user, per-process and "
        "whole-sandbox limits), driven from outside by the grader's notebook client; run the visible and hidden "
        "tests in the grader's own process, and write: OUT/grades.csv "
        "(student_id,score,max_score,status,reason), OUT/lms.csv (student_id,assignment,points,"
        "points_possible,percent,status,comment), OUT/summary.json, OUT/feedback/<student_id>.html and "
        "OUT/gradebook.sqlite (tables submissions, results, overrides). Statuses: graded, timeout, crashed, "
        "invalid, flagged. A failure of the grading machinery is retried (3 attempts) and never charged as a "
        "timeout. Unchanged submissions are not re-run (use --force). Exit status is non-zero only when the "
        "grader itself can't start; whatever a submission does, the batch finishes and writes every output.")
    p.add_argument("assignment", help="the assignment folder (holds the source notebook and hidden tests)")
    p.add_argument("submissions", help="folder of <student_id>/<notebook>.ipynb")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=1, help="submissions graded at once (default 1)")
    p.add_argument("--force", action="store_true", help="re-grade even unchanged submissions")
    p.add_argument("--gradebook", help="SQLite file (default: OUT/gradebook.sqlite)")
    p.add_argument("--override", nargs=3, action="append", metavar=("STUDENT", "TEST", "POINTS"),
                   help="set a manual score for one test (kept across re-grades), e.g. --override alice q2.2 1")
    p.add_argument("--json", action="store_true", help="print summary.json's content at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="run student code WITHOUT the sandbox (development only: no isolation)")
    p.set_defaults(func=cmd_grade)


def main(argv: list[str] | None = None) -> int:
    """``python -m labkit.grading.cli release|grade ...`` (the same as ``labkit release|grade``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="labkit")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
