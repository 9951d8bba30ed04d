"""Grading throughput: labkit (sandbox on, --workers 2) vs nbgrader's ``autograde``, in one run.

Both grade the same N submissions of ``assignments/tf_basics`` (a TensorFlow assignment; correct
and partial answers alternate). nbgrader gets an equivalent nbgrader-format copy of the
assignment (same cells, solution regions, visible and hidden tests, points) and runs
``generate_assignment`` once, then ``autograde`` is timed. Its notebooks run on the lab's own
Python kernel (the same interpreter and TensorFlow as labkit's), so only the graders differ.

nbgrader is never installed into the lab's environment: this script creates its own virtual
environment (``~/.cache/labkit/bench-nbgrader-venv``, outside the repository) from PyPI, with
nbgrader pinned below. We also run labkit with one worker: the single-process baseline.

    .venv/bin/python bench/grading.py            # 20 submissions (about 8 minutes on 2 cores)
    .venv/bin/python bench/grading.py --quick    # 4 submissions (about 2 minutes)

Human lines first; the last line is one JSON object with the figures. Where the time goes is
taken from labkit's own per-submission timings (summary.json): the sandbox and kernel start,
the slowest cell (the TensorFlow import), the other cells, the export requests, the client's
teardown, and the tests.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from labkit.grading import authoring as au  # noqa: E402
from labkit.grading import batch  # noqa: E402
from labkit.grading import release as rel  # noqa: E402
from labkit.grading import sandbox as sb  # noqa: E402

NBGRADER_VERSION = "0.9.6"
NBGRADER_VENV = Path.home() / ".cache" / "labkit" / f"bench-nbgrader-{NBGRADER_VERSION}-venv"
ASSIGNMENT = ROOT / "assignments" / "tf_basics"


# --- the submissions ---------------------------------------------------------------------------
def sample_answers() -> list[dict[str, str]]:
    """Answer-cell sources (by labkit cell key) of the bundled correct and partial samples."""
    out = []
    for name in ("correct", "partial"):
        nb = nbformat.read(ASSIGNMENT / "samples" / name / "tf_basics.ipynb", 4)
        out.append({c.metadata["labkit"]["key"]: c.source for c in nb.cells
                    if c.metadata.get("labkit", {}).get("kind") == "answer"})
    return out


def labkit_submissions(folder: Path, n: int) -> Path:
    a = au.load_assignment(ASSIGNMENT)
    answers = sample_answers()
    for i in range(n):
        nb = rel.student_notebook(a)
        for cell in nb.cells:
            cell.source = answers[i % 2].get(cell.metadata["labkit"]["key"], cell.source)
        (folder / f"s{i:02d}").mkdir(parents=True)
        nbformat.write(nb, folder / f"s{i:02d}" / a.notebook)
    return folder


# --- nbgrader ----------------------------------------------------------------------------------
def nbgrader_env() -> Path:
    """The benchmark's own environment with nbgrader (created once, from PyPI)."""
    exe = NBGRADER_VENV / "bin" / "nbgrader"
    if not exe.exists():
        print(f"creating {NBGRADER_VENV} with nbgrader=={NBGRADER_VERSION} (once) ...", flush=True)
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(NBGRADER_VENV)],
                       check=True)
        subprocess.run([str(NBGRADER_VENV / "bin" / "pip"), "install", "-q", f"nbgrader=={NBGRADER_VERSION}"],
                       check=True)
    return exe


def nbgrader_source(a: au.Assignment) -> nbformat.NotebookNode:
    """The same assignment in nbgrader's format: solution cells, locked cells, autograder tests."""
    nb = copy.deepcopy(a.source)
    for i, cell in enumerate(nb.cells):
        meta = {"schema_version": 3, "grade_id": f"cell{i}", "grade": False, "solution": False, "locked": False}
        if cell.cell_type == "code" and au.is_test_cell(cell):
            m = au.TEST_RE.match(au.first_line(cell))
            t = au.parse_test(cell, i, {})
            body = "".join(f"{k} = {v}\n" for k, v in t.uses.items()) + t.body
            if m.group(1):
                body = f"### BEGIN HIDDEN TESTS\n{body}### END HIDDEN TESTS\n"
            cell.source = f"# {m.group(4)}\n{body}"
            meta.update(grade=True, locked=True, points=t.points)
        elif cell.cell_type == "code" and au.is_answer_cell(cell):
            cell.source = re.sub(rf"\n?[ \t]*{au.BEGIN_PROMPT}.*?{au.END_PROMPT}", "", cell.source, flags=re.S)
            meta.update(solution=True)
        elif cell.cell_type == "code":
            meta.update(locked=True)
        cell.metadata["nbgrader"] = meta
    return nb


def nbgrader_course(root: Path, n: int) -> Path:
    a = au.load_assignment(ASSIGNMENT)
    (root / "source" / a.name).mkdir(parents=True)
    nbformat.write(nbgrader_source(a), root / "source" / a.name / a.notebook)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        "c.ExecutePreprocessor.timeout = 120\n")
    # the lab's interpreter as the "python3" kernel, so that nbgrader runs the same TensorFlow
    spec = root / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (lab)", "language": "python"}))
    return root


