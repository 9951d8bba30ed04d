"""End to end, in a real browser: the course hub, two students, an instrument notebook and the
whole assignment loop. Debian's Chromium (headless) through Playwright; screenshots in build/hub/.

1. the hub starts on a loopback port; ada and ben log in (their accounts and homes are made);
2. ada opens the convolution notebook in JupyterLab and runs all cells;
3. she moves the ipywidgets slider and the figure redraws (screenshots compared);
4. she runs the self-check cell (it fails with its message), answers, and it passes;
5. ada fetches, completes and submits tf_basics in a terminal; ben submits a broken one; the
   instructor collects, grades (sandboxed) and returns the feedback;
6. each student opens their own feedback page; ben's attempts on ada's files fail;
7. teardown leaves no process and no account behind.
"""
import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from labkit.hub.collect import collect
from labkit.hub.course import Course
from labkit.hub.handback import return_feedback
from hubkit import PREFIX, PY, ROOT, Hub, fresh_course, launch_chromium, needs_root, student_processes, user_api

SHOTS = ROOT / "build" / "hub"
STUDENTS = ["ada", "ben"]
pytestmark = [needs_root, pytest.mark.slow,
              pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed (make setup)")]


def shot(page, name, locator=None) -> bytes:
    SHOTS.mkdir(parents=True, exist_ok=True)
    target = locator if locator is not None else page
    return target.screenshot(path=str(SHOTS / f"{name}.png"))


def changed_fraction(a: bytes, b: bytes) -> float:
    """Fraction of pixels that differ between two PNG screenshots (sizes may differ slightly)."""
    import numpy as np
    from PIL import Image

    x = np.asarray(Image.open(io.BytesIO(a)).convert("L"), dtype=int)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("L"), dtype=int)
    h, w = min(x.shape[0], y.shape[0]), min(x.shape[1], y.shape[1])
    return float((np.abs(x[:h, :w] - y[:h, :w]) > 16).mean())


