"""The hostile-input suite: every class of attack in the README's threat model, several variants each.

One batch (2 workers, a TensorFlow-free assignment) mixes every hostile submission with correct
ones; the tests then check, class by class, what the README's threat model promises:

1. one hostile submission never stops a batch;
2. the grade comes from a channel the student can't reach or forge;
3. exported values can't be replaced after export;
4. hidden-test text never reaches the feedback page;
5. (nothing the sandbox can read holds a hidden test: ``test_grading_sandbox.py``);
6. links in SUBMISSIONS/ are never followed;
7. limits hold for the whole sandbox (the memory part: ``test_grading_sandbox.py``);
8. no student file runs in the grader (``test_grading_sandbox.py``);
and detection: the flagging scan reads code as Python does.

The boundary between sandbox and grader is also fuzzed (random bytes, random JSON, deep nesting)
in-process, at every place the grader reads something back; that part needs no sandbox.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import random
from pathlib import Path

import nbformat
import pytest
from grading_fixtures import HIDDEN_INPUT, SECRET, insert_after, make_assignment, read_grades, student_nb, submit
from nbformat.v4 import new_code_cell, new_markdown_cell

from labkit.grading import authoring as au
from labkit.grading import batch, checks, client, feedback, untrusted
from labkit.grading import plans as pl
from labkit.grading import prepare as prep_mod
from labkit.grading import sandbox as sb
from labkit.grading.gradebook import Gradebook

HIDDEN_LINES = [HIDDEN_INPUT, SECRET, "assert np.allclose(squares, [0, 1, 4, 9])", "assert t2 == 5.0",
                "assert answer == 42", "np.ones"]
BAD_UTF8 = os.fsdecode(b"bad-name-\xff\xfe")
LONG_NAME = "x" * 250

# --- the submissions ------------------------------------------------------------------------------
# 1. one hostile submission never stops a batch
NESTED_REPLY = """
import labkit.grading.export as ex
def deep(n):
    v = []
    for _ in range(n):
        v = [v]
    return v
ex.values = lambda plans, ns: {name: {"value": deep(300)} for name in plans}  # deeper than the grader reads
"""
ODD_SHAPES = """
import labkit.grading.export as ex
class Odd(ex.Exported):
    pass
real_export = ex.export
shapes = iter([{"question": 1, "values": [1, 2]}, {"values": {"squares": [1, 2]}}, "text", [None], {"values": None}])
ex.export = lambda plan, ns: ex.Exported(next(shapes, {"values": {"t": {"value": {"__bigint__": "9" * 5000}}}}))
"""
HUGE_NUMBERS = """
squares = [1e308 * 10, -1e308 * 10, 2 ** 62, float("nan")]
big = 10 ** 5000
"""
SURROGATE_ERRORS = """
print("lone surrogates: \\udc80 \\ud800 and a NUL \\x00 and an escape \\x1b[31m")
raise ValueError("bad \\udcff\\ud800 value")
"""
DEEP_FOLDERS = """
import os
def dig(start, levels, name):
    here = os.open(start, os.O_RDONLY)
    for i in range(levels):  # far deeper than PATH_MAX: only fd-relative calls still work down there
        os.mkdir(name, dir_fd=here)
        nxt = os.open(name, os.O_RDONLY, dir_fd=here)
        os.close(here)
        here = nxt
    os.symlink("/etc", "link", dir_fd=here)
    os.mkfifo("fifo", dir_fd=here)
    os.close(here)
dig(".", 300, "d" * 200)
dig("/tmp", 5000, "d")
print("dug")
"""
GARBAGE = """
import json, os, random
kernel = get_ipython().kernel
session, parent = kernel.session, kernel.get_parent("shell")
rng = random.Random(7)
def deep(n):
    v = "x"
    for _ in range(n):
        v = {"a": [v]}
    return v
bodies = [deep(5000), {"name": "stdout", "text": ["not", "text"]}, {"data": "not a dict"}, {"data": {"text/plain": 5}},
          {"traceback": "nope", "ename": None, "evalue": 10 ** 4000}, {"execution_state": ["idle"]}, [1, 2, 3],
          {"text": "\\udcff" * 10, "name": "stdout"}, {"data": {"image/png": "not png"}}]
for body in bodies:
    for kind in ("stream", "display_data", "error", "status", "execute_result", "clear_output"):
        try:
            session.send(kernel.iopub_socket, kind, body, parent=parent)
        except Exception as exc:
            pass
for _ in range(200):
    kernel.iopub_socket.send_multipart([os.urandom(rng.randrange(1, 64)) for _ in range(rng.randrange(1, 8))])
    kernel.iopub_socket.send_multipart([b"<IDS|MSG>", b"x" * 64, b"{", b"}", b"[]", os.urandom(32)])