def nbgrader_submissions(root: Path, n: int, env: dict, exe: Path) -> None:
    a = au.load_assignment(ASSIGNMENT)
    proc = subprocess.run([str(exe), "generate_assignment", a.name, "--force"], cwd=root, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    released = nbformat.read(root / "release" / a.name / a.notebook, 4)
    answers = sample_answers()
    keys = [au.cell_key(c, i) for i, c in enumerate(a.source.cells)]
    for i in range(n):
        nb = copy.deepcopy(released)
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
            if cell.metadata.get("nbgrader", {}).get("solution"):
                cell.source = answers[i % 2].get(keys[int(gid[4:])], cell.source)
        dest = root / "submitted" / f"s{i:02d}" / a.name
        dest.mkdir(parents=True)
        nbformat.write(nb, dest / a.notebook)


def run_nbgrader(root: Path, n: int) -> dict:
    exe = nbgrader_env()
    env = {**os.environ, "JUPYTER_PATH": str(root / "jupyter"), "TF_CPP_MIN_LOG_LEVEL": "2",
           "JUPYTER_PLATFORM_DIRS": "1", "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    nbgrader_course(root, n)
    nbgrader_submissions(root, n, env, exe)
    start = time.perf_counter()
    proc = subprocess.run([str(exe), "autograde", "tf_basics", "--force"], cwd=root, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader autograde failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    scores = nbgrader_scores(root, exe, env)
    return {"seconds": round(seconds, 1), "seconds_per_submission": round(seconds / n, 2), "scores": scores}


def nbgrader_scores(root: Path, exe: Path, env: dict) -> dict:
    """Total score per student from nbgrader's gradebook (a sanity check: same scores as labkit)."""
    code = ("import json, sys\nfrom nbgrader.api import Gradebook\n"
            "with Gradebook('sqlite:///gradebook.db') as gb:\n"
            "    print(json.dumps({s.student.id: s.score for s in gb.assignment_submissions('tf_basics')}))\n")
    out = subprocess.run([str(exe.parent / "python"), "-c", code], cwd=root, env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- labkit ------------------------------------------------------------------------------------
def run_labkit(root: Path, n: int, workers: int) -> dict:
    subs = labkit_submissions(root / "subs", n)
    summary = batch.grade(ASSIGNMENT, subs, root / "out", workers=workers, force=True, sandbox=True,
                          progress=False, echo=lambda *a: None)
    t = summary["timings"]

    def med(key, f=None):
        vals = [(f or (lambda x: x[key]))(x) for x in t if x.get(key) is not None]
        return round(statistics.median(vals), 2) if vals else None

    slowest = med("slowest_cell", lambda x: x["slowest_cell"]["seconds"])
    cells = med("cells")
    client = med("client")
    where = {  # medians per submission, seconds (one submission's own wall time, not the batch's)
        "total": med("seconds"),
        "prepare": med("prepare"),
        "sandbox_and_kernel_start": med("kernel_start"),
        "tensorflow_import_cell": slowest,
        "other_cells": round(cells - slowest, 2),
        "exports": med("exports"),
        "teardown": round(client - med("kernel_start") - cells - med("exports"), 2),
        "tests": med("tests"),
    }
    slow_cells = sorted({x["slowest_cell"]["cell"] for x in t if x.get("slowest_cell")})
    scores = {}

    with open(root / "out" / "grades.csv") as fh:
        for r in csv.DictReader(fh):
            scores[r["student_id"]] = float(r["score"])
    return {"workers": workers, "seconds": summary["seconds"],
            "seconds_per_submission": summary["seconds_per_submission"], "statuses": summary["statuses"],
            "where_time_goes": where, "slowest_cell_is": slow_cells, "scores": scores}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submissions", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="4 submissions")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-single-worker", action="store_true", help="skip labkit's 1-worker baseline")
    args = p.parse_args()
    n = 4 if args.quick else args.submissions
    if sb.available():
        print(f"bench/grading.py: {sb.available()}", file=sys.stderr)
        return 2
    load = os.getloadavg()
    print(f"grading {n} submissions of tf_basics; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
          flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="labkit-bench-grading-") as tmp:
        tmp = Path(tmp)
        order = [("labkit", args.workers), ("nbgrader", 1)] + ([] if args.no_single_worker else [("labkit", 1)])
        for name, workers in order:
            key = name if name == "nbgrader" else f"labkit_workers{workers}"
            print(f"-- {key} ...", flush=True)
            where = tmp / key
            where.mkdir()
            r = run_nbgrader(where, n) if name == "nbgrader" else run_labkit(where, n, workers)
            results[key] = r
            print(f"   {r['seconds']:.1f} s, {r['seconds_per_submission']:.2f} s per submission", flush=True)
            if "where_time_goes" in r:
                print(f"   per submission (median): {r['where_time_goes']}", flush=True)
    lab, nbg = results[f"labkit_workers{args.workers}"], results["nbgrader"]
    same = {s: nbg["scores"].get(s) for s in lab["scores"]} == lab["scores"]
    figures = {
        "bench": "grading", "submissions": n, "assignment": "tf_basics", "sandbox": True,
        "nbgrader_version": NBGRADER_VERSION, "cores": os.cpu_count(),
        "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()],
        "labkit_s_per_submission": lab["seconds_per_submission"],
        "nbgrader_s_per_submission": nbg["seconds_per_submission"],
        "ratio_nbgrader_over_labkit": round(nbg["seconds_per_submission"] / lab["seconds_per_submission"], 2),
        "labkit_1worker_s_per_submission": results.get("labkit_workers1", {}).get("seconds_per_submission"),
        "same_scores": same,
        "labkit_where_time_goes": lab["where_time_goes"], "labkit_slowest_cell": lab["slowest_cell_is"],
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "scores"} for k, v in results.items()},
    }
    print(f"labkit {figures['labkit_s_per_submission']} s/submission vs nbgrader "
          f"{figures['nbgrader_s_per_submission']} s/submission: nbgrader/labkit = "
          f"{figures['ratio_nbgrader_over_labkit']}; same scores: {same}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
