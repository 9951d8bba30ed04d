"""The sandbox and the grader's own processes: what they see, what bounds them, who they share with.

Threat-model classes covered here (README, "Threat model"):

5. nothing the sandbox can read holds a hidden test (scan of everything it mounts);
7. limits hold for the whole sandbox: one memory bound for all its processes together, and two
   graders running at once share no slot, user or cgroup;
8. no student file runs in the grader: every grader-side process is isolated.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from grading_fixtures import ROOT, make_assignment, read_grades, student_nb, submit

from labkit.grading import authoring as au
from labkit.grading import batch, cgroups, client
from labkit.grading import sandbox as sb
from labkit.grading.slots import Slots

NEEDS_SANDBOX = pytest.mark.skipif(sb.available() is not None, reason=f"no sandbox here: {sb.available()}")


@NEEDS_SANDBOX
def test_sandbox_sees_read_only_folders_under_tmp(tmp_path, monkeypatch):
    # a checkout under /tmp (CI may clone there): the private /tmp must not hide the venv or labkit
    shared = tmp_path / "checkout"
    shared.mkdir()
    (shared / "marker.txt").write_text("visible")
    shared.chmod(0o755)
    roots = sb._read_only_roots()
    monkeypatch.setattr(sb, "_read_only_roots", lambda: roots + [str(shared)])
    work = tmp_path / "work"
    work.mkdir()
    with Slots(1) as slots:
        out = sb.run(work, ["cat", str(shared / "marker.txt")], slots.numbers[0], sb.Limits(wall_seconds=30))
    assert out.returncode == 0 and "visible" in out.stdout, out.stdout


@NEEDS_SANDBOX
def test_a_broken_sandbox_fails_the_grader_not_the_students(tmp_path, monkeypatch):
    folder = make_assignment(tmp_path / "assignments" / "hw")
    subs = tmp_path / "subs"
    submit(subs, "s0", student_nb(folder))
    labkit_only = [r for r in sb._read_only_roots() if r.endswith("labkit")]
    monkeypatch.setattr(sb, "_read_only_roots", lambda: labkit_only)  # no Python inside the sandbox
    with pytest.raises(sb.SandboxUnavailable, match="could not start Python"):
        batch.grade(folder, subs, tmp_path / "out", echo=lambda *a: None, progress=False)
    assert not (tmp_path / "out" / "grades.csv").exists()  # no student was blamed


# --- 5. nothing the sandbox can read holds a hidden test -------------------------------------------
def hidden_test_texts() -> list[str]:
    """Every assignment's hidden tests, line by line (long enough to be specific), and their `# uses:`."""
    texts = set()
    for folder in sorted((ROOT / "assignments").iterdir()):
        if not (folder / "assignment.json").exists() and not list(folder.glob("*.ipynb")):
            continue
        for t in au.load_assignment(folder).tests:
            if t.hidden:
                texts.update(line.strip() for line in t.body.splitlines() if len(line.strip()) >= 16)
                texts.update(expr.strip() for expr in t.uses.values())
    return sorted(texts)


def test_the_readme_and_the_package_metadata_hold_no_hidden_test():
    from importlib.metadata import metadata

    texts = hidden_test_texts()
    assert texts, "no assignment has hidden tests to look for"
    readme = (ROOT / "README.md").read_text()
    meta = str(metadata("labkit"))
    for text in texts:
        assert text not in readme, text
        assert text not in meta, text


def _mounted_sources(ipc: Path) -> list[Path]:
    """The host paths a student's kernel can read: every bind in the real sandbox command line,
    plus every assignment's data files."""
    data = {}
    for folder in (ROOT / "assignments").iterdir():
        if (folder / "assignment.json").exists():
            data.update({f"{folder.name}/{k}": v for k, v in batch.allowed_data(au.load_assignment(folder)).items()})
    cmd = sb.command(None, ["true"], 0, 0, data, sb.Limits(), ipc=ipc, info_fd=True)
    sources = [Path(cmd[i + 1]) for i, a in enumerate(cmd) if a in ("--ro-bind", "--bind")]
    return sorted(set(sources))


