"""Execute notebooks headless with papermill and write the lab's report.

``labkit run notebooks/`` (what ``make run`` calls) executes each notebook with its fast
defaults, and writes into ``build/``:

- ``build/notebooks/<name>.ipynb``: the executed notebook, outputs included, and ``<name>.html``,
  a static page of it (no scripts, so it opens offline);
- ``build/figures/<name>/<n>.png``: every image the notebook showed, in order;
- ``build/report.json``: ``{"notebooks": [{"path", "status", "seconds", "error", ...}],
  "assignments": [...], "environment": {...}}`` (DESIGN.md §2);
- ``build/report.html``: the same for a person, with each notebook's figures.

A notebook's status is ``ok``, ``failed`` (a cell raised, or timed out) or ``stalled`` (the kernel
finished a cell but its reply never reached the client: see :mod:`labkit.notebook_client`, which
executes every notebook). Independently, the report flags every cell slower than its budget and
every notebook over its budget (90 s: what the course promises on 2 cores), and any reply that
arrived late but was recovered. A failing notebook is recorded and the run goes on; the exit
status says whether all ran cleanly.
"""
from __future__ import annotations

import base64
import html
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from labkit import doctor

#: seconds a notebook may take with its defaults (kernel start included) before the report flags it
NOTEBOOK_BUDGET = 90.0
#: seconds one cell may take before the report flags it
CELL_BUDGET = 60.0
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclass
class NotebookResult:
    """How one notebook ran."""

    path: str
    status: str  # "ok" | "failed" | "stalled"
    seconds: float
    error: str | None = None
    output: str | None = None
    html: str | None = None
    figures: list[str] = field(default_factory=list)
    #: [{"cell", "seconds"}] for every code cell, as papermill timed it
    cells: list[dict] = field(default_factory=list)
    #: what ran past its budget, in words ("cell 8 took 75.2 s (budget 60 s)", "over its 90 s budget")
    flags: list[str] = field(default_factory=list)
    #: replies that sat unread and were recovered by the client's watchdog
    recovered: int = 0
    stalled_cell: int | None = None

    @property
    def clean(self) -> bool:
        """Ran to the end, within every budget, with nothing recovered."""
        return self.status == "ok" and not self.flags and not self.recovered


def find_notebooks(paths: list[str | Path]) -> list[Path]:
    """Notebooks named directly, or found (sorted, non-recursively) in the folders named."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.glob("*.ipynb") if not q.name.startswith(".")))
        elif p.suffix == ".ipynb" and p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(f"no notebook or folder at {p}")
    return found


def _error_summary(exc: BaseException) -> str:
    """The part of a papermill error a person needs: the exception name and message."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(exc).__name__}: {exc}".strip()


def extract_figures(nb_path: Path, out_dir: Path) -> list[Path]:
    """Save every PNG output of an executed notebook as ``out_dir/<n>.png``; return the paths."""
    nb = nbformat.read(nb_path, as_version=4)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.png"):
        old.unlink()
    saved = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {}).get("image/png")
            if data:
                path = out_dir / f"{len(saved) + 1:02d}.png"
                path.write_bytes(base64.b64decode(data))
                saved.append(path)
    return saved


def render_notebook_html(nb_path: Path) -> Path:
    """A static HTML page of an executed notebook, next to it, with no scripts at all.

    nbconvert's templates pull MathJax, require.js and mermaid from CDNs; the lab works offline,
    so every script is dropped (outputs are static: images are embedded, text stays text).
    """
    import re

    from nbconvert import HTMLExporter

    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:  # widgets need scripts: show their static picture instead (labkit.viz explorers)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data and len(data) > 2:  # more than the view and its text/plain repr
                del data[WIDGET_VIEW]
    body, _ = HTMLExporter(template_name="lab", mathjax_url="", require_js_url="").from_notebook_node(nb)
    body = re.sub(r"<script\b[^>]*>.*?</script>", "", body, flags=re.S | re.I)
    out = nb_path.with_suffix(".html")
    out.write_text(body)
    return out


def cell_durations(nb) -> list[dict]:
    """``[{"cell": index, "seconds": s}]`` for the code cells papermill timed."""
    out = []
    for i, cell in enumerate(nb.cells):
        seconds = (cell.get("metadata", {}).get("papermill") or {}).get("duration")
        if cell.cell_type == "code" and seconds is not None:
            out.append({"cell": i, "seconds": round(float(seconds), 2)})
    return out


def budget_flags(seconds: float, cells: list[dict], notebook_budget: float = NOTEBOOK_BUDGET,
                 cell_budget: float = CELL_BUDGET) -> list[str]:
    """What ran past its budget, in words, slowest cell first."""
    flags = [f"cell {c['cell']} took {c['seconds']:.1f} s (budget {cell_budget:g} s)"
             for c in sorted(cells, key=lambda c: -c["seconds"]) if c["seconds"] > cell_budget]
    if seconds > notebook_budget:
        flags.append(f"the notebook took {seconds:.1f} s, over its {notebook_budget:g} s budget")
    return flags


