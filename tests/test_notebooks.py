"""Every committed notebook is clean and runs headless with its fast defaults (CI executes them all)."""
from pathlib import Path

import nbformat
import pytest

from labkit import hygiene, runner
from labkit.quiet import is_noise

ROOT = Path(__file__).resolve().parent.parent
LAB_NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ALL_NOTEBOOKS = sorted(p for p in LAB_NOTEBOOKS + list((ROOT / "assignments").rglob("*.ipynb"))
                       if ".ipynb_checkpoints" not in p.parts)


def test_there_are_lab_notebooks():
    assert any(p.name == "00_welcome.ipynb" for p in LAB_NOTEBOOKS)


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_notebook_is_clean(path):
    assert hygiene.check_file(path) == []


def test_hygiene_catches_outputs_and_missing_parameters():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("x = 1")]
    assert any("parameters" in p for p in hygiene.problems(nb))
    nb.cells[1].metadata["tags"] = ["parameters"]
    assert hygiene.problems(nb) == []
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="1")]
    assert any("outputs" in p for p in hygiene.problems(nb))
    assert hygiene.problems(hygiene.strip_outputs(nb)) == []
    nb.cells.insert(0, nbformat.v4.new_code_cell("import os"))
    assert len(hygiene.problems(nb)) == 2  # untitled, and the parameters cell is not first


def test_unreadable_notebook_is_reported(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    assert "cannot be read" in hygiene.check_file(bad)[0]


def start_up_noise(nb) -> list[str]:
    """Lines of an executed notebook's outputs that are TensorFlow/absl start-up noise or
    ipykernel's transport warning (what students must never see first)."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            texts = [out.get("text", "")] + [v for k, v in out.get("data", {}).items() if k == "text/plain"]
            for line in "".join(t if isinstance(t, str) else "".join(t) for t in texts).splitlines():
                if is_noise(line) or "without encryption" in line:
                    found.append(f"cell {i}: {line[:100]}")
    return found


@pytest.mark.slow
@pytest.mark.parametrize("path", LAB_NOTEBOOKS, ids=lambda p: p.name)
def test_lab_notebook_runs_with_fast_defaults(path, tmp_path):
    result = runner.execute_notebook(path, tmp_path)
    assert result.status == "ok", f"{path.name} failed: {result.error}"
    executed = nbformat.read(tmp_path / result.output, as_version=4)
    assert start_up_noise(executed) == [], "start-up noise in the outputs students see"
    if 'check(\\"' in path.read_text():  # a lab exercise: labkit.check found its tests and explained
        executed = (tmp_path / result.output).read_text()
        assert "visible tests passed" in executed and "No visible tests named" not in executed
