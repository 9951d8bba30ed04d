"""The course hub's verbs: thin commands over :mod:`labkit.hub`. ``labkit/cli.py`` calls :func:`register`.

Instructor (as root on the hub machine):   labkit hub serve|init|remove-students, assign, collect, return
Student (in a JupyterLab terminal, or ``!labkit ...`` in a notebook):   fetch, submit
"""
from __future__ import annotations

import argparse
import json
import sys


def _course(args):
    from labkit.hub.course import Course

    return Course.load(args.course)


def cmd_hub(args) -> int:
    from labkit.hub import accounts, exchange
    from labkit.hub.course import Course, CourseError
    from labkit.hub.serve import HubError, serve

    try:
        if args.hub_command == "serve":
            serve(args.course, args.students or [], ip=args.ip, port=args.port, demo=args.demo,
                  keep_servers=args.keep_servers)
            return 0  # not reached: serve execs JupyterHub
        if args.hub_command == "init":
            course = Course.create(args.course, args.students or [], prefix=args.prefix)
            out = {"course": str(course.root), "students": course.students, "prefix": course.prefix}
            print(json.dumps(out) if args.json else f"course {course.root}: {len(course.students)} students "
                  f"({', '.join(course.students)}); accounts are {course.prefix}<student>")
            return 0
        if args.hub_command == "remove-students":
            course = Course.load(args.course)
            names = args.students or course.students
            removed = []
            for s in names:
                if accounts.remove(course.unix_name(s), course.prefix):
                    removed.append(s)
                exchange.remove_inbox(course.inboxes, course.unix_name(s))
            print(f"removed {len(removed)} account(s): {', '.join(course.unix_name(s) for s in removed) or 'none'}")
            return 0
    except (HubError, CourseError, accounts.AccountError) as exc:
        print(f"labkit hub: {exc}", file=sys.stderr)
        return 2
    return 2