def execute_notebook(path: Path, build: Path, parameters: dict | None = None,
                     cell_timeout: int = 600, progress: bool = False,
                     notebook_budget: float = NOTEBOOK_BUDGET, cell_budget: float = CELL_BUDGET) -> NotebookResult:
    """Run one notebook with papermill into ``build/notebooks``; never raises for notebook errors."""
    from labkit import notebook_client

    out_nb = build / "notebooks" / path.name
    out_nb.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    status, error = "ok", None
    try:
        notebook_client.execute(
            path, out_nb, parameters=parameters or {}, kernel_name="python3",
            cwd=str(path.parent), execution_timeout=cell_timeout, progress_bar=progress,
            log_output=False, request_save_on_cell_execute=True,  # a timed-out run still leaves its notebook
        )
    except Exception as exc:  # PapermillExecutionError, timeouts, dead kernels: record and go on
        status, error = "failed", _error_summary(exc)
    seconds = round(time.perf_counter() - start, 2)
    cells, recovered, stalled = [], 0, None
    if out_nb.exists():
        nb = nbformat.read(out_nb, as_version=4)
        cells = cell_durations(nb)
        watchdog = nb.metadata.get("labkit", {})
        recovered, stalled = len(watchdog.get("recovered") or []), watchdog.get("stalled")
    if stalled:
        status = "stalled"
    figures = extract_figures(out_nb, build / "figures" / path.stem) if out_nb.exists() else []
    page = render_notebook_html(out_nb) if out_nb.exists() else None
    return NotebookResult(path=str(path), status=status, seconds=seconds, error=error,
                          output=str(out_nb.relative_to(build)) if out_nb.exists() else None,
                          html=str(page.relative_to(build)) if page else None,
                          figures=[str(f.relative_to(build)) for f in figures],
                          cells=cells, flags=budget_flags(seconds, cells, notebook_budget, cell_budget),
                          recovered=recovered, stalled_cell=stalled["cell"] if stalled else None)


def environment() -> dict:
    """What the report records about the machine (cheap: no TensorFlow import)."""
    checks = {c.name: c.value for c in doctor.collect(brief=True)}
    return {"python": checks["python"], "tensorflow": checks["tensorflow"], "keras": checks["keras"],
            "horovod": checks["horovod"], "papermill": checks["papermill"], "cores": doctor.usable_cores(),
            "platform": sys.platform}


def grade_assignments(assignments: str | Path, build: Path, echo=print) -> list[dict]:
    """Grade the sample submissions of every assignment in the folder (the report's "assignments")."""
    folder = Path(assignments)
    if not folder.is_dir():
        raise FileNotFoundError(f"no assignments folder: {folder}")
    from labkit.grading.batch import grade_samples

    echo(f"grading the sample submissions in {folder}/ ...")
    graded = grade_samples(folder, build, echo=echo)
    for a in graded:
        mark = "ok" if a["status"] == "ok" else f"FAILED: {a.get('error') or a.get('mismatches')}"
        echo(f"assignment {a['name']}: {mark} ({a.get('seconds', 0):.1f} s; {a.get('summary', '')})")
    return graded


