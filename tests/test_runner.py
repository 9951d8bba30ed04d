"""The runner's report: budgets, stalls and recoveries are shown, never called "ran cleanly"."""
import base64

from labkit import runner, viz
from labkit.quiet import LineFilter, is_noise, strip_noise


def _nb(path, status="ok", seconds=30.0, flags=(), recovered=0, stalled_cell=None):
    return {"path": path, "status": status, "seconds": seconds, "error": None, "figures": [], "flags": list(flags),
            "recovered": recovered, "stalled_cell": stalled_cell,
            "clean": status == "ok" and not flags and not recovered}


def test_budget_flags_name_slow_cells_and_a_slow_notebook():
    cells = [{"cell": 1, "seconds": 2.0}, {"cell": 4, "seconds": 75.2}, {"cell": 6, "seconds": 61.0}]
    flags = runner.budget_flags(95.0, cells, notebook_budget=90, cell_budget=60)
    assert flags == ["cell 4 took 75.2 s (budget 60 s)", "cell 6 took 61.0 s (budget 60 s)",
                     "the notebook took 95.0 s, over its 90 s budget"]
    assert runner.budget_flags(30.0, cells[:1]) == []


def test_report_never_says_ran_cleanly_over_budget_or_after_a_stall():
    clean = {"notebooks": [_nb("a.ipynb"), _nb("b.ipynb")], "environment": {}, "assignments": []}
    assert "All 2 notebooks ran cleanly." in runner.render_html(clean)
    slow = {"notebooks": [_nb("a.ipynb"), _nb("b.ipynb", seconds=120, flags=["the notebook took 120.0 s, over its 90 s budget"])],
            "environment": {}, "assignments": []}
    page = runner.render_html(slow)
    assert "ran cleanly" in page and "All 2" not in page
    assert "1 of 2 notebooks ran cleanly; 1 ran over budget." in page
    assert "over its 90 s budget" in page
    stalled = {"notebooks": [_nb("a.ipynb", status="stalled", stalled_cell=8), _nb("b.ipynb", recovered=1)],
               "environment": {}, "assignments": []}
    page = runner.render_html(stalled)
    assert "0 of 2 notebooks ran cleanly; 1 stalled, 1 needed the watchdog." in page
    assert "stalled at cell 8" in page and '<td class="stalled">stalled</td>' in page


def test_explorers_carry_a_static_figure_for_pages_without_widgets():
    box = viz.explore_convolution(viz.COURSE_IMAGE, viz.VERTICAL_EDGE)
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle   # JupyterLab shows the live widget
    assert base64.b64decode(bundle["image/png"])[:4] == b"\x89PNG"  # static pages show the picture


NOISE = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
         "I0000 00:00:1795628216.184360    4797 port.cc:153] oneDNN custom operations are on. You may see\n"
         "W0000 00:00:1795628216.184360    4797 port.cc:153] a real warning\n"
         "I0000 00:00:1795628216.300658    4797 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.\n"
         "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
         "appropriate compiler flags.\n"
         "Important output\nImagine more\n")
KEPT = "W0000 00:00:1795628216.184360    4797 port.cc:153] a real warning\nImportant output\nImagine more\n"


def test_start_up_noise_is_dropped_however_the_stream_is_cut():
    assert strip_noise(NOISE) == KEPT
    for size in (1, 2, 5, 17, 64, 10_000):
        f = LineFilter()
        shown = "".join(f.feed(NOISE[i:i + size]) for i in range(0, len(NOISE), size)) + f.flush()
        assert shown == KEPT, size


def test_only_start_up_lines_are_noise():
    assert is_noise("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert not is_noise("W0000 00:00:1795628216.184360    4797 port.cc:153] a real warning")
    assert not is_noise("E0000 00:00:1795628216.184360    4797 op.cc:1] an error")
    assert not is_noise("Traceback (most recent call last):")
    assert not is_noise("I am a student's print")
    f = LineFilter()
    assert f.feed("epoch 1/3\r") == "epoch 1/3\r"   # progress text is never held back
    assert f.feed("Im") == "Im"


def test_static_pages_show_an_explorers_picture(tmp_path):
    import nbformat

    box = viz.explore_convolution(viz.COURSE_IMAGE, viz.VERTICAL_EDGE)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("viz.explore_convolution()")
    cell.outputs = [nbformat.v4.new_output("execute_result", data=box._repr_mimebundle_(), execution_count=1)]
    nb.cells = [cell]
    path = tmp_path / "explorer.ipynb"
    nbformat.write(nb, path)
    page = runner.render_notebook_html(path).read_text()
    assert "<img" in page and "<script" not in page