def cmd_assign(args) -> int:
    from labkit.grading.authoring import AuthoringError
    from labkit.hub.assign import assign, parse_deadline
    from labkit.hub.course import CourseError

    try:
        out = assign(_course(args), args.assignment, deadline=parse_deadline(args.deadline))
    except (CourseError, AuthoringError, ValueError) as exc:
        print(f"labkit assign: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out))
    else:
        print(f"released {out['assignment']} ({out['notebook']}, {out['max_score']:g} points) to "
              f"{out['students']} students; deadline {out['deadline'] or 'none'}. "
              f"Students run 'labkit fetch {out['assignment']}' (or get it when their server next starts).")
    return 0


def cmd_fetch(args) -> int:
    from labkit.hub import student

    try:
        done = student.fetch(args.assignment)
    except student.StudentError as exc:
        print(f"labkit fetch: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(done))
    else:
        for d in done:
            print(f"{d['status']}: {d['file']}")
        if not done:
            print("nothing released yet")
    return 0


def cmd_submit(args) -> int:
    from labkit.hub import student

    try:
        if args.list:
            rows = student.submissions(args.assignment)
            print(json.dumps(rows) if args.json else "\n".join(f"{r['recorded_at']}  {r['file']}" for r in rows)
                  or "no submissions yet")
            return 0
        receipt = student.submit(args.assignment, args.notebook)
    except student.StudentError as exc:
        print(f"labkit submit: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(student.as_dict(receipt)) if args.json else student.receipt_text(receipt))
    return 0


def cmd_collect(args) -> int:
    from labkit.hub.assign import parse_deadline
    from labkit.hub.collect import collect
    from labkit.hub.course import CourseError

    try:
        course = _course(args)
        report = collect(course, args.assignment, deadline=parse_deadline(args.deadline))
    except (CourseError, FileNotFoundError, ValueError) as exc:
        print(f"labkit collect: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
        return 0
    for r in report["students"]:
        extra = f" late by {r['late_by_seconds']:.0f} s" if r["status"] == "late" else ""
        notes = f"  ({'; '.join(r['notes'])})" if r["notes"] else ""
        print(f"{r['student_id']:<14} {r['status']:<8}{extra} {r['submitted_at'] or ''}{notes}")
    c = report["counts"]
    print(f"collected {report['assignment']}: {c['on_time']} on time, {c['late']} late, {c['missing']} missing "
          f"-> {report['submissions']}")
    print(f"next: labkit grade assignments/{report['assignment']} {report['submissions']} "
          f"--out {course.grades(report['assignment'])}")
    return 0


def cmd_return(args) -> int:
    from labkit.hub.course import CourseError
    from labkit.hub.handback import return_feedback

    try:
        report = return_feedback(_course(args), args.assignment, args.feedback)
    except (CourseError, FileNotFoundError) as exc:
        print(f"labkit return: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
    else:
        for r in report["students"]:
            print(f"{r['student_id']:<14} {r['status']}" + (f" -> {r['path']}" if r["path"] else ""))
    return 0


def register(subparsers) -> None:
    """Add ``hub``, ``assign``, ``fetch``, ``submit``, ``collect`` and ``return`` to ``labkit``."""
    course_help = "the course folder (default: $LABKIT_COURSE or /srv/labkit)"

    p = subparsers.add_parser("hub", help="the course hub: serve (make hub), init a course, remove-students",
                              description="Run the single-machine course hub (JupyterHub, one Unix account per "
                              "student). 'serve' prints its URL and, with --demo, each student's demo password. "
                              "Machine-readable output: 'init --json' prints {course, students, prefix}.")
    hub = p.add_subparsers(dest="hub_command", required=True, metavar="ACTION")
    s = hub.add_parser("serve", help="start the hub (as root)")
    s.add_argument("--course", help=course_help)
    s.add_argument("--students", nargs="*", help="student ids to add to the roster (e.g. alice bob)")
    s.add_argument("--ip", default="127.0.0.1", help="address of the hub (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8600, help="public port (default 8600; the hub's API uses +1, the proxy's +2)")
    s.add_argument("--demo", action="store_true", help="DEMO ONLY authenticator: random per-student passwords in a plain file")
    keep = s.add_mutually_exclusive_group()
    keep.add_argument("--keep-servers", dest="keep_servers", action="store_true", default=None,
                      help="students' servers keep running when the hub stops (default without --demo)")
    keep.add_argument("--stop-servers", dest="keep_servers", action="store_false",
                      help="stop students' servers with the hub (default with --demo)")
    s = hub.add_parser("init", help="create a course folder and roster (as root)")
    s.add_argument("--course", help=course_help)
    s.add_argument("--students", nargs="*", help="student ids")
    s.add_argument("--prefix", default="lkstu-", help="Unix account prefix (default lkstu-)")
    s.add_argument("--json", action="store_true")
    s = hub.add_parser("remove-students", help="delete students' accounts, homes and processes (as root)")
    s.add_argument("--course", help=course_help)
    s.add_argument("students", nargs="*", help="student ids (default: the whole roster)")
    p.set_defaults(func=cmd_hub)

    p = subparsers.add_parser("assign", help="release an assignment to every student of the course (instructor)",
                              description="Run 'labkit release' into the course exchange, where every student can "
                              "fetch it. Machine-readable output: --json prints {assignment, notebook, deadline, "
                              "released_at, max_score, questions, released_to, inboxes, students}.")
    p.add_argument("assignment", help="the assignment folder, e.g. assignments/tf_basics")
    p.add_argument("--deadline", help="ISO date-time, e.g. 2026-12-01T23:59 (local time) or ...+00:00")
    p.add_argument("--course", help=course_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_assign)

    p = subparsers.add_parser("fetch", help="copy released assignments into ~/assignments (student)",
                              description="Copy a released assignment (or all) into ~/assignments/<name>/; files "
                              "already there are never overwritten. Machine-readable output: --json prints "
                              "[{assignment, file, status}].")
    p.add_argument("assignment", nargs="?", help="assignment name (default: every released one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fetch)

    p = subparsers.add_parser("submit", help="submit an assignment, with a timestamp and a SHA-256 (student)",
                              description="Copy your notebook into your inbox; every submission is kept and the "
                              "last one counts. Machine-readable output: --json prints {assignment, student, file, "
                              "sha256, submitted_at, number, deadline, late}.")
    p.add_argument("assignment", help="assignment name, e.g. tf_basics")
    p.add_argument("notebook", nargs="?", help="the notebook (default ~/assignments/<name>/<notebook>.ipynb)")
    p.add_argument("--list", action="store_true", help="list your submissions instead")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_submit)

    p = subparsers.add_parser("collect", help="collect submissions into SUBMISSIONS/<student_id>/ (instructor)",
                              description="Read every student's inbox safely, archive every submission, and put the "
                              "last one in COURSE/instructor/<name>/submissions/<student_id>/ for 'labkit grade'. "
                              "Machine-readable output: COURSE/instructor/<name>/collect.json and collect.csv "
                              "(student_id, status: on_time|late|missing, submitted_at, sha256, submissions, "
                              "late_by_seconds, notes); --json prints collect.json.")
    p.add_argument("assignment", help="assignment name, e.g. tf_basics")
    p.add_argument("--deadline", help="override the released deadline (ISO date-time)")
    p.add_argument("--course", help=course_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_collect)

    p = subparsers.add_parser("return", help="put each student's feedback page in their home (instructor)",
                              description="Copy grades/feedback/<student_id>.html to ~/feedback/<name>.html of "
                              "each student, readable only by them. Machine-readable output: "
                              "COURSE/instructor/<name>/returned.json ({students: [{student_id, status, path}]}); "
                              "--json prints it.")
    p.add_argument("assignment", help="assignment name, e.g. tf_basics")
    p.add_argument("--feedback", help="folder of <student_id>.html (default: COURSE/instructor/<name>/grades/feedback)")
    p.add_argument("--course", help=course_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_return)