def write_report(build: Path, notebooks: list[NotebookResult], assignments: list[dict] | None = None) -> dict:
    """Write ``report.json`` and ``report.html`` into ``build``; return the report."""
    report = {"notebooks": [{**asdict(n), "clean": n.clean} for n in notebooks], "assignments": assignments or [],
              "environment": environment()}
    build.mkdir(parents=True, exist_ok=True)
    (build / "report.json").write_text(json.dumps(report, indent=2))
    (build / "report.html").write_text(render_html(report))
    return report


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#222}
table{border-collapse:collapse;width:100%} td,th{padding:.4rem .6rem;border-bottom:1px solid #ddd;text-align:left}
.ok{color:#0a7d32;font-weight:600} .failed,.stalled{color:#c62828;font-weight:600}
.flag{color:#a15c00;font-size:.85em} .flag::before{content:"⚠ "}
.figs img{max-height:180px;margin:.3rem;border:1px solid #eee} code{font-size:.85em}
.error{color:#c62828;white-space:pre-wrap;font-family:monospace;font-size:.85em}
"""


def render_html(report: dict) -> str:
    """A self-contained page: one row per notebook (status, time, error) and its figures."""
    esc = html.escape
    rows = []
    for nb in report["notebooks"]:
        figs = "".join(f'<a href="{esc(f)}"><img src="{esc(f)}" alt="figure {i + 1} of {esc(nb["path"])}"></a>'
                       for i, f in enumerate(nb.get("figures", [])))
        link = (f'<a href="{esc(nb["html"])}">{esc(nb["path"])}</a>'
                if nb.get("html") else esc(nb["path"]))
        error = f'<div class="error">{esc(nb["error"])}</div>' if nb.get("error") else ""
        notes = list(nb.get("flags", []))
        if nb.get("recovered"):
            notes.append(f"{nb['recovered']} reply(ies) arrived late and were recovered by the watchdog")
        if nb.get("stalled_cell") is not None:
            notes.append(f"stalled at cell {nb['stalled_cell']}: the kernel went idle, its reply never came")
        flags = "".join(f'<div class="flag">{esc(n)}</div>' for n in notes)
        rows.append(f'<tr><td>{link}{error}{flags}</td><td class="{esc(nb["status"])}">{esc(nb["status"])}</td>'
                    f'<td>{nb["seconds"]:.1f} s</td></tr><tr><td colspan="3" class="figs">{figs}</td></tr>')
    notebooks = report["notebooks"]
    clean = sum(bool(nb.get("clean", nb["status"] == "ok")) for nb in notebooks)
    problems = [f"{n} {what}" for n, what in (
        (sum(nb["status"] == "failed" for nb in notebooks), "failed"),
        (sum(nb["status"] == "stalled" for nb in notebooks), "stalled"),
        (sum(nb["status"] == "ok" and bool(nb.get("flags")) for nb in notebooks), "ran over budget"),
        (sum(nb["status"] == "ok" and not nb.get("flags") and bool(nb.get("recovered")) for nb in notebooks),
         "needed the watchdog")) if n]
    headline = (f"All {len(notebooks)} notebooks ran cleanly." if clean == len(notebooks) else
                f"{clean} of {len(notebooks)} notebooks ran cleanly; {', '.join(problems)}.")
    env = " · ".join(f"{k} {v}" for k, v in report["environment"].items())
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>labkit report</title>
<style>{_CSS}</style></head><body><h1>labkit report</h1>
<p>{esc(headline)} <small>{esc(env)}</small></p>
<table><thead><tr><th>notebook</th><th>status</th><th>time</th></tr></thead><tbody>
{''.join(rows)}</tbody></table>
{_assignments_html(report.get("assignments", []))}</body></html>
"""


def _assignments_html(assignments: list[dict]) -> str:
    """One table per assignment: each sample submission's grade, linked to its feedback page."""
    if not assignments:
        return ""
    esc = html.escape
    parts = ["<h2>Assignments: sample submissions</h2>"]
    for a in assignments:
        name, status = str(a.get("name")), str(a.get("status"))
        parts.append(f'<h3>{esc(name)} <span class="{esc(status)}">{esc(status)}</span></h3>'
                     f'<p>{esc(str(a.get("summary", "")))} ({a.get("seconds", 0):.1f} s)</p>')
        expected = {m["student_id"]: m["expected"] for m in a.get("mismatches", [])}
        rows = []
        for g in a.get("grades", []):
            sid = str(g["student_id"])
            page = f"grading/{name}/feedback/{sid}.html"
            want = expected.get(sid)
            note = f' <span class="failed">expected {want[0]:g} ({esc(str(want[1]))})</span>' if want else ""
            rows.append(f'<tr><td><a href="{esc(page)}">{esc(sid)}</a></td><td>{g["score"]:g} / {g["max_score"]:g}{note}</td>'
                        f'<td>{esc(str(g["status"]))}</td><td>{esc(str(g.get("reason") or ""))}</td></tr>')
        if rows:
            parts.append("<table><thead><tr><th>submission</th><th>score</th><th>status</th><th>reason</th></tr></thead>"
                         f"<tbody>{''.join(rows)}</tbody></table>")
    return "\n".join(parts)


def run(paths: list[str | Path], build: str | Path = "build", parameters: dict | None = None,
        cell_timeout: int = 600, assignments: str | Path | None = None, echo=print,
        notebook_budget: float = NOTEBOOK_BUDGET, cell_budget: float = CELL_BUDGET) -> dict:
    """Execute the notebooks found in ``paths``, print a line per notebook, write the report.

    With ``assignments`` (a folder such as ``assignments/``), also grade every assignment's bundled
    sample submissions and check them against their expected scores (``samples/expected.json``).
    """
    build = Path(build)
    notebooks = find_notebooks(paths)
    results = []
    for i, path in enumerate(notebooks, 1):
        echo(f"[{i}/{len(notebooks)}] {path} ...")
        result = execute_notebook(path, build, parameters=parameters, cell_timeout=cell_timeout,
                                  progress=sys.stderr.isatty(), notebook_budget=notebook_budget,
                                  cell_budget=cell_budget)
        mark = {"ok": "ok", "stalled": f"STALLED at cell {result.stalled_cell}"}.get(result.status,
                                                                                  f"FAILED: {result.error}")
        echo(f"[{i}/{len(notebooks)}] {path}: {mark} ({result.seconds:.1f} s, {len(result.figures)} figures)")
        for flag in result.flags + ([f"{result.recovered} late reply(ies) recovered"] if result.recovered else []):
            echo(f"[{i}/{len(notebooks)}]   warning: {flag}")
        results.append(result)
    graded = grade_assignments(assignments, build, echo) if assignments is not None else []
    report = write_report(build, results, graded)
    echo(f"report: {build / 'report.html'} ({sum(r.clean for r in results)}/{len(results)} notebooks clean"
         + (f", {sum(a['status'] == 'ok' for a in graded)}/{len(graded)} assignments ok)" if graded else ")"))
    return report
