"""Grade a folder of submissions: prepare -> sandboxed kernel -> tests (grader side) -> gradebook -> feedback.

``grade(assignment_dir, submissions_dir, out)`` is what ``labkit grade`` calls. For each
``SUBMISSIONS/<student_id>/<notebook>.ipynb`` it:

1. prepares the notebook (:mod:`labkit.grading.prepare`): invalid ones stop here;
2. runs it: the student's kernel in the sandbox (:mod:`labkit.grading.sandbox`), driven from
   outside by the grader's notebook client (:mod:`labkit.grading.client`), which collects the
   outputs and the exported plain values; a failure of that machinery (the kernel doesn't start,
   a lost message, the sandbox fails) is retried, up to three attempts, and never charged to the
   student;
3. runs every test, visible and hidden, in a fresh grader process on those values
   (:mod:`labkit.grading.checks`);
4. decides the status from what the grader observed, writes the gradebook row set in one
   transaction, and the feedback page.

One hostile submission never stops a batch: whatever goes wrong on one student, even inside the
grader, becomes that student's ``crashed`` or ``flagged`` status with a reason, and the batch
always finishes and writes grades.csv, lms.csv, summary.json and the feedback pages. Every
grader-side process runs isolated (``python -I``, from ``/``), so no file a student left anywhere
can be imported by it.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import labkit
from labkit.grading import authoring as au
from labkit.grading import client
from labkit.grading import feedback as fb
from labkit.grading import plans as pl
from labkit.grading import prepare as prep_mod
from labkit.grading import sandbox as sb
from labkit.grading import untrusted
from labkit.grading.gradebook import Gradebook
from labkit.grading.slots import Slots

STATUSES = ("graded", "timeout", "crashed", "invalid", "flagged")
MAX_ATTEMPTS = 3          # a submission whose run fails for the grader's reasons is tried this often
STARTUP_TIMEOUT = 300     # seconds for the sandbox and its kernel to come up (one that fails exits at once;
                          # a slow start is a loaded machine, not a reason to give up)
MAX_REPORT_BYTES = 512 * 1024 * 1024
RETRY_MARK = "retry:"     # tests_digest prefix of a row the next run must grade again

#: Test hook: inject machinery faults, ``{student_id: {attempt: fault}}`` with fault one of
#: ``{"kernel": "fail"}`` (the kernel can't start), ``{"sandbox": "fail"}`` (bwrap can't set up),
#: ``{"drop": {"step": i, "what": ["reply", "idle"]}}`` (the client loses those messages of step i),
#: ``{"crash_client": True}``. Empty in real use.
FAULTS: dict = {}


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
    machinery: bool = False   # the grader failed on it: recorded so that the next run grades it again


@dataclass
class Entry:
    """One item of SUBMISSIONS/: its folder, the student id it stands for, and why it can't be graded."""

    folder: Path
    student: str
    problem: str | None = None


class GraderError(RuntimeError):
    """Something in the grader failed on one submission (not the student's doing)."""


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


# --- grader-side processes -----------------------------------------------------------------------
def grader_argv(module: str) -> list[str]:
    """A grader-side Python process running ``module.main()``: isolated mode (``-I``: no current
    folder, no PYTHON* variables, no user site on its import path); labkit itself is found through
    the environment, or else through its own folder, appended *after* the standard library."""
    root = str(Path(labkit.__file__).resolve().parent.parent)
    code = f"import sys; sys.path.append({root!r}); from {module} import main; sys.exit(main())"
    return [sys.executable, "-I", "-c", code]