# correctly signed, for this very cell, and absurdly nested: 100 000 levels
parts = [session.pack(session.msg_header("stream")), session.pack(parent["header"]), b"{}",
         b'{"name": "stdout", "text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"]
kernel.iopub_socket.send_multipart([b"stream", b"<IDS|MSG>", session.sign(parts), *parts])
squares = data ** 2
"""

# 2. the result channel can't be reached or forged
FORGE_AND_DIE = """
import json, os, signal
fake = json.dumps({"status": "ok", "final": {"q1": {"t": {"value": 6.0}, "t2": {"value": 5.0}}}, "tamper": []})
for fd in (1, 2):
    os.write(fd, ("\\nLABKIT-REPORT " + fake + "\\n").encode())
try:
    open("/proc/1/fd/1", "w").write(fake + "\\n")
except OSError as exc:
    print("proc fd", type(exc).__name__)
import sys, time
sys.stdout.flush()
time.sleep(1)
os.kill(os.getpid(), signal.SIGKILL)
"""
KILL_INIT = """
import os, signal
for pid in (1, os.getppid()):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as exc:
        print("kill", pid, type(exc).__name__)
import time
time.sleep(2)
"""
FAKE_FINAL = """
import labkit.grading.export as ex
ex.finish = lambda *a, **k: None
"""
SOCKETS = """
import os
print("sockets", sorted(os.listdir("/run/kernel")))
for what, act in [("rename", lambda: os.rename("/run/kernel/k-1", "/run/kernel/k-9")),
                  ("link", lambda: os.symlink("/etc/passwd", "/run/kernel/k-7")),
                  ("create", lambda: open("/run/kernel/x", "w")),
                  ("unlink", lambda: os.unlink("/run/kernel/k-1"))]:
    try:
        act()
        print("swap", what, "WORKED")
    except OSError as exc:
        print("swap", what, type(exc).__name__)
"""

# 3. exported values can't be replaced after export
REWRITE_LATER = """
import json, os
where = "." + "lab" + "kit/values"
os.makedirs(where, exist_ok=True)
for name in ("q1.json", "final-q1.json", "q2.json", "final-q2.json"):
    json.dump({"values": {"t": {"value": 6.0}, "t2": {"value": 5.0},
               "squares": {"value": {"__ndarray__": {"dtype": "<f8", "shape": [4], "data": [0, 1, 4, 9]}}}}},
              open(os.path.join(where, name), "w"))
def total(x):
    return float(np.sum(x))  # too late: q1 was exported right after its tests
squares = data ** 2
"""
PATCH_LATER = """
import labkit.grading.export as ex
ex.values = lambda plans, ns: {n: {"value": 6.0 if n == "t" else 5.0} for n in plans}
"""

# 4. hidden-test text never reaches the feedback page
SPY = """
import inspect, sys
seen = []
def spy(*args):
    for a in args:
        seen.append(repr(getattr(a, "raw_cell", a))[:1000])
    for f in inspect.stack()[:10]:
        seen.append(repr(f.frame.f_locals)[:1000])
for event in ("pre_execute", "pre_run_cell", "post_run_cell"):
    get_ipython().events.register(event, spy)
def profile(frame, event, arg):
    if event == "call" and frame.f_code.co_name in ("evaluate", "values", "export", "user_expressions", "ev"):
        seen.append(frame.f_code.co_name + " " + repr(frame.f_locals)[:3000])
sys.setprofile(profile)
def total(x):
    seen.extend(repr(f.frame.f_locals)[:3000] for f in inspect.stack()[:12])
    seen.append("ARG " + repr(x))
    return float(np.sum(x))
"""
SPY_LATER = """
import base64
sys.setprofile(None)
caught = [s[:1500] for s in seen if s.startswith(("ARG", "evaluate", "values", "export", "ev "))]
print("B64", base64.b64encode("\\n".join(caught).encode()).decode())  # (a page shows 20 000 characters per output)
hist = get_ipython().history_manager
print("IN", In, _ih)
print("SEEN", "\\n".join(seen))
"""

# detection
HOMOGLYPH = "import ｓｏｃｋｅｔ\nsquares = data ** 2"
STRING_BUILT = "import sys\nmod = sys.modules.get('lab' + 'kit.grading.ex' + 'port')\nsquares = data ** 2"
ALIASED_PATCH = "import numpy as n\nfrom numpy import testing as nt\nn.allclose = lambda *a, **k: True\nsquares = data ** 2"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    if sb.available() is not None:
        pytest.skip(f"no sandbox here: {sb.available()}")
    tmp = tmp_path_factory.mktemp("hostile")
    folder = make_assignment(tmp / "assignments" / "hw", cell_timeout=8)
    subs, out = tmp / "subs", tmp / "out"
    good = submit(subs, "good", student_nb(folder))
    submit(subs, "good2", student_nb(folder))
    ok = student_nb(folder)

    # -- classic bad input
    submit(subs, "invalid_json", '{"cells": [{"cell_type": "code", "sou')
    nb3 = json.loads(nbformat.writes(ok))
    nb3["nbformat"] = 3
    submit(subs, "wrong_nbformat", json.dumps(nb3))
    (subs / "no_notebook").mkdir(parents=True)
    (subs / "no_notebook" / "notes.txt").write_text("I forgot")
    submit(subs, "renamed_notebook", ok, name="hw (1).ipynb")
    nb = student_nb(folder)
    nb.cells = [c for c in nb.cells if c.metadata["labkit"]["key"] not in ("code-2", "test-q1-4")]
    submit(subs, "deleted_cells", nb)
    nb = student_nb(folder)
    next(c for c in nb.cells if c.metadata["labkit"]["key"] == "code-2").source = \
        "import numpy as np\ndata = np.zeros(N)  # made easier"
    submit(subs, "altered_protected", nb)
    nb = student_nb(folder)
    for c in nb.cells:
        c.metadata = {}
    submit(subs, "metadata_stripped", nb)
    nb = student_nb(folder)
    nb.cells.insert(3, new_markdown_cell("my notes"))
    nb.cells.insert(3, new_code_cell("scratch = 1 + 1"))
    submit(subs, "added_cells", nb)
    submit(subs, "infinite_loop", student_nb(folder, {"answer-6": "while True:\n    pass"}))
    submit(subs, "ignores_interrupt", student_nb(folder, {"answer-9": (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.1)")}))
    submit(subs, "os_exit", student_nb(folder, {"answer-6": "import os\nos._exit(0)"}))
    submit(subs, "segfault", student_nb(folder, {"answer-6": "import faulthandler\nfaulthandler._sigsegv()"}))
    submit(subs, "sys_exit", student_nb(folder, {"answer-6": "import sys\nsys.exit()\nsquares = data ** 2"}))
    submit(subs, "memory_bomb", student_nb(folder, {
        "answer-6": "hog = []\nwhile True:\n    hog.append(bytearray(50_000_000))"}))
    submit(subs, "fork_bomb", student_nb(folder, {"answer-6": "import os\nwhile True:\n    os.fork()"}))
    submit(subs, "disk_bomb", student_nb(folder, {"answer-9": """
for i in range(5):
    open(f"junk{i}", "wb").write(b"0" * 30_000_000)"""}))
    submit(subs, "many_files", student_nb(folder, {"answer-9": "for i in range(1000):\n    open(f'f{i}', 'w').close()"}))
    submit(subs, "print_20mb", student_nb(folder, {"answer-6": 'print("x" * 20_000_000)\nsquares = data ** 2'}))

    # -- 1. one hostile submission never stops a batch
    nb = json.loads(nbformat.writes(student_nb(folder, {"answer-9": "answer = 42  # \udc80\ud800"})))
    nb["cells"].insert(1, {"cell_type": "markdown", "metadata": {}, "source": "notes \udcff"})
    submit(subs, "surrogate_notebook", json.dumps(nb))  # lone surrogates as JSON escapes
    submit(subs, "surrogate_errors", insert_after(student_nb(folder), "answer-9", SURROGATE_ERRORS))
    submit(subs, BAD_UTF8, student_nb(folder))
    submit(subs, "ctrl\x1b[31m\nname", student_nb(folder))
    submit(subs, LONG_NAME, student_nb(folder))
    submit(subs, "nested_reply", insert_after(student_nb(folder), "answer-9", NESTED_REPLY))
    submit(subs, "odd_shapes", student_nb(folder, {"answer-3": ODD_SHAPES + "\n" + "def total(x):\n    return 6.0"}))
    submit(subs, "huge_numbers", student_nb(folder, {"answer-6": HUGE_NUMBERS}))
    submit(subs, "deep_folders", insert_after(student_nb(folder), "answer-9", DEEP_FOLDERS))
    submit(subs, "garbage_messages", student_nb(folder, {"answer-6": GARBAGE}))
    deep = "[" * 100_000 + "]" * 100_000
    submit(subs, "deep_notebook", '{"nbformat": 4, "cells": ' + deep + "}")
    submit(subs, "huge_int_notebook", '{"nbformat": 4, "nbformat_minor": 5, "cells": [], "x": ' + "9" * 100_000 + "}")
    nb = json.loads(nbformat.writes(ok))
    nb["cells"][3]["source"] = {"not": "text"}
    submit(subs, "wrong_types_notebook", json.dumps(nb))

    # -- 2. the result channel
    submit(subs, "forge_and_die", insert_after(student_nb(folder), "answer-6", FORGE_AND_DIE))
    submit(subs, "kill_init", insert_after(student_nb(folder), "answer-6", KILL_INIT))
    submit(subs, "fake_final", insert_after(student_nb(folder, {"answer-9": "answer = 41"}), "answer-9", FAKE_FINAL))
    submit(subs, "sockets", insert_after(student_nb(folder), "answer-9", SOCKETS))

    # -- 3. exported values can't be replaced after export
    submit(subs, "rewrite_later", insert_after(student_nb(folder, {"answer-3": "def total(x):\n    return 0.0",
                                                                   "answer-6": "squares = data"}),
                                               "answer-9", REWRITE_LATER))
    submit(subs, "patch_later", insert_after(student_nb(folder, {"answer-3": "def total(x):\n    return -1.0"}),
                                             "answer-9", PATCH_LATER))

    # -- 4. hidden-test text never reaches the feedback page
    nb = student_nb(folder, {"answer-3": SPY})
    submit(subs, "spy", insert_after(nb, "answer-9", SPY_LATER))

    # -- 6. links are never followed, at any level of SUBMISSIONS/
    (subs / "link_to_assignment").symlink_to(folder)
    (subs / "link_to_student").symlink_to(subs / "good")
    (subs / "dangling_link").symlink_to(tmp / "nowhere")
    (subs / "linked_notebook").mkdir()
    (subs / "linked_notebook" / "hw.ipynb").symlink_to(folder / "hw.ipynb")
    (subs / "linked_renamed").mkdir()
    (subs / "linked_renamed" / "hw (2).ipynb").symlink_to(folder / "hw.ipynb")
    (subs / "notebook_is_folder" / "hw.ipynb").mkdir(parents=True)

    # -- detection
    submit(subs, "homoglyph_import", student_nb(folder, {"answer-6": HOMOGLYPH}))
    submit(subs, "string_built_module", student_nb(folder, {"answer-6": STRING_BUILT}))
    submit(subs, "aliased_patch", student_nb(folder, {"answer-6": ALIASED_PATCH}))

    src = folder / "hw.ipynb"
    gradebook = out / "gradebook.sqlite"
    attack = f"""
import glob, os, socket
stolen = []
for path in [{str(src)!r}, {str(gradebook)!r}, {str(good)!r}, "/etc/shadow"]:
    try:
        stolen.append(open(path).read()[:2000])
    except Exception as exc:
        print("read", path, type(exc).__name__)
    try:
        open(path, "a").write("owned")
    except Exception as exc:
        print("write", path, type(exc).__name__)
print("found:", glob.glob({str(folder)!r} + "/*") + glob.glob({str(subs)!r} + "/*") + glob.glob("/work/*"))
try:
    for i in range(2):  # the private /tmp is a 100 MB tmpfs (and files are at most 64 MB)
        with open(f"/tmp/fill{{i}}", "wb") as fh:
            fh.write(b"0" * 60_000_000)
except OSError as exc:
    print("tmp:", exc)
for name in glob.glob("**", recursive=True):
    print("sandbox file", name)
for what in ("environ", "maps", "mem"):
    try:
        open(f"/proc/{{os.getppid()}}/{{what}}", "rb").read(100)
        print("PROC", "READ", what)
    except Exception as exc:
        print("proc", what, type(exc).__name__)
try:
    socket.create_connection(("1.1.1.1", 80), timeout=3)
    print("NETWORK OPEN")
except OSError as exc:
    print("network:", exc)
print("".join(stolen))
"""
    submit(subs, "attack_files_network", insert_after(student_nb(folder), "answer-9", attack))
    patch = """
import builtins
import numpy as np
class Yes(float):
    def __eq__(self, other):
        return True
    def __len__(self):
        return 4
squares = Yes()
np.allclose = lambda *a, **k: True
builtins.abs = lambda x: 0
get_ipython().events.register("post_run_cell", lambda *a: None)
"""
    submit(subs, "monkeypatch", student_nb(folder, {"answer-6": patch}))
    forge = """
import json, os
import labkit.grading.export as ex
ex.dump = lambda *a, **k: None
ex.finish = lambda *a, **k: None
os.makedirs(".labkit/values", exist_ok=True)
json.dump({"values": {"t": {"value": 6.0}, "t2": {"value": 5.0}}}, open(".labkit/values/final-q1.json", "w"))
os.symlink("/etc/shadow", ".labkit/values/final-q3.json")
print("LABKIT-REPORT " + json.dumps({"status": "ok", "timed_out": []}))
"""
    nb = student_nb(folder, solved=False)
    nb.cells.insert(3, new_code_cell(forge))
    submit(subs, "forged_values", nb)

    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in [src, good]}
    summary = batch.grade(folder, subs, out, workers=2, echo=lambda *a: None, progress=False)
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in [src, good]}
    return {"folder": folder, "subs": subs, "out": out, "summary": summary, "grades": read_grades(out),
            "unchanged": before == after}


def page(hostile, student: str) -> str:
    return (hostile["out"] / "feedback" / f"{student}.html").read_text(encoding="utf-8")


def student_id(name: str) -> str:
    return untrusted.student_id(name)[0]


EXPECTED = {
    # student: (statuses allowed, score (None: not asserted), words the reason must hold)
    "good": ({"graded"}, 7, ""),
    "good2": ({"graded"}, 7, ""),
    "invalid_json": ({"invalid"}, 0, "not valid JSON"),
    "wrong_nbformat": ({"invalid"}, 0, "nbformat 3"),
    "no_notebook": ({"invalid"}, 0, "no notebook named"),
    "renamed_notebook": ({"graded"}, 7, "hw (1).ipynb"),
    "deleted_cells": ({"flagged"}, 7, "deleted; the released version was re-inserted"),
    "altered_protected": ({"flagged"}, 7, "was altered; the released version was run"),
    "metadata_stripped": ({"graded"}, 7, "matched by their content"),
    "added_cells": ({"graded"}, 7, ""),
    "infinite_loop": ({"timeout"}, 4, "cell 6 ran past the 8 s per-cell limit and was interrupted"),
    "ignores_interrupt": ({"timeout"}, 6, "cell 8 ran past the 8 s per-cell limit and ignored the interrupt"),
    "os_exit": ({"crashed"}, 3, "kernel died while running cell 6"),
    "segfault": ({"crashed"}, 3, "kernel died while running cell 6"),
    "sys_exit": ({"graded"}, 4, ""),
    "memory_bomb": ({"graded", "crashed", "timeout"}, None, ""),
    "fork_bomb": ({"flagged"}, None, "starts or signals processes"),
    "print_20mb": ({"graded"}, 7, "dropped"),
    "disk_bomb": ({"crashed"}, 6, "wrote more than 100 MB or 500 files and was stopped"),
    "many_files": ({"crashed"}, 6, "wrote more than 100 MB or 500 files and was stopped"),
    "attack_files_network": ({"flagged"}, 7, "opens network connections"),
    "monkeypatch": ({"flagged"}, 4, "touches builtins"),
    "forged_values": ({"flagged"}, 0, "refers to labkit"),
    # 1. one hostile submission never stops a batch
    "surrogate_notebook": ({"graded"}, 7, ""),
    "surrogate_errors": ({"graded"}, 7, ""),
    student_id(BAD_UTF8): ({"flagged"}, 7, "is not valid UTF-8"),
    student_id("ctrl\x1b[31m\nname"): ({"flagged"}, 7, "control"),
    student_id(LONG_NAME): ({"flagged"}, 7, "longer than 100 characters"),
    "nested_reply": ({"flagged"}, 7, "message(s) the grader could not read"),
    "odd_shapes": ({"flagged"}, 5, "refers to labkit"),
    "huge_numbers": ({"graded"}, 5, ""),
    "deep_folders": ({"graded"}, 7, ""),
    "garbage_messages": ({"flagged"}, 7, "uses IPython's internals"),
    "deep_notebook": ({"invalid"}, 0, "nested too deeply"),
    "huge_int_notebook": ({"invalid"}, 0, "digits"),
    "wrong_types_notebook": ({"invalid"}, 0, "cell 4's source is not text"),
    # 2. the result channel can't be reached or forged
    "forge_and_die": ({"flagged"}, 3, "kernel died while running cell 7"),
    "kill_init": ({"flagged"}, 7, "starts or signals processes"),
    "fake_final": ({"flagged"}, 6, "the final export did not answer"),
    "sockets": ({"flagged"}, 7, "touches the kernel's sockets"),
    # 3. exported values can't be replaced after export
    "rewrite_later": ({"flagged"}, 2, "touches the grader's results folder"),
    "patch_later": ({"flagged"}, 4, "refers to labkit"),
    # 4. hidden-test text never reaches the feedback page
    "spy": ({"flagged"}, 7, "traces or inspects frames"),
    # 6. links are never followed
    "link_to_assignment": ({"invalid"}, 0, "is a link"),
    "link_to_student": ({"invalid"}, 0, "is a link"),
    "dangling_link": ({"invalid"}, 0, "is a link"),
    "linked_notebook": ({"invalid"}, 0, "the notebook is a link"),
    "linked_renamed": ({"invalid"}, 0, "no notebook named"),
    "notebook_is_folder": ({"invalid"}, 0, "not a regular file"),
    # detection
    "homoglyph_import": ({"flagged"}, 7, "opens network connections"),
    "string_built_module": ({"flagged"}, 7, "refers to labkit, the grader"),
    "aliased_patch": ({"flagged"}, 7, "assigns to an attribute of numpy"),
}


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_hostile_submission_gets_a_clear_status_reason_and_fair_score(hostile, student):
    row = hostile["grades"][student]
    statuses, score, words = EXPECTED[student]
    shown = f"{row['status']} {row['score']}: {row['reason']}"
    assert row["status"] in statuses, shown
    if score is not None:
        assert float(row["score"]) == score, shown
    assert words in row["reason"], shown
    if row["status"] != "graded":
        assert row["reason"], shown
    assert float(row["max_score"]) == 7


@pytest.mark.slow
def test_one_hostile_submission_never_stops_a_batch(hostile):
    """The batch finished, wrote every output, and graded every correct submission correctly."""
    out, summary = hostile["out"], hostile["summary"]
    assert summary["grader_failures"] == 0, [t for t in summary["timings"] if t.get("machinery")]
    assert set(hostile["grades"]) == set(EXPECTED)
    assert summary["graded_now"] == len(EXPECTED) and sum(summary["statuses"].values()) == len(EXPECTED)
    for name in ("grades.csv", "lms.csv", "summary.json", "gradebook.sqlite"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["submissions"] == len(EXPECTED)
    pages = {p.name for p in (out / "feedback").iterdir()}
    assert pages == {f"{s}.html" for s in EXPECTED}
    for s in ("good", "good2", "renamed_notebook", "metadata_stripped", "added_cells"):
        assert hostile["grades"][s]["score"] == "7" and hostile["grades"][s]["status"] == "graded"
    with Gradebook(out / "gradebook.sqlite") as gb:
        assert gb.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert gb.db.execute("SELECT count(*) FROM results").fetchone()[0] == 5 * len(EXPECTED)
    assert "dug" in page(hostile, "deep_folders")  # its deep trees existed, and died with its sandbox


@pytest.mark.slow
def test_the_command_line_grades_the_hostile_batch_and_exits_0(hostile, tmp_path):
    """What a person runs: the same batch (already graded, so nothing is re-run) through ``labkit grade``."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-I", "-m", "labkit", "grade", str(hostile["folder"]), str(hostile["subs"]),
                           "--out", str(tmp_path / "out"), "--gradebook", str(hostile["out"] / "gradebook.sqlite"),
                           "--no-progress", "--json"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (tmp_path / "out" / "grades.csv").is_file() and (tmp_path / "out" / "summary.json").is_file()
    # unchanged submissions are skipped; the three linked folders (never opened, only listed) are recorded again
    assert summary["submissions"] == len(EXPECTED) and (summary["graded_now"], summary["skipped"]) == \
        (3, len(EXPECTED) - 3)


@pytest.mark.slow
def test_the_grade_comes_from_a_channel_the_student_cannot_reach_or_forge(hostile):
    grades = hostile["grades"]
    # a forged "ok" report on every descriptor the kernel has, then death: the grader saw the death
    assert "kernel died while running cell 7" in grades["forge_and_die"]["reason"]
    assert "kill 1 PermissionError" in page(hostile, "kill_init")  # the sandbox's first process is not theirs
    assert "proc fd PermissionError" in page(hostile, "forge_and_die") or \
        "proc fd FileNotFoundError" in page(hostile, "forge_and_die")
    # a final export that never answers is a failure, not a pass
    assert "final export did not answer" in grades["fake_final"]["reason"]
    # files in the old results folder are ignored entirely
    assert grades["forged_values"]["score"] == "0"
    # the socket folder belongs to root once the kernel listens: nothing in it can be swapped
    sockets = page(hostile, "sockets")
    for what in ("rename", "link", "create", "unlink"):
        assert f"swap {what} PermissionError" in sockets, what


@pytest.mark.slow
def test_exported_values_cannot_be_replaced_after_export(hostile):
    grades = hostile["grades"]
    # total() returned 0.0 when q1 was exported; later files and a later correct total() change nothing
    assert grades["rewrite_later"]["score"] == "2"   # q2.1 (len 4) and q3; q1 and q2.2 failed as exported
    # patching the exporter after q1 was exported: q1 still failed (total returned -1), q2/q3 passed
    assert grades["patch_later"]["score"] == "4"


@pytest.mark.slow
def test_hidden_test_text_never_reaches_the_feedback_page(hostile):
    out = hostile["out"]
    for html in (out / "feedback").glob("*.html"):
        text = html.read_text(encoding="utf-8")
        for line in HIDDEN_LINES:
            assert line not in text, (html.name, line)
        assert "HIDDEN TEST" not in text and "root:" not in text, html.name
    spy = page(hostile, "spy")
    blob = spy.split("B64 ", 1)[1].split("<", 1)[0].split()[0]
    seen = base64.b64decode(blob).decode("utf-8", "replace")
    # the spy saw the grader's export requests (its hooks, frames and its own function's arguments) ...
    assert "ARG array([1., 1., 1., 1., 1.])" in seen and "evaluate" in seen, seen[:2000]
    for line in HIDDEN_LINES:  # ... and yet, even encoded, what the kernel saw never held a hidden test
        assert line not in seen, line


@pytest.mark.slow
def test_links_in_submissions_are_never_followed(hostile):
    grades = hostile["grades"]
    for student in ("link_to_assignment", "link_to_student", "dangling_link", "linked_notebook", "linked_renamed"):
        assert grades[student]["status"] == "invalid" and grades[student]["score"] == "0", grades[student]
    # the link to the instructor's folder would have shown every hidden test: nothing of it was read
    for line in HIDDEN_LINES:
        assert line not in page(hostile, "link_to_assignment")


@pytest.mark.slow
def test_the_sandbox_keeps_student_code_from_the_grader_and_the_network(hostile):
    assert hostile["unchanged"], "a submission wrote into the source notebook or another submission"
    attack = page(hostile, "attack_files_network")
    assert "tmp: [Errno 28] No space left on device" in attack
    assert "NETWORK OPEN\n" not in attack and "network: [Errno" in attack
    assert "PROC READ" not in attack and "proc maps PermissionError" in attack
    assert "read /etc/shadow PermissionError" in attack or "read /etc/shadow FileNotFoundError" in attack
    assert "sandbox file hw.ipynb" not in attack  # the notebook is never on the sandbox's disk
    with Gradebook(hostile["out"] / "gradebook.sqlite") as gb:
        monkey = {r["test_id"]: r["passed"] for r in gb.results("hw", "monkeypatch")}
    assert monkey == {"q1.1": True, "q1.2": True, "q2.1": False, "q2.2": False, "q3.1": True}
    assert "run time" in hostile["grades"]["monkeypatch"]["reason"]  # the tripwire saw it too


# --- fuzzing the boundary (no sandbox needed) ----------------------------------------------------
def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 6 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2 ** 70, 1e308, -0.0])
    if kind == 2:
        return rng.random() * 10 ** rng.randrange(-5, 300)
    if kind == 3:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xD800, 0xE000), 0, 0x1F600]))
                       for _ in range(rng.randrange(0, 12)))
    if kind == 4:
        return rng.choice(["__ndarray__", "__dict__", "__bigint__", "__float__", "__unsupported__", "values",
                           "question", "status", "nan", "inf", "<f8", "|O", "(3,)f8", "c16"])
    if kind == 5:
        return rng.choice([{"__ndarray__": {"dtype": rng.choice(["<f8", "<i1", "|b1", "<c8", "bogus"]),
                                            "shape": [rng.randrange(-2, 5) for _ in range(rng.randrange(0, 3))],
                                            "data": [rng.choice([1, 1.5, "nan", None, 10 ** 30, [1]])
                                                     for _ in range(rng.randrange(0, 6))]}},
                           {"__bigint__": rng.choice(["12", "-3", "9" * 500, "1e9", "", "x"])},
                           {"__float__": rng.choice(["nan", "inf", "1"])}])
    if kind in (6, 7):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {str(_random_json(rng, 6)): _random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _random_text(rng: random.Random) -> str | bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return os.urandom(rng.randrange(0, 200))
    if choice == 1:
        return _nested(rng.choice([10, 63, 64, 65, 1000, 100_000]))
    if choice == 2:
        return '{"a": ' * 5000 + "1" + "}" * 5000
    if choice == 3:
        return json.dumps(_random_json(rng))[: rng.randrange(1, 400)]  # cut anywhere
    return json.dumps(_random_json(rng))


def test_fuzz_untrusted_json_never_raises_anything_but_untrusted():
    rng = random.Random(11)
    for _ in range(3000):
        data = _random_text(rng)
        try:
            value = untrusted.loads(data, 1_000_000, 64)
        except untrusted.Untrusted:
            continue
        json.dumps(value).encode("utf-8")  # what comes out is plain, valid text


def test_fuzz_kernel_messages_never_break_the_client():
    import hashlib as h
    import hmac

    key = b"k" * 32
    rng = random.Random(12)
    for _ in range(3000):
        parts = [_random_text(rng) for _ in range(4)]
        parts = [p if isinstance(p, bytes) else p.encode("utf-8", "surrogatepass") for p in parts]
        if rng.random() < 0.7:  # a header the client would accept, then anything
            parts[0] = json.dumps({"msg_type": rng.choice(["execute_reply", "stream", "status", "error"])}).encode()
            parts[1] = json.dumps({"msg_id": rng.choice(["m1", None, 5])}).encode()
        sig = hmac.new(key, b"".join(parts), h.sha256).hexdigest().encode() if rng.random() < 0.8 else b"bad"
        frames = [b"id", b"<IDS|MSG>", sig, *parts] if rng.random() < 0.9 else [os.urandom(9)]
        msg = client.parse_message(frames, key)
        assert msg is None or (type(msg["type"]) is str and (msg["content"] is None or type(msg["content"]) is dict))
        if msg and msg["content"] is not None:
            kept = client.Outputs(10_000)
            outs: list = []
            kept.add(outs, msg["type"], msg["content"])
            kept.add(outs, rng.choice(["stream", "display_data", "error", "clear_output"]), msg["content"])
            feedback.render_notebook({"cells": [{"cell_type": "code", "source": "x", "outputs": outs}]})


def test_fuzz_exported_values_never_break_the_tests(tmp_path):
    a = au.load_assignment(make_assignment(tmp_path / "hw"))
    tests = [t.__dict__ for t in a.tests]
    rng = random.Random(13)
    for _ in range(400):
        values = {q: [rng.choice([_random_json(rng), {"values": _random_json(rng)},
                                  {"values": {n: {"value": _random_json(rng)} for n in ("t", "t2", "squares", "answer")}},
                                  json.dumps(_random_json(rng)), _random_text(rng) if rng.random() < 0.3 else "x"])
                      for _ in range(rng.randrange(0, 3))] for q in ("q1", "q2", "q3")}
        values = json.loads(json.dumps(values, default=lambda b: b.decode("latin-1")))
        results = checks.grade_values(tests, values, per_test_seconds=5)
        assert [r["test_id"] for r in results] == [t.id for t in a.tests]


def test_fuzz_client_reports_never_break_the_grader(tmp_path):
    """The grader's reading of a run (status, reason, values, feedback) on reports of any shape."""
    folder = make_assignment(tmp_path / "hw")
    submit(tmp_path / "subs", "s", student_nb(folder))
    a = au.load_assignment(folder)
    plans = pl.compile_exports(a)
    prep = prep_mod.prepare(tmp_path / "subs" / "s", a, plans)
    keys = ["status", "why", "stopped_at", "timed_out", "outputs", "exports", "final", "tamper", "guard", "truncated",
            "oom_kills", "exit_status", "malformed_messages", "lost_output"]
    rng = random.Random(14)
    for _ in range(1500):
        report = {k: _random_json(rng) for k in keys if rng.random() < 0.7}
        if rng.random() < 0.5:
            report["status"] = rng.choice(["ok", "timeout", "crashed", "machinery"])
        if rng.random() < 0.3:
            report["outputs"] = {str(i): [_random_json(rng)] for i in range(len(prep.steps))}
        report = batch.read_report(report)
        status, notes, _ = batch.decide(prep, report, a.settings)
        assert status in batch.STATUSES and all(isinstance(n, str) for n in notes)
        nb = batch.executed_notebook(prep, report)
        values = batch._values(report)
        html = feedback.render_feedback("hw", {"student_id": "s", "score": 1, "max_score": 7, "status": status,
                                               "reason": "; ".join(notes)}, [], nb, ["secret"])
        html.encode("utf-8")
        json.dumps(values)
    for _ in range(500):  # the line the client prints, as the grader reads it
        lines = [_random_text(rng) for _ in range(rng.randrange(0, 3))]
        stdout = b"\n".join(t if isinstance(t, bytes) else t.encode("utf-8", "surrogatepass") for t in lines)
        try:
            batch.read_report(batch._last_json_line(stdout, "the report"))
        except batch.GraderError:
            pass


def test_fuzz_submitted_notebooks_never_break_preparation(tmp_path):
    folder = make_assignment(tmp_path / "hw")
    a = au.load_assignment(folder)
    good = json.loads(nbformat.writes(student_nb(folder)))
    rng = random.Random(15)
    for i in range(300):
        doc = json.loads(json.dumps(good))
        for _ in range(rng.randrange(1, 4)):  # break it somewhere
            cell = rng.choice(doc["cells"])
            where = rng.choice(["source", "metadata", "cell_type", "outputs", "cells", "nbformat"])
            if where in ("cells", "nbformat"):
                doc[where] = _random_json(rng)
                break
            cell[where] = _random_json(rng)
        raw = json.dumps(doc) if rng.random() < 0.8 else _random_text(rng)
        submit(tmp_path / "subs", f"s{i}", raw if isinstance(raw, (str, bytes)) else json.dumps(raw))
        prep = prep_mod.prepare(tmp_path / "subs" / f"s{i}", a)
        assert prep.invalid or prep.steps


def test_deep_folders_left_behind_never_break_the_next_batchs_clean_up(tmp_path):
    """A stale working folder of a killed grader, holding a tree far deeper than PATH_MAX, links and odd names."""
    import tempfile

    stale = Path(tempfile.mkdtemp(prefix="labkit-grade-", dir=tmp_path))
    (stale / "grader.pid").write_text("999999999")  # a grader that no longer exists
    here = os.open(stale, os.O_RDONLY)
    for _ in range(2500):  # 5000 characters of path: past PATH_MAX
        os.mkdir("d", dir_fd=here)
        nxt = os.open("d", os.O_RDONLY, dir_fd=here)
        os.close(here)
        here = nxt
    os.symlink(str(tmp_path), "link-out", dir_fd=here)  # never followed: tmp_path must survive
    open(os.open(os.fsdecode(b"\xff\xfename"), os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=here), "w").close()
    os.mkdir("locked", 0o000, dir_fd=here)
    os.close(here)
    (tmp_path / "keep.txt").write_text("kept")
    batch.remove_stale_workroots(tmp_path)
    assert not stale.exists()
    assert (tmp_path / "keep.txt").read_text() == "kept"
    assert untrusted.remove_tree(tmp_path / "missing")
