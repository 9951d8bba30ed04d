"""The labkit command line: doctor and run, through real subprocesses."""
import json
import subprocess
import sys

import nbformat
import pytest

from labkit import cli


def labkit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_names_every_verb_and_its_machine_readable_output():
    result = labkit("--help")
    assert result.returncode == 0
    for verb in ("doctor", "run"):
        assert verb in result.stdout
    assert "report.json" in labkit("run", "--help").stdout
    assert "--json" in labkit("doctor", "--help").stdout


def test_doctor_json_reports_versions_and_horovod_build():
    result = labkit("doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True
    assert checks["python"]["value"].startswith("3.11")
    assert checks["tensorflow"]["value"].startswith("2.21")
    assert checks["keras"]["value"].startswith("3.")
    assert checks["horovod"]["value"] == "0.28.1"
    assert checks["horovod_tensorflow"]["ok"] and checks["horovod_gloo"]["ok"]
    assert "usable" in checks["cores"]["value"]


def test_doctor_names_what_is_missing_and_how_to_fix_it(monkeypatch):
    from labkit import doctor

    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda dist: None if dist == "papermill" else real(dist))
    checks = doctor.collect(brief=True)
    text = doctor.format_report(checks)
    assert "NO  papermill" in text and "make setup" in text
    assert not doctor.as_dict(checks)["ok"]


def _notebook(path, source):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t"),
                nbformat.v4.new_code_cell("N = 2", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_run_writes_report_records_failures_and_goes_on(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "a_good.ipynb", "import matplotlib.pyplot as plt\n"
              "from IPython.display import display\nfig, ax = plt.subplots()\nax.plot(range(N))\ndisplay(fig)\nprint(N * 21)")
    _notebook(nbs / "b_bad.ipynb", "raise ValueError('student bug')")
    build = tmp_path / "build"
    result = labkit("run", str(nbs), "--build", str(build), "-p", "N", "3")
    assert result.returncode == 1  # one notebook failed
    report = json.loads((build / "report.json").read_text())
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in report["notebooks"]}
    assert by_name["a_good.ipynb"]["status"] == "ok"
    assert by_name["b_bad.ipynb"]["status"] == "failed"
    assert "ValueError: student bug" in by_name["b_bad.ipynb"]["error"]
    assert set(report) >= {"notebooks", "assignments", "environment"}
    executed = nbformat.read(build / "notebooks" / "a_good.ipynb", as_version=4)
    assert "63" in "".join(o.get("text", "") for o in executed.cells[-1].outputs)  # the parameter reached it
    assert (build / by_name["a_good.ipynb"]["figures"][0]).read_bytes()[:4] == b"\x89PNG"
    html = (build / "report.html").read_text()
    assert "b_bad.ipynb" in html and "student bug" in html and "1 of 2 notebooks ran cleanly" in html


def test_run_on_a_missing_path_is_a_clear_error(tmp_path):
    result = labkit("run", str(tmp_path / "nope.ipynb"))
    assert result.returncode == 2
    assert "no notebook or folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_parameter_values_are_parsed_as_json_when_possible():
    assert cli._parse_value("3") == 3 and cli._parse_value("0.5") == 0.5
    assert cli._parse_value("true") is True and cli._parse_value("adam") == "adam"


def test_report_page_lists_each_sample_grade_and_flags_surprises():
    from labkit import runner

    grades = [{"student_id": "correct", "score": 9.0, "max_score": 9.0, "status": "graded", "reason": ""},
              {"student_id": "broken", "score": 3.0, "max_score": 9.0, "status": "crashed", "reason": "kernel <died>"}]
    report = {"notebooks": [], "environment": {"python": "3.11"},
              "assignments": [{"name": "hw", "status": "failed", "summary": "2 graded, NOT as expected", "seconds": 4.0,
                               "grades": grades, "mismatches": [{"student_id": "broken", "got": [3.0, "crashed"],
                                                                 "expected": [0.0, "invalid"]}]}]}
    page = runner.render_html(report)
    assert 'href="grading/hw/feedback/correct.html"' in page and "9 / 9" in page
    assert "expected 0 (invalid)" in page and "kernel &lt;died&gt;" in page
    assert '<span class="failed">failed</span>' in page