def _dpkg_files() -> set[str]:
    """Files installed by Debian packages (from the Debian archive: they cannot hold our tests)."""
    owned = set()
    for listing in Path("/var/lib/dpkg/info").glob("*.list"):
        try:
            owned.update(listing.read_text(errors="replace").splitlines())
        except OSError:
            pass
    return owned


@pytest.mark.slow
def test_nothing_the_sandbox_can_read_holds_a_hidden_test(tmp_path):
    """Scans every file under every folder the sandbox mounts for every assignment's hidden-test text.

    Left out, and said here: files that Debian's package manager installed (from the Debian
    archive), and ELF binaries (compiled code); everything else is read in full, whatever its name."""
    texts = hidden_test_texts()
    patterns = tmp_path / "patterns.txt"
    patterns.write_text("\n".join(texts) + "\n")
    ipc = tmp_path / "ipc"
    ipc.mkdir()
    (ipc / "kernel.json").write_text("{}")
    owned = _dpkg_files()
    files, skipped = tmp_path / "files.txt", 0
    with open(files, "wb") as fh:
        for source in _mounted_sources(ipc):
            walk = [(str(source.parent), [], [source.name])] if source.is_file() else os.walk(source)
            for folder, _, names in walk:
                for name in names:
                    path = os.path.join(folder, name)
                    if path in owned or os.path.islink(path) or not os.path.isfile(path):
                        continue
                    try:
                        with open(path, "rb") as f:
                            if f.read(4) == b"\x7fELF":
                                skipped += 1
                                continue
                    except OSError:
                        continue
                    fh.write(os.fsencode(path) + b"\0")
    found = subprocess.run(f"xargs -0 -r -P 2 -n 2000 grep -lF -f {patterns} -- < {files}", shell=True,
                           capture_output=True, text=True)
    assert found.returncode in (0, 1, 123), found.stderr[-500:]
    leaks = [line for line in found.stdout.splitlines() if line]
    assert leaks == [], f"hidden-test text is readable inside the sandbox: {leaks[:10]}"
    assert os.path.getsize(files) > 10_000  # the scan really covered the venv and labkit


# --- 7. limits for the whole sandbox ------------------------------------------------------------------
def test_slots_are_locked_per_process_and_never_shared():
    with Slots(2) as a, Slots(2) as b:
        assert len(set(a.numbers) | set(b.numbers)) == 4
    with Slots(1) as again:  # released when closed (or when the process ends)
        assert again.numbers[0] in set(a.numbers) | set(b.numbers) or again.numbers[0] < 4


FORK_HOGS = """
import os, signal, time
children = []
for i in range(6):
    pid = os.fork()
    if pid == 0:
        try:
            block = bytearray(300 * 1024 * 1024)
            for j in range(0, len(block), 4096):
                block[j] = 1  # really resident
            time.sleep(20)
        finally:
            os._exit(0)
    children.append(pid)
statuses = [os.waitpid(pid, 0)[1] for pid in children]
print("children", statuses)
killed = sum(1 for s in statuses if os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL)
print("killed", killed)
squares = data ** 2
"""


def _grade_hogs(tmp_path: Path) -> tuple[dict, dict, str]:
    # 6 children x 300 MB = 1.8 GB resident, each under the per-process limit (1536 MB of address space);
    # the whole sandbox may hold 1536 + 64 MB plus its tmpfs folders (116 MB): about 1.7 GB
    folder = make_assignment(tmp_path / "hw", memory_mb=1536, max_disk_mb=50, cell_timeout=60, timeout=120)
    subs = tmp_path / "subs"
    submit(subs, "hogs", student_nb(folder, {"answer-6": FORK_HOGS}))
    summary = batch.grade(folder, subs, tmp_path / "out", echo=lambda *a: None, progress=False)
    page = (tmp_path / "out" / "feedback" / "hogs.html").read_text()
    return summary, read_grades(tmp_path / "out")["hogs"], page