def log_in(browser, hub, student):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", student)
    page.fill("#password_input", hub.passwords[student])
    page.click("#login_submit")
    page.wait_for_url(f"**/user/{PREFIX}{student}/lab**", timeout=120_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    return page


def open_notebook(page, hub, student, path):
    """Open ``path`` (relative to the student's home) and wait until it is ready."""
    cells = len(json.loads((Path(f"/home/{PREFIX}{student}") / path).read_text())["cells"])
    page.goto(f"{hub.url}/user/{PREFIX}{student}/lab/tree/{path}")
    notebook_ready(page, cells)


def notebook_ready(page, cells=1):
    """Wait until the open notebook shows ``cells`` cells and its kernel is idle."""
    page.wait_for_function("""(n) => {
        const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
        const ind = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
        return panel && panel.querySelectorAll('.jp-Cell').length >= n && ind && ind.getAttribute('data-status') === 'idle';
    }""", arg=cells, timeout=120_000)


def run_all(page, timeout=240):
    """Run -> Run All Cells, then wait until every code cell has its execution count, failing fast
    on a traceback."""
    menu(page, "Run", "Run All Cells")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = page.evaluate("""() => {
            const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
            const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent);
            const errors = [...panel.querySelectorAll('.jp-OutputArea-output')].map(e => e.textContent)
                .filter(t => t.includes('Traceback (most recent call last)'));
            return {prompts, errors};
        }""")
        if state["errors"]:
            raise AssertionError(f"a cell failed: {state['errors'][0][-2000:]}")
        if state["prompts"] and all(re.search(r"\[\d+\]", p) for p in state["prompts"]):
            return state["prompts"]
        time.sleep(1)
    raise AssertionError(f"Run All did not finish in {timeout} s: {state['prompts']}")


def menu(page, top, item):
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    page.get_by_role("menuitem", name=item, exact=True).first.click()


def cell_with(page, text):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").filter(has_text=text).first


def replace_cell(page, text, new_source):
    """Click into the cell containing ``text`` and replace its source (typed as a student pastes)."""
    cell = cell_with(page, text)
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(new_source)
    return cell


def save(page, path: Path, *must_contain: str, timeout=30):
    """Ctrl+S until the file on disk holds ``must_contain`` (JupyterLab saves asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.keyboard.press("Control+s")
        page.wait_for_timeout(1000)
        text = path.read_text() if path.exists() else ""
        if all(m in text for m in must_contain):
            return
    raise AssertionError(f"{path} was not saved with {must_contain}")


def terminal(page, hub, student, commands, wait_for, name, timeout=90):
    """Open a JupyterLab terminal, type ``commands``, wait until ``wait_for()`` is true."""
    page.locator(".lm-MenuBar-itemLabel", has_text="File").first.click()
    page.locator(".lm-Menu-itemLabel").filter(has_text=re.compile(r"^New$")).first.hover()
    page.locator(".lm-Menu-itemLabel").filter(has_text=re.compile(r"^Terminal$")).first.click()
    term = page.locator(".jp-Terminal .xterm-screen").last  # the newest terminal
    term.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # the shell's prompt
    term.click()
    for line in commands:
        page.keyboard.type(line + "\n", delay=5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not wait_for():
        time.sleep(0.5)
    page.wait_for_timeout(1000)
    shot(page, name)
    assert wait_for(), f"{commands} did not do what was expected in {student}'s terminal"


def run_as_instructor(*args):
    proc = subprocess.run([PY, "-m", "labkit", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"labkit {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_course_hub_end_to_end_in_a_real_browser(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    course = fresh_course(tmp_path, STUDENTS)
    hub = Hub(course, STUDENTS, log=tmp_path / "hub.log")
    timings = {}
    try:
        hub.start()
        timings["hub started"] = time.monotonic() - started
        run_as_instructor("assign", "assignments/tf_basics", "--course", str(course), "--deadline",
                          time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() + 3600)))
        for s in STUDENTS:  # start both servers now, in parallel; the logins below then find them running
            assert hub.api("POST", f"/users/{PREFIX}{s}/server").status_code in (201, 202)
        with sync_playwright() as p:
            browser = launch_chromium(p)
            pages = {}
            try:
                # --- 1. two students log in; the login page says the authenticator is demo-only
                page = browser.new_page()
                page.goto(f"{hub.url}/hub/login")
                assert "DEMO ONLY" in page.inner_text("body")
                shot(page, "01-login-demo-only")
                page.close()
                ada = pages["ada"] = log_in(browser, hub, "ada")
                ben = pages["ben"] = log_in(browser, hub, "ben")
                timings["logged in"] = time.monotonic() - started
                ada.wait_for_timeout(3000)  # JupyterLab's news prompt would show by now
                assert "official Jupyter news" not in ada.inner_text("body")
                shot(ada, "02-ada-jupyterlab-no-news-prompt")
                settings = user_api(hub, f"{PREFIX}ada", "GET",
                                    "/../lab/api/settings/@jupyterlab/apputils-extension:notification").json()
                settings = settings["schema"]["properties"]
                # tools/jupyterlab-overrides.json, installed by setup, sets the defaults everyone gets
                assert settings["fetchNews"]["default"] == "false" and settings["checkForUpdates"]["default"] is False

                # --- 2. the instrument notebook, every cell
                open_notebook(ada, hub, "ada", "lab/20_convolution.ipynb")
                prompts = run_all(ada)
                assert len(prompts) >= 10, prompts
                timings["notebook ran"] = time.monotonic() - started
                shot(ada, "03-convolution-notebook-ran")

                # --- 3. the slider redraws the figure
                explorer = ada.locator(".widget-vbox").filter(has=ada.locator(".widget-slider")).first
                explorer.scroll_into_view_if_needed()
                figure = explorer.locator(".widget-output").first
                before = shot(ada, "04-slider-before", figure)
                readout = explorer.locator(".widget-readout").first.inner_text()
                explorer.locator(".noUi-handle").first.focus()
                for _ in range(5):  # the slider starts at the last step: move it back five steps
                    ada.keyboard.press("ArrowLeft")
                ada.wait_for_function("([el, old]) => el.innerText !== old", arg=[explorer.locator(".widget-readout").first.element_handle(), readout])
                ada.wait_for_timeout(2500)
                after = shot(ada, "05-slider-after", figure)
                moved = changed_fraction(before, after)
                assert moved > 0.005, f"the figure did not redraw ({moved:.4f} of pixels changed)"

                # --- 4. the self-check: its message, then a pass once answered
                check_cell = cell_with(ada, 'result = check("conv1")')
                check_cell.scroll_into_view_if_needed()
                assert "0 of 1 visible tests passed" in check_cell.inner_text()
                shot(ada, "06-self-check-message", check_cell)
                replace_cell(ada, "conv_side = None", "conv_side = 24\npool_side = 12")
                for _ in range(3):  # run the answer, step over the raw test cell, run the check
                    ada.keyboard.press("Shift+Enter")
                    ada.wait_for_timeout(300)
                check_cell = cell_with(ada, 'result = check("conv1")')
                expect(check_cell).to_contain_text("1 of 1 visible tests passed", timeout=60_000)
                shot(ada, "07-self-check-passed", check_cell)
                save(ada, Path(f"/home/{PREFIX}ada/lab/20_convolution.ipynb"), "conv_side = 24")

                # --- 5. the assignment: ada fetches, completes and submits; ben submits a broken one
                ada_home, ben_home = Path(f"/home/{PREFIX}ada"), Path(f"/home/{PREFIX}ben")
                inbox = lambda s: list((course / "exchange" / "inbox" / f"{PREFIX}{s}" / "tf_basics").glob("*.ipynb"))  # noqa: E731
                assert (ada_home / "assignments" / "tf_basics" / "tf_basics.ipynb").exists(), \
                    "released before ada's server started: it is already in her home"
                open_notebook(ada, hub, "ada", "assignments/tf_basics/tf_basics.ipynb")
                replace_cell(ada, "def normalize(x):", "def normalize(x):\n    return (x - x.mean()) / x.std()")
                replace_cell(ada, "probs = ...", "probs = tf.nn.softmax(logits)")
                replace_cell(ada, "NotImplementedError", "with tf.GradientTape() as tape:\n    f = tf.reduce_sum(w ** 2)\n"
                                                         "grad = tape.gradient(f, w)")
                save(ada, ada_home / "assignments" / "tf_basics" / "tf_basics.ipynb", "tf.nn.softmax(logits)",
                     "x.std()", "tape.gradient(f, w)")
                shot(ada, "08-ada-assignment-completed")
                terminal(ada, hub, "ada", ["labkit fetch tf_basics", "labkit submit tf_basics"], lambda: bool(inbox("ada")),
                         "09-ada-terminal-fetch-submit")
                open_notebook(ben, hub, "ben", "assignments/tf_basics/tf_basics.ipynb")
                replace_cell(ben, "probs = ...", "import os\nos._exit(1)  # broken: kills the kernel")
                save(ben, ben_home / "assignments" / "tf_basics" / "tf_basics.ipynb", "os._exit(1)")
                terminal(ben, hub, "ben", ["labkit submit tf_basics"], lambda: bool(inbox("ben")), "10-ben-terminal-submit")
                timings["submitted"] = time.monotonic() - started

                # the instructor's side (as root): the library calls behind `labkit collect` and `labkit return`
                # (their command lines are run in test_hub_loop.py), and `labkit grade` itself
                report = collect(Course.load(course), "tf_basics")
                assert report["counts"] == {"on_time": 2, "late": 0, "missing": 0}, report
                run_as_instructor("grade", "assignments/tf_basics", str(course / "instructor" / "tf_basics" / "submissions"),
                                  "--out", str(course / "instructor" / "tf_basics" / "grades"), "--workers", "2", "--no-progress")
                grades = (course / "instructor" / "tf_basics" / "grades" / "grades.csv").read_text()
                assert "ada,9,9,graded" in grades and "ben,0,9,crashed" in grades, grades
                returned = return_feedback(Course.load(course), "tf_basics")
                assert [r["status"] for r in returned["students"]] == ["returned", "returned"], returned
                timings["graded and returned"] = time.monotonic() - started

                # --- 6. ben's attempts on ada's files fail; each student reads their own feedback
                ben.locator(".lm-TabBar-addButton:not(.lm-mod-hidden)").first.click()  # a new launcher tab (no reload)
                ben.locator(".jp-LauncherCard[data-category='Notebook']").last.click()
                notebook_ready(ben)
                visible = ".jp-NotebookPanel:not(.lm-mod-hidden)"
                probe = ("import os\n"
                         "for path in ['/home/lkstu-ada/feedback/tf_basics.html', '/home/lkstu-ada/assignments',\n"
                         f"             '{course}/exchange/inbox/lkstu-ada']:\n"
                         "    try:\n"
                         "        os.listdir(path) if not path.endswith('.html') else open(path).read()\n"
                         "        print('READ', path)\n"
                         "    except PermissionError as e:\n"
                         "        print('denied:', path, '-', e.strerror)")
                probe_cell = ben.locator(f"{visible} .jp-CodeCell").first
                probe_cell.locator(".cm-content").click()
                ben.keyboard.insert_text(probe)
                expect(probe_cell.locator(".cm-content")).to_contain_text("denied:")
                ben.keyboard.press("Escape")  # command mode: no completer popup can take the key
                for attempt in range(4):  # a run pressed while a brand-new kernel still connects can be lost
                    ben.keyboard.press("Control+Enter")
                    try:
                        expect(probe_cell.locator(".jp-OutputArea")).to_contain_text("exchange/inbox/lkstu-ada",
                                                                                     timeout=20_000)
                        break
                    except AssertionError:
                        if attempt == 3:
                            raise
                        probe_cell.locator(".jp-InputPrompt").click()
                output = probe_cell.locator(".jp-OutputArea").inner_text()
                assert output.count("denied:") == 3 and "READ" not in output, output
                shot(ben, "13-ben-denied-ada-files")
                for student, page, score in (("ada", ada, "Score: 9 / 9"), ("ben", ben, "Score: 0 / 9")):
                    page.goto(f"{hub.url}/user/{PREFIX}{student}/files/feedback/tf_basics.html")
                    body = page.inner_text("body")
                    assert score in body and f"feedback for {student}" in body and "on time" in body, body[:500]
                    shot(page, f"11-{student}-feedback")
                response = ben.goto(f"{hub.url}/user/{PREFIX}ada/files/feedback/tf_basics.html")
                assert response.status == 403, response.status
                assert "do not have permission" in ben.inner_text("body")
                shot(ben, "12-ben-denied-ada-server")
            except Exception:
                for name, page in pages.items():
                    if not page.is_closed():
                        shot(page, f"failed-{name}")
                raise
            browser.close()
        timings["browser done"] = time.monotonic() - started
    finally:
        left = hub.teardown()
        (SHOTS / "timings.json").parent.mkdir(parents=True, exist_ok=True)
        (SHOTS / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=2))
    # --- 7. nothing left behind
    assert left == {"processes": [], "accounts": []}, left
    assert not student_processes([PREFIX + s for s in STUDENTS])
    assert not course.exists()
    # The budget is 5 minutes on a quiet 2-core machine (CI); timings on a shared machine are noisy,
    # so this only guards against a hang, and build/hub/timings.json records where the time went.
    total = time.monotonic() - started
    timings["total with teardown"] = total
    (SHOTS / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=2))
    assert total < 900, f"the end-to-end test took {total:.0f} s"


def test_make_lab_shows_no_news_prompt(tmp_path):
    """`make lab` (one person, no hub): JupyterLab opens without the "get notified about official
    Jupyter news?" prompt (tools/jupyterlab-overrides.json, installed by setup)."""
    import signal
    import socket
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "labkit-news-test"
    proc = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS=--no-browser --port={port} --IdentityProvider.token={token}"],
                            cwd=ROOT, env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
                                           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
                                           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert proc.poll() is None
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/lab?token={token}")
            page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
            page.wait_for_timeout(4000)  # the prompt, when configured to ask, shows within a second or two
            assert "official Jupyter news" not in page.inner_text("body")
            shot(page, "00-make-lab-no-news-prompt")
            # the control: a user who sets "ask" gets the prompt, so the check above can see it
            url = f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/apputils-extension:notification?token={token}"
            req = urllib.request.Request(url, method="PUT", data=json.dumps({"raw": '{"fetchNews": "none"}'}).encode(),
                                         headers={"Content-Type": "application/json"})
            assert urllib.request.urlopen(req, timeout=30).status == 204
            page.reload()
            page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
            page.get_by_text("official Jupyter news").first.wait_for(timeout=30_000)
            shot(page, "00-control-news-prompt-when-asked")
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