def run_grader_process(module: str, job: dict, timeout: float) -> subprocess.CompletedProcess:
    """Run a grader-side process from ``/`` with ``job`` as JSON on stdin."""
    return subprocess.run(grader_argv(module), input=untrusted.dumps(job).encode(), capture_output=True,
                          timeout=timeout, cwd="/", env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def _last_json_line(stdout: bytes, what: str):
    lines = stdout.strip().splitlines()
    if not lines:
        raise GraderError(f"{what} printed nothing")
    try:
        return untrusted.loads(lines[-1], MAX_REPORT_BYTES, what=what)
    except untrusted.Untrusted as exc:
        raise GraderError(str(exc)) from None


def run_tests(tests: list[au.Test], values: dict[str, list], timeout: float = 300) -> list[dict]:
    """Hidden and visible tests in a fresh grader process (plain python: no kernel, no student code)."""
    job = {"tests": [t.__dict__ for t in tests], "values": values}
    try:
        proc = run_grader_process("labkit.grading.checks", job, timeout)
    except subprocess.TimeoutExpired:
        raise GraderError(f"the tests did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        tail = untrusted.clean_text(proc.stderr.decode("utf-8", "replace")[-600:])
        raise GraderError(f"the test runner failed (exit {proc.returncode}): {tail}")
    results = _last_json_line(proc.stdout, "the test runner's answer")
    by_id = {t.id: t for t in tests}
    if type(results) is not list or len(results) != len(tests) or any(
            type(r) is not dict or r.get("test_id") not in by_id or type(r.get("passed")) is not bool
            or type(r.get("message")) is not str for r in results):
        raise GraderError("the test runner's answer has the wrong shape")
    for r in results:
        t = by_id[r["test_id"]]
        r.update(question=t.question, hidden=t.hidden, max_points=t.points, points=t.points if r["passed"] else 0.0)
    return results


def failed_results(tests: list[au.Test], why: str) -> list[dict]:
    return [{"test_id": t.id, "question": t.question, "passed": False, "points": 0.0, "max_points": t.points,
             "hidden": t.hidden, "message": f"{t.message} (not run: {why})"} for t in tests]


# --- one submission ------------------------------------------------------------------------------
def _limits(settings: dict, workers: int) -> sb.Limits:
    limits = sb.Limits.from_settings(settings)
    limits.cpus = max(1.0, (os.cpu_count() or 1) / max(1, workers))
    return limits


def build_job(prep: prep_mod.Prepared, assignment: au.Assignment, ipc: Path, setup: sb.SlotSetup | None,
              limits: sb.Limits, fault: dict) -> dict:
    """The notebook client's job: the sandbox's command line, the steps, the limits."""
    settings = assignment.settings
    kernel = sb.kernel_argv(conn_dir=sb.KERNEL_DIR if setup else str(ipc))
    if fault.get("kernel") == "fail":  # test hook: a kernel that can't start
        kernel[kernel.index("-m") + 1] = "labkit.grading.no_such_kernel"
    job = {"ipc_host": str(ipc), "steps": prep.steps, "final": prep.final,
           "cell_timeout": float(settings["cell_timeout"]), "timeout": float(settings["timeout"]),
           "startup_timeout": STARTUP_TIMEOUT, "max_output": int(settings["max_output_mb"] * 1024 * 1024),
           "disk": {"max_bytes": int(settings["max_disk_mb"] * 1024 * 1024), "max_files": int(settings["max_files"])},
           "faults": {k: v for k, v in fault.items() if k in ("drop", "crash_client")}, "parent_pid": os.getpid()}
    data = allowed_data(assignment)
    if setup is not None:
        cmd = sb.command(None, kernel, setup.uid, setup.gid, data, limits, ipc=ipc, info_fd=True)
        if fault.get("sandbox") == "fail":  # test hook: bwrap can't set the sandbox up
            cmd[1:1] = ["--ro-bind", "/nonexistent/labkit-fault-injection", "/labkit-fault"]
        job.update(argv=sb.limited(cmd, limits, setup.joins), kernel_ip=f"{sb.KERNEL_DIR}/k", uid=setup.uid,
                   gid=setup.gid, memory={"limit_bytes": limits.sandbox_memory_bytes,
                                          "cgroup": str(setup.memory_dir) if setup.memory_dir else None,
                                          "watch_uid": None if setup.memory_dir else setup.uid})
    else:  # development without root: no isolation at all (the CLI says so)
        work = ipc.parent / f"{ipc.name}-work"
        work.mkdir()
        for rel, src in data.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).symlink_to(src)
        job.update(argv=sb.limited(kernel, limits, [], nproc=False), kernel_ip=f"{ipc}/k", uid=None, gid=None,
                   cwd=str(work), memory={"limit_bytes": limits.sandbox_memory_bytes, "cgroup": None,
                                          "watch_uid": None})
    return job


REPORT_TYPES = {  # what the grader reads from the client's report, with the value used when it is odd
    "status": (str, "machinery"), "why": (str, ""), "timed_out": (list, []), "outputs": (dict, {}),
    "exports": (dict, {}), "final": (dict, None), "tamper": (list, None), "guard": (bool, None),
    "truncated": (bool, False), "lost_output": (bool, False), "exports_too_large": (bool, False),
    "disk_exceeded": (bool, False),
    "memory_exceeded": (bool, False), "oom_kills": (int, 0), "peak_memory_mb": (float, None),
    "exit_status": (int, None), "recovered": (int, 0), "malformed_messages": (int, 0), "timings": (dict, {}),
    "stderr_tail": (str, ""),
}


def read_report(report) -> dict:
    """The client's report with every field of the type the grader expects (odd values replaced).

    The client is the grader's own code, but what it reports was computed from messages a student
    controlled: validated once here, so that nothing after this point meets a surprise."""
    report = report if type(report) is dict else {}
    out = {}
    for key, (kind, default) in REPORT_TYPES.items():
        value = report.get(key, default)
        if kind is float and type(value) is int:
            value = float(value)
        ok = type(value) is kind and not (kind is int and type(value) is bool)
        out[key] = value if ok else default
    if out["status"] not in ("ok", "timeout", "crashed", "machinery"):
        out["status"] = "machinery"
    stopped = report.get("stopped_at")
    out["stopped_at"] = stopped if stopped == "final" or (type(stopped) is int and stopped >= 0) else None
    out["timed_out"] = [s for s in out["timed_out"] if type(s) is int]
    out["why"] = untrusted.clean_text(out["why"])[:1000]
    return out


def run_client(job: dict) -> dict:
    """Run the notebook client on a job; its report, or a ``machinery`` report saying why there is none."""
    backstop = job["startup_timeout"] + job["timeout"] + 180
    try:
        proc = run_grader_process("labkit.grading.client", job, backstop)
    except subprocess.TimeoutExpired:
        return read_report({"status": "machinery", "why": f"the notebook client did not finish within {backstop:g} s"})
    if proc.returncode != 0:
        tail = untrusted.clean_text(proc.stderr.decode("utf-8", "replace")[-400:]).strip()
        return read_report({"status": "machinery", "why": f"the notebook client failed (exit {proc.returncode}): {tail}"})
    try:
        report = _last_json_line(proc.stdout, "the notebook client's report")
    except GraderError as exc:
        return read_report({"status": "machinery", "why": str(exc)})
    if type(report) is not dict or report.get("status") not in ("ok", "timeout", "crashed", "machinery"):
        return read_report({"status": "machinery", "why": "the notebook client's report has the wrong shape"})
    return read_report(report)


def _where(prep: prep_mod.Prepared, stopped_at) -> str:
    """Where a run stopped, in the student's words."""
    if stopped_at == "final":
        return "the final export (it calls your code)"
    if type(stopped_at) is int and 0 <= stopped_at < len(prep.steps):
        step = prep.steps[stopped_at]
        return f"cell {step['cell']}" if "cell" in step else f"the export of {step['export']} (it calls your code)"
    return "a cell"


def executed_notebook(prep: prep_mod.Prepared, report: dict) -> dict:
    """The student's cells, as run, with the outputs the client kept (for the feedback page)."""
    outputs = report.get("outputs") if type(report.get("outputs")) is dict else {}
    by_pos = {s["pos"]: outputs.get(str(i)) for i, s in enumerate(prep.steps) if "cell" in s}
    cells = []
    for pos, (cell, key) in enumerate(prep.cells):
        if cell.cell_type == "code" and pos not in by_pos:
            continue  # a visible test cell: its checks ran in the grader
        outs = by_pos.get(pos)
        cells.append({"cell_type": cell.cell_type, "source": cell.source,
                      "outputs": outs if type(outs) is list else []})
    return {"cells": cells}


def _values(report: dict) -> dict[str, list]:
    """Per question, the exported payloads in order: the ones at the question, then the final one."""
    values: dict[str, list] = {}
    exports = report.get("exports") if type(report.get("exports")) is dict else {}
    for q, payloads in exports.items():
        if type(payloads) is list:
            values.setdefault(q, []).extend(p for p in payloads if type(p) is dict)
    final = report.get("final") if type(report.get("final")) is dict else {}
    for q, vals in final.items():
        if type(vals) is dict:
            values.setdefault(q, []).append({"values": vals})
    return values


def decide(prep: prep_mod.Prepared, report: dict, settings: dict) -> tuple[str, list[str], list[str]]:
    """The status and the reason's parts, from what the grader observed (never from what the kernel said)."""
    notes, flags = list(prep.notes), list(prep.flags)
    status = "graded"
    stopped, why = report.get("status"), report.get("why")
    where = _where(prep, report.get("stopped_at"))
    timed_out = report["timed_out"]
    if stopped == "timeout" and why == "wall":
        status = "timeout"
        notes.insert(0, f"the notebook ran past the {settings['timeout']} s time limit and was stopped at {where}; "
                        "values exported before that were graded")
    elif stopped == "timeout":
        status = "timeout"
        notes.insert(0, f"{where} ran past the {settings['cell_timeout']} s per-cell limit and ignored the "
                        "interrupt; the notebook was stopped there; values exported before that were graded")
    elif timed_out:
        status = "timeout"
        cells = ", ".join(_where(prep, s) for s in timed_out)
        notes.insert(0, f"{cells} ran past the {settings['cell_timeout']} s per-cell limit and was interrupted; "
                        "the other cells ran")
    memory_mb = settings["memory_mb"]
    if stopped == "crashed":
        if why == "disk":
            what = (f"the notebook wrote more than {settings['max_disk_mb']} MB or {settings['max_files']} files "
                    "and was stopped")
        elif why == "memory" or report.get("oom_kills"):
            what = (f"the notebook used more memory than allowed (about {memory_mb} MB for all its processes "
                    f"together) and was stopped at {where}")
        else:
            code = report.get("exit_status")
            what = (f"the kernel died while running {where} (os._exit, exit(), a crash, or the memory/CPU limit"
                    + (f"; exit status {code}" if type(code) is int else "") + ")")
        if status == "graded":
            status = "crashed"
        notes.insert(0 if status == "crashed" else 1, f"{what}; values exported before that were graded")
    elif report.get("oom_kills"):
        notes.append(f"a process of the notebook was stopped at the memory limit (about {memory_mb} MB for all "
                     "its processes together)")
    if stopped == "ok":  # the run went to the end: the final export and the tripwire must have answered
        if report.get("final") is None:
            flags.append("the final export did not answer (its reply was missing or not the grader's)")
        if report.get("tamper") is None:
            flags.append("the tripwire did not report")
    if report.get("guard") is False:
        flags.append("the tripwire could not start")
    tamper = report.get("tamper") if type(report.get("tamper")) is list else []
    flags += [f"at run time: {str(t)[:200]}" for t in tamper[:10]]
    if report.get("malformed_messages"):
        flags.append(f"its kernel sent {report['malformed_messages']} message(s) the grader could not read "
                     "(forged or corrupt)")
    if report["exports_too_large"]:
        notes.append(f"the values to grade came to more than {client.EXPORTS_MAX_BYTES // 2**20} MB; later ones "
                     "were not received")
    if report.get("truncated"):
        notes.append(f"output beyond {settings['max_output_mb']} MB was dropped")
    elif report.get("lost_output"):
        notes.append("some output was too large (or came too fast) to keep and was dropped")
    if flags:
        status = "flagged"
        notes = [f"flagged for review: {'; '.join(flags)}"] + notes
    return status, notes, flags


def grade_one(folder: Path, assignment: au.Assignment, slot: int, workroot: Path, sandbox: bool = True,
              workers: int = 1, plans: dict | None = None) -> Graded:
    """Grade one submission folder; never raises because of the student's code."""
    start = time.perf_counter()
    settings = assignment.settings
    plans = plans if plans is not None else pl.compile_exports(assignment)
    prep = prep_mod.prepare(folder, assignment, plans)
    if prep.invalid:
        return Graded(prep.student, prep.digest, "invalid", prep.invalid, failed_results(assignment.tests, "invalid"),
                      round(time.perf_counter() - start, 2))
    timings = {"prepare": round(time.perf_counter() - start, 2)}
    limits = _limits(settings, workers)
    faults = FAULTS.get(prep.student, {})
    failures = []
    for attempt in range(MAX_ATTEMPTS):
        ipc = workroot / f"kernel-{slot}-{uuid.uuid4().hex[:8]}"
        ipc.mkdir(mode=0o700)
        setup = sb.prepare_slot(slot, limits) if sandbox else None
        try:
            job = build_job(prep, assignment, ipc, setup, limits, faults.get(attempt, {}))
            report = run_client(job)
        finally:
            if setup is not None and setup.group is not None:
                setup.group.remove()
            untrusted.remove_tree(ipc)
            untrusted.remove_tree(ipc.parent / f"{ipc.name}-work")
        if report.get("status") != "machinery":
            break
        failures.append(untrusted.clean_text(str(report.get("why")))[:300])
        time.sleep(0.5 * (attempt + 1))
    else:
        reason = (f"flagged for review: the grader could not run this notebook in {len(failures)} attempts (a fault "
                  f"of the grader, or tampering with it; grading again will retry it): {' | '.join(failures)}")
        return Graded(prep.student, prep.digest, "flagged", reason[:2000],
                      failed_results(assignment.tests, "the grader failed"), round(time.perf_counter() - start, 2),
                      None, {**timings, "attempts": MAX_ATTEMPTS, "machinery": failures}, machinery=True)
    client_t = report.get("timings") if type(report.get("timings")) is dict else {}
    timings.update({k: v for k, v in client_t.items() if type(v) in (int, float)})
    timings.update(attempts=len(failures) + 1, sandbox=client_t.get("client"),
                   papermill=client_t.get("client"), peak_memory_mb=report.get("peak_memory_mb"),
                   recovered_messages=report.get("recovered", 0))
    slow = client_t.get("slowest_step")
    if type(slow) is int and 0 <= slow < len(prep.steps):
        timings["slowest_cell"] = {"cell": _where(prep, slow), "seconds": client_t.get("slowest_seconds")}
    if failures:
        timings["machinery"] = failures
    status, notes, _ = decide(prep, report, settings)
    if failures:
        notes.append(f"graded on attempt {len(failures) + 1}: the grader's own machinery failed before "
                     f"({failures[0][:120]})")
    t0 = time.perf_counter()
    try:
        results = run_tests(assignment.tests, _values(report))
    except GraderError as exc:
        results = failed_results(assignment.tests, "the tests could not run")
        status = "flagged"
        notes.insert(0, f"flagged for review: the tests could not be run on the exported values: {exc}")
    timings["tests"] = round(time.perf_counter() - t0, 2)
    reason = untrusted.clean_text("; ".join(notes))
    return Graded(prep.student, prep.digest, status, reason[:2000], results, round(time.perf_counter() - start, 2),
                  executed_notebook(prep, report), timings)


# --- the batch -----------------------------------------------------------------------------------
def remove_stale_workroots(where: Path | None = None) -> None:
    """Working folders left by a grader that was killed (``kill -9``): nobody holds their lock any more.
    Never raises, whatever a folder holds (links, any depth, odd names)."""
    for root in Path(where or tempfile.gettempdir()).glob("labkit-grade-*"):
        try:
            st = os.lstat(root)
            if not os.path.isdir(root) or os.path.islink(root) or st.st_uid != os.geteuid():
                continue
            if (root / "grader.lock").exists():
                fd = os.open(root / "grader.lock", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its grader is alive
                finally:
                    os.close(fd)
            else:  # a folder of an older grader: judged by its pid
                try:
                    pid = int(untrusted.read_file(root / "grader.pid", 32).decode("ascii", "replace").strip())
                    os.kill(pid, 0)
                    continue
                except ProcessLookupError:
                    pass
                except (OSError, ValueError, untrusted.Untrusted):
                    continue  # not ours to judge (no pid file yet, or another user's)
            untrusted.remove_tree(root)
        except Exception:  # noqa: BLE001 -- one odd folder must not stop grading
            continue


def _short_tmp() -> str | None:
    """Where the working folder goes: the temp folder, unless its path is so long that the kernel's
    socket paths would pass the 107 bytes a unix socket's path may have (then /tmp)."""
    return "/tmp" if len(tempfile.gettempdir()) > 48 and os.path.isdir("/tmp") else None


def list_submissions(submissions: Path) -> list[Entry]:
    """Every entry of SUBMISSIONS/ a student could stand for (links included, to be refused)."""
    entries = []
    with os.scandir(submissions) as it:
        for e in it:
            if e.name.startswith("."):
                continue
            student = untrusted.student_id(e.name)[0]  # an odd name is graded, and flagged (prepare)
            if e.is_symlink():
                entries.append(Entry(Path(e.path), student, "the submission folder is a link (links are never "
                                                            "followed)"))
            elif e.is_dir(follow_symlinks=False):
                entries.append(Entry(Path(e.path), student))
    return sorted(entries, key=lambda e: e.student)


def find_students(submissions: Path) -> list[Path]:
    """The submission folders that can be graded (real folders, not links)."""
    return [e.folder for e in list_submissions(submissions) if e.problem is None]


def _write_outputs(gb: Gradebook, assignment: au.Assignment, out: Path) -> list[dict]:
    rows = gb.table(assignment.name)
    fb.write_grades_csv(out / "grades.csv", rows)
    fb.write_lms_csv(out / "lms.csv", assignment.name, rows)
    return rows


def _record(gb: Gradebook, assignment: au.Assignment, tests_digest: str, g: Graded, out: Path,
            secrets: list[str]) -> dict:
    """Write one submission's rows and feedback page; a failure here becomes the student's flagged row."""
    digest = (RETRY_MARK + tests_digest) if g.machinery else tests_digest
    try:
        gb.record(assignment.name, g.student, g.digest, digest, g.status, g.reason, assignment.max_score,
                  g.seconds, g.results)
    except Exception as exc:  # noqa: BLE001
        g = Graded(g.student, g.digest, "flagged", f"flagged for review: the gradebook refused this result "
                   f"({type(exc).__name__}: {untrusted.clean_text(str(exc))[:200]})",
                   failed_results(assignment.tests, "not recorded"), g.seconds, None, g.timings, machinery=True)
        gb.record(assignment.name, g.student, g.digest, RETRY_MARK + tests_digest, g.status, g.reason,
                  assignment.max_score, g.seconds, g.results)
    row = gb.submission(assignment.name, g.student)
    page = out / "feedback" / f"{g.student}.html"
    try:
        text = fb.render_feedback(assignment.name, row, gb.results(assignment.name, g.student), g.executed, secrets)
    except Exception as exc:  # noqa: BLE001 -- a page without the notebook beats no page
        text = fb.render_feedback(assignment.name, row, gb.results(assignment.name, g.student), None, secrets,
                                  note=f"the notebook could not be shown ({type(exc).__name__})")
    page.write_text(text, encoding="utf-8", errors="backslashreplace")
    return row


def grade(assignment_dir: str | Path, submissions: str | Path, out: str | Path, workers: int = 1,
          force: bool = False, sandbox: bool = True, echo=print, progress: bool = True,
          gradebook: str | Path | None = None) -> dict:
    """Grade every submission; write the gradebook, grades.csv, lms.csv, feedback/ and summary.json."""
    assignment = au.load_assignment(assignment_dir)
    plans = pl.compile_exports(assignment)
    allowed_data(assignment)  # an authoring mistake stops the grader before anything runs
    out, submissions = Path(out), Path(submissions)
    entries = list_submissions(submissions)
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    workers = max(1, workers)
    try:
        slots = Slots(workers)
    except (RuntimeError, OSError) as exc:
        raise sb.SandboxUnavailable(str(exc)) from exc
    try:
        if sandbox:
            reason = sb.available()
            if reason:
                raise sb.SandboxUnavailable(reason)
            sb.self_test(slots.numbers[0])
        return _grade_all(assignment, plans, entries, out, slots, workers, force, sandbox, echo, progress, gradebook)
    finally:
        slots.close()


def _grade_all(assignment, plans, entries, out, slots, workers, force, sandbox, echo, progress, gradebook) -> dict:
    gb = Gradebook(gradebook or out / "gradebook.sqlite")
    tests_digest = assignment.tests_digest()
    secrets = fb.hidden_texts(assignment, plans)
    todo, skipped, invalid_now = [], 0, []
    for e in entries:
        if e.problem:
            invalid_now.append(Graded(e.student, "bad-entry", "invalid", e.problem,
                                      failed_results(assignment.tests, "invalid"), 0.0))
            continue
        try:
            digest = prep_mod.read_submission(e.folder, assignment)[0].digest
        except Exception:  # noqa: BLE001 -- graded (and explained) below
            digest = "unreadable"
        if not force and gb.is_current(assignment.name, e.student, digest, tests_digest):
            skipped += 1
        else:
            todo.append(e)
    echo(f"grading {assignment.name}: {len(entries)} submissions, {len(todo) + len(invalid_now)} to grade, "
         f"{skipped} unchanged since the last run; {workers} worker(s), sandbox {'on' if sandbox else 'OFF'}")
    remove_stale_workroots()
    remove_stale_workroots(Path("/tmp"))
    workroot = Path(tempfile.mkdtemp(prefix="labkit-grade-", dir=_short_tmp()))
    os.chmod(workroot, 0o711)
    lock = os.open(workroot / "grader.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    (workroot / "grader.pid").write_text(str(os.getpid()))

    def task(entry: Entry) -> Graded:
        slot = slots.get()
        t0 = time.perf_counter()
        try:
            return grade_one(entry.folder, assignment, slot, workroot, sandbox=sandbox, workers=workers, plans=plans)
        except Exception as exc:  # noqa: BLE001 -- the grader's own failure on one student: theirs to review
            why = untrusted.clean_text(f"{type(exc).__name__}: {exc}")[:300]
            return Graded(entry.student, "grader-error", "flagged",
                          f"flagged for review: the grader failed on this submission ({why}); not the student's "
                          "doing; grading again will retry it", failed_results(assignment.tests, "the grader failed"),
                          round(time.perf_counter() - t0, 2), None, {}, machinery=True)
        finally:
            slots.put(slot)

    start = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="submission", desc=assignment.name, file=sys.stderr)
    timings = []

    def done(g: Graded) -> None:
        row = _record(gb, assignment, tests_digest, g, out, secrets)
        timings.append({"student": g.student, "seconds": g.seconds, **g.timings, "grader_failed": g.machinery})
        msg = f"{g.student}: {row['score']:g}/{row['max_score']:g} {row['status']}" + \
            (f" ({row['reason'][:100]})" if row["reason"] else "")
        if bar is not None:
            bar.write(msg)
            bar.update(1)
        else:
            echo(msg)

    try:
        for g in invalid_now:
            done(g)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(task, e): e for e in todo}
            for fut in as_completed(futures):
                try:
                    g = fut.result()
                    done(g)
                except Exception as exc:  # noqa: BLE001 -- recording failed twice: keep going, say so
                    echo(f"{futures[fut].student}: could not be recorded ({type(exc).__name__}: {exc})")
    finally:
        if bar is not None:
            bar.close()
        os.close(lock)
        untrusted.remove_tree(workroot)
        rows = _write_outputs(gb, assignment, out)
        wall = round(time.perf_counter() - start, 2)
        counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
        n_now = len(todo) + len(invalid_now)
        summary = {"assignment": assignment.name, "submissions": len(entries), "graded_now": n_now,
                   "skipped": skipped, "seconds": wall,
                   "seconds_per_submission": round(wall / len(todo), 2) if todo else None,
                   "workers": workers, "sandbox": sandbox, "statuses": counts,
                   "mean_score": round(sum(r["score"] for r in rows) / len(rows), 3) if rows else None,
                   "max_score": assignment.max_score, "timings": timings,
                   "retried": sum(1 for t in timings if t.get("attempts", 1) > 1),
                   "grader_failures": sum(1 for t in timings if t["grader_failed"]),
                   "slots": slots.numbers,
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