@NEEDS_SANDBOX
@pytest.mark.slow
def test_one_memory_bound_holds_all_of_a_sandboxs_processes(tmp_path):
    if cgroups.layout() is None or not cgroups.layout().has_memory:
        pytest.skip("no memory cgroup here (the watchdog test covers this machine)")
    summary, row, page = _grade_hogs(tmp_path)
    limit_mb = sb.Limits(memory_mb=1536, max_disk_mb=50).sandbox_memory_bytes / 2**20
    peak = summary["timings"][0]["peak_memory_mb"]
    assert peak is not None and peak <= limit_mb * 1.02, (peak, limit_mb)  # the cgroup's own high-water mark
    # the children could not all hold their memory: at least one was killed, or the kernel itself
    assert "killed 0" not in page, (row, page[-2000:])
    assert "memory" in row["reason"], row


@NEEDS_SANDBOX
@pytest.mark.slow
def test_without_a_memory_cgroup_the_watchdog_bounds_the_sandbox(tmp_path, monkeypatch):
    monkeypatch.setattr(cgroups, "_LAYOUT", [None])  # as on a machine without cgroups
    summary, row, page = _grade_hogs(tmp_path)
    # flagged (it forks: the scan says so), and stopped by the watchdog before the children finished
    assert "used more memory than allowed" in row["reason"] and row["score"] == "3", row
    assert "children [" not in page


def test_the_watchdog_counts_a_users_processes():
    assert client.rss_bytes_of_user(os.getuid()) > 10 * 2**20  # this very process, at least
    assert client.rss_bytes_of_user(2**31 - 7) == 0


@NEEDS_SANDBOX
@pytest.mark.slow
def test_two_graders_at_once_share_no_slot_user_or_cgroup(tmp_path):
    folder = make_assignment(tmp_path / "hw")
    procs, outs = [], []
    for g in range(2):
        subs = tmp_path / f"subs{g}"
        for i in range(2):
            submit(subs, f"s{i}", student_nb(folder, {"answer-6": "import time\ntime.sleep(1)\nsquares = data ** 2"}))
        out = tmp_path / f"out{g}"
        outs.append(out)
        procs.append(subprocess.Popen([sys.executable, "-I", "-m", "labkit", "grade", str(folder), str(subs), "--out",
                                       str(out), "--workers", "2", "--no-progress", "--json"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/"))
    results = [p.communicate(timeout=600) for p in procs]
    for p, (stdout, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr[-2000:]
    summaries = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in results]
    slots = [set(s["slots"]) for s in summaries]
    assert len(slots[0]) == len(slots[1]) == 2 and not slots[0] & slots[1]  # slot N = user and cgroup N
    assert all(s["statuses"]["graded"] == 2 for s in summaries), summaries
    for out in outs:
        assert {r["score"] for r in read_grades(out).values()} == {"7"}


# --- 8. no student file runs in the grader ---------------------------------------------------------
EVIL = "import pathlib\npathlib.Path({marker!r}).write_text('imported {name}')\n"


@NEEDS_SANDBOX
@pytest.mark.slow
def test_grader_processes_never_import_a_students_files(tmp_path, monkeypatch):
    """Run from a folder that holds a student's json.py (and friends), with PYTHONPATH pointing there:
    every grader-side process (the notebook client, the test runner) imports none of them."""
    folder = make_assignment(tmp_path / "hw")
    subs = tmp_path / "subs"
    submit(subs, "s0", student_nb(folder))
    evil = subs / "s0"
    markers = []
    for name in ("json", "numpy", "zmq", "labkit", "sitecustomize", "usercustomize", "encodings_extra"):
        marker = tmp_path / f"imported-{name}"
        markers.append(marker)
        (evil / f"{name}.py").write_text(EVIL.format(marker=str(marker), name=name))
    monkeypatch.chdir(evil)
    monkeypatch.setenv("PYTHONPATH", str(evil))
    monkeypatch.setenv("PYTHONSTARTUP", str(evil / "json.py"))
    summary = batch.grade(folder, subs, tmp_path / "out", echo=lambda *a: None, progress=False)
    assert summary["statuses"]["graded"] == 1
    assert [m.name for m in markers if m.exists()] == []
    argv = batch.grader_argv("labkit.grading.checks")
    assert argv[1] == "-I"
    probe = subprocess.run(argv[:2] + ["-c", "import sys, os; print(os.getcwd() in sys.path, '' in sys.path)"],
                           capture_output=True, text=True, cwd=evil)
    assert probe.stdout.split() == ["False", "False"]
