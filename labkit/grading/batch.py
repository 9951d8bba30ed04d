"""Grade a folder of submissions: prepare -> sandbox -> tests (grader-side) -> gradebook -> feedback.

``grade(assignment_dir, submissions_dir, out)`` is what ``labkit grade`` calls. For each
``SUBMISSIONS/<student_id>/<notebook>.ipynb`` it:

1. prepares the notebook (:mod:`labkit.grading.prepare`): invalid ones stop here;
2. runs it with papermill inside the sandbox (:mod:`labkit.grading.sandbox`,
   :mod:`labkit.grading.execute`); the notebook only *exports* plain values;
3. runs every test, visible and hidden, in a fresh grader process on those values
   (:mod:`labkit.grading.checks`);
4. decides the status from what the grader observed, writes the gradebook row set in one
   transaction, and the feedback page.

A student's code failing never makes the grader fail: it becomes a status and a reason.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from labkit.grading import authoring as au
from labkit.grading import feedback as fb
from labkit.grading import prepare as prep_mod
from labkit.grading import sandbox as sb
from labkit.grading.gradebook import Gradebook

STATUSES = ("graded", "timeout", "crashed", "invalid", "flagged")
MAX_VALUES_BYTES = 32 * 1024 * 1024
MAX_EXECUTED_BYTES = 64 * 1024 * 1024


@dataclass
class Graded:
    student: str
    digest: str
    status: str
    reason: str
    results: list[dict]
    seconds: float
    executed: dict | None = None
    timings: dict = field(default_factory=dict)


def allowed_data(assignment: au.Assignment) -> dict[str, Path]:
    """``"data"`` of assignment.json: relative path -> file or folder the notebook may read."""
    root = assignment.folder.resolve()
    found = {}
    for item in assignment.settings.get("data", []):
        src = (root / item).resolve()
        rel = Path(item)
        if rel.is_absolute() or ".." in rel.parts or not src.is_relative_to(root) or not src.exists() \
                or src.suffix == ".ipynb" or rel.parts[0] in (".labkit", "samples"):
            raise au.AuthoringError(f"assignment.json: data item {item!r} must be an existing file or folder "
                                    "inside the assignment (not a notebook, not samples/)")
        found[rel.as_posix()] = src
    return found


def read_untrusted(path: Path, limit: int, root: Path | None = None) -> bytes | None:
    """A file the sandbox wrote: only a regular file inside ``root``, never through a link, at most
    ``limit`` bytes. (The sandbox is dead by then, so nothing can swap the file under us.)"""
    if root is not None and not os.path.realpath(path).startswith(os.path.realpath(root) + os.sep):
        return None  # a folder on the way was replaced by a link out of the working folder
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(limit + 1)[:limit]
    finally:
        os.close(fd)


def run_tests(tests: list[au.Test], values: dict[str, list[str]], timeout: float = 300) -> list[dict]:
    """Hidden and visible tests in a fresh grader process (plain python: no kernel, no student code)."""
    job = json.dumps({"tests": [t.__dict__ for t in tests], "values": values})
    proc = subprocess.run([sys.executable, "-m", "labkit.grading.checks"], input=job, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"the test runner failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def failed_results(tests: list[au.Test], why: str) -> list[dict]:
    return [{"test_id": t.id, "question": t.question, "passed": False, "points": 0.0, "max_points": t.points,
             "hidden": t.hidden, "message": f"{t.message} (not run: {why})"} for t in tests]


def _student_cell(nb: dict | None, index) -> str:
    """"cell N" (the student's numbering) for cell ``index`` of the notebook the sandbox ran; the
    runner's indices refer to the prepared notebook (papermill's executed copy adds marker cells)."""
    try:
        n = nb["cells"][index]["metadata"]["labkit"].get("student_cell")
        return f"cell {n}" if n else "a grader cell"
    except (TypeError, KeyError, IndexError, AttributeError):
        return "a cell"


def cell_timings(executed: dict | None, report: dict) -> dict:
    """Where a run's time went: papermill (kernel start + cells + teardown), the cells, the slowest cell.

    From papermill's per-cell durations in the executed notebook (untrusted, used for figures only).
    """
    out = {"papermill": report.get("seconds")}
    cells = []
    for i, cell in enumerate((executed or {}).get("cells", []) if isinstance(executed, dict) else []):
        try:
            d = float(cell["metadata"]["papermill"]["duration"] or 0)
        except (KeyError, TypeError, ValueError):
            continue
        cells.append((d, i))
    if cells:
        out["cells"] = round(sum(d for d, _ in cells), 2)
        d, i = max(cells)
        out["slowest_cell"] = {"cell": _student_cell(executed, i), "seconds": round(d, 2)}
    return out


def grade_one(folder: Path, assignment: au.Assignment, slot: int, workroot: Path, sandbox: bool = True,
              workers: int = 1) -> Graded:
    """Grade one submission folder; never raises because of the student's code."""
    start = time.perf_counter()
    settings = assignment.settings
    prep = prep_mod.prepare(folder, assignment)
    if prep.invalid:
        return Graded(prep.student, prep.digest, "invalid", prep.invalid, failed_results(assignment.tests, "invalid"),
                      round(time.perf_counter() - start, 2))
    work = Path(tempfile.mkdtemp(prefix=f"{slot}-", dir=workroot))
    timings = {"prepare": round(time.perf_counter() - start, 2)}
    try:
        (work / ".labkit" / "values").mkdir(parents=True)
        nbformat.write(prep.notebook, work / assignment.notebook)
        data = allowed_data(assignment)
        for rel in data:  # mount points (bwrap binds the real files read-only over them)
            target = work / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.mkdir(exist_ok=True) if data[rel].is_dir() else target.touch()
        argv = [sys.executable, "-m", "labkit.grading.execute", assignment.notebook, ".labkit/executed.ipynb",
                "--cell-timeout", str(int(settings["cell_timeout"])),
                "--max-output", str(int(settings["max_output_mb"] * 1024 * 1024))]
        limits = sb.Limits.from_settings(settings)
        limits.cpus = max(1.0, (os.cpu_count() or 1) / max(1, workers))
        outcome = sb.run(work, argv, slot, limits, data=data, sandbox=sandbox)
        timings["sandbox"] = outcome.seconds
        report = {}
        for line in outcome.stdout.splitlines():
            if line.startswith("LABKIT-REPORT "):
                try:
                    report = json.loads(line[len("LABKIT-REPORT "):])
                except json.JSONDecodeError:
                    pass
        raw_nb = read_untrusted(work / ".labkit" / "executed.ipynb", MAX_EXECUTED_BYTES, work)
        try:
            executed = json.loads(raw_nb) if raw_nb else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            executed = None
        timings.update(cell_timings(executed, report))
        values: dict[str, list[str]] = {}
        for q in assignment.questions:
            for name in (f"{q}.json", f"final-{q}.json"):
                raw = read_untrusted(work / ".labkit" / "values" / name, MAX_VALUES_BYTES, work)
                if raw:
                    values.setdefault(q, []).append(raw.decode("utf-8", "replace"))
        guard = read_untrusted(work / ".labkit" / "values" / "guard.json", 1_000_000, work)
        t0 = time.perf_counter()
        results = run_tests(assignment.tests, values)
        timings["tests"] = round(time.perf_counter() - t0, 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    notes, flags = list(prep.notes), list(prep.flags)
    status = "graded"
    if guard:
        try:
            tamper = json.loads(guard).get("tamper", [])
            flags += [f"at run time: {str(t)[:200]}" for t in tamper[:10]]
        except (json.JSONDecodeError, AttributeError):
            flags.append("the tripwire's report was unreadable")
    crashed = None
    if outcome.timed_out:
        status = "timeout"
        notes.insert(0, f"the notebook ran past the {settings['timeout']} s time limit and was stopped; "
                        "values exported before that were graded")
    elif report.get("timed_out"):
        status = "timeout"
        cells = ", ".join(_student_cell(prep.notebook, i) for i in report["timed_out"])
        notes.insert(0, f"{cells} ran past the {settings['cell_timeout']} s per-cell limit and "
                        "was interrupted; the other cells ran")
    if outcome.disk_exceeded:
        status = "crashed"
        notes.insert(0, f"the notebook wrote more than {settings['max_disk_mb']} MB or {settings['max_files']} "
                        "files and was stopped; values exported before that were graded")
    elif not outcome.timed_out and (not report or report.get("status") == "crashed"):
        crashed = _student_cell(prep.notebook, report.get("cell")) if report else "a cell"
        if status == "graded":
            status = "crashed"
        notes.insert(0 if status == "crashed" else 1,
                     f"the kernel died while running {crashed} (os._exit, exit(), a crash, or the memory/CPU "
                     "limit); values exported before that were graded")
    if report.get("truncated"):
        notes.append(f"output beyond {settings['max_output_mb']} MB was dropped")
    if flags:
        status = "flagged"
        notes = [f"flagged for review: {'; '.join(flags)}"] + notes
    reason = "; ".join(notes)
    return Graded(prep.student, prep.digest, status, reason[:2000], results, round(time.perf_counter() - start, 2),
                  executed, timings)


def remove_stale_workroots() -> None:
    """Working folders left by a grader that was killed (``kill -9``): its pid is gone."""
    for root in Path(tempfile.gettempdir()).glob("labkit-grade-*"):
        try:
            pid = int((root / "grader.pid").read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(root, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge (no pid file yet, or another user's)


def find_students(submissions: Path) -> list[Path]:
    return sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))


def _write_outputs(gb: Gradebook, assignment: au.Assignment, out: Path) -> list[dict]:
    rows = gb.table(assignment.name)
    fb.write_grades_csv(out / "grades.csv", rows)
    fb.write_lms_csv(out / "lms.csv", assignment.name, rows)
    return rows


def grade(assignment_dir: str | Path, submissions: str | Path, out: str | Path, workers: int = 1,
          force: bool = False, sandbox: bool = True, echo=print, progress: bool = True,
          gradebook: str | Path | None = None) -> dict:
    """Grade every submission; write the gradebook, grades.csv, lms.csv, feedback/ and summary.json."""
    assignment = au.load_assignment(assignment_dir)
    out, submissions = Path(out), Path(submissions)
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    if sandbox:
        reason = sb.available()
        if reason:
            raise sb.SandboxUnavailable(reason)
        sb.self_test()
    gb = Gradebook(gradebook or out / "gradebook.sqlite")
    tests_digest = assignment.tests_digest()
    students = find_students(submissions)
    todo, skipped = [], 0
    for folder in students:
        digest = prep_mod.read_submission(folder, assignment)[0].digest
        if not force and gb.is_current(assignment.name, folder.name, digest, tests_digest):
            skipped += 1
        else:
            todo.append(folder)
    echo(f"grading {assignment.name}: {len(students)} submissions, {len(todo)} to grade, "
         f"{skipped} unchanged since the last run; {workers} worker(s), sandbox {'on' if sandbox else 'OFF'}")
    remove_stale_workroots()
    workroot = Path(tempfile.mkdtemp(prefix="labkit-grade-"))
    os.chmod(workroot, 0o711)
    (workroot / "grader.pid").write_text(str(os.getpid()))
    slots: queue.Queue = queue.Queue()
    for i in range(max(1, workers)):
        slots.put(i)

    def task(folder: Path) -> Graded:
        slot = slots.get()
        try:
            return grade_one(folder, assignment, slot, workroot, sandbox=sandbox, workers=workers)
        finally:
            slots.put(slot)

    start = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="submission", desc=assignment.name, file=sys.stderr)
    timings = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {pool.submit(task, f): f for f in todo}
            for fut in as_completed(futures):
                g = fut.result()  # an exception here is the grader's own failure: let it surface
                gb.record(assignment.name, g.student, g.digest, tests_digest, g.status, g.reason,
                          assignment.max_score, g.seconds, g.results)
                row = gb.submission(assignment.name, g.student)
                (out / "feedback" / f"{g.student}.html").write_text(
                    fb.render_feedback(assignment.name, row, gb.results(assignment.name, g.student), g.executed))
                timings.append({"student": g.student, "seconds": g.seconds, **g.timings})
                msg = f"{g.student}: {row['score']:g}/{row['max_score']:g} {g.status}" + \
                    (f" ({g.reason[:100]})" if g.reason else "")
                if bar is not None:
                    bar.write(msg)
                    bar.update(1)
                else:
                    echo(msg)
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(workroot, ignore_errors=True)
    rows = _write_outputs(gb, assignment, out)
    wall = round(time.perf_counter() - start, 2)
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    summary = {"assignment": assignment.name, "submissions": len(students), "graded_now": len(todo),
               "skipped": skipped, "seconds": wall,
               "seconds_per_submission": round(wall / len(todo), 2) if todo else None,
               "workers": workers, "sandbox": sandbox, "statuses": counts,
               "mean_score": round(sum(r["score"] for r in rows) / len(rows), 3) if rows else None,
               "max_score": assignment.max_score, "timings": timings,
               "grades_csv": str(out / "grades.csv"), "lms_csv": str(out / "lms.csv"),
               "gradebook": str(gb.path), "feedback": str(out / "feedback")}
    gb.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    echo(f"done in {wall:.1f} s: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) +
         f"; grades: {out / 'grades.csv'}")
    return summary


def grade_samples(assignments_dir: str | Path = "assignments", build: str | Path = "build",
                  workers: int = 2, echo=print) -> list[dict]:
    """Grade each assignment's bundled ``samples/`` and compare with ``samples/expected.json``.

    One dict per assignment for ``build/report.json``'s "assignments" list:
    ``{name, status: "ok"|"failed", summary, seconds, grades, mismatches, error}``.
    """
    report = []
    for folder in sorted(p for p in Path(assignments_dir).iterdir() if (p / "samples").is_dir()):
        start = time.perf_counter()
        entry = {"name": folder.name, "status": "failed", "summary": "", "seconds": 0.0, "grades": [],
                 "mismatches": [], "error": None}
        try:
            out = Path(build) / "grading" / folder.name
            summary = grade(folder, folder / "samples", out, workers=workers, force=True,
                            sandbox=sb.available() is None, echo=echo, progress=False)
            with Gradebook(out / "gradebook.sqlite") as gb:
                rows = gb.table(folder.name)
            expected_path = folder / "samples" / "expected.json"
            expected = json.loads(expected_path.read_text()) if expected_path.exists() else {}
            for r in rows:
                want = expected.get(r["student_id"])
                if want and (abs(r["score"] - want["score"]) > 1e-9 or r["status"] != want["status"]):
                    entry["mismatches"].append({"student_id": r["student_id"], "got": [r["score"], r["status"]],
                                                "expected": [want["score"], want["status"]]})
            entry["grades"] = [{k: r[k] for k in ("student_id", "score", "max_score", "status", "reason")}
                               for r in rows]
            entry["status"] = "ok" if not entry["mismatches"] and len(rows) >= len(expected) else "failed"
            entry["summary"] = (f"{len(rows)} sample submissions graded"
                                f"{' as expected' if entry['status'] == 'ok' else ', NOT as expected'}; "
                                f"sandbox {'on' if summary['sandbox'] else 'off'}")
            entry["grades_csv"] = summary["grades_csv"]
        except Exception as exc:  # noqa: BLE001 -- the report records it; the run goes on
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["summary"] = entry["error"]
        entry["seconds"] = round(time.perf_counter() - start, 2)
        report.append(entry)
    return report
