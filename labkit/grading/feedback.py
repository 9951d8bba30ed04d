"""What the grader writes for people: feedback pages and CSV files.

- ``feedback/<student>.html``: the student's executed notebook (their cells and outputs, rendered
  as text: no script or HTML from the notebook is ever executed by the page) and a table of the
  test results. Hidden tests appear only as their instructor-chosen message and points, never
  their code. As a second line of defence (the kernel never receives a hidden test's text:
  :mod:`labkit.grading.plans`), every verbatim copy of a hidden test's lines, ``# uses:``
  expressions and export plans is cut out of what the page shows (:func:`hidden_texts`).
- ``grades.csv``: ``student_id, score, max_score, status, reason`` (DESIGN.md section 2).
- ``lms.csv``: one row per student for an LMS import: ``student_id, assignment, points,
  points_possible, percent, status, comment``.
"""
from __future__ import annotations

import base64
import binascii
import csv
import html
import re
from pathlib import Path

from labkit import quiet
from labkit.grading import untrusted

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_TEXT = 20_000  # characters shown per output

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:64rem;color:#222}
table{border-collapse:collapse;width:100%} td,th{padding:.3rem .5rem;border-bottom:1px solid #ddd;text-align:left}
.pass{color:#0a7d32;font-weight:600} .fail{color:#c62828;font-weight:600}
pre{background:#f6f8fa;padding:.5rem;overflow-x:auto;white-space:pre-wrap;font-size:.85em}
pre.out{background:#fff;border-left:3px solid #ddd} pre.err{background:#fff0f0}
.md{white-space:pre-wrap} .cell{margin:1rem 0} small{color:#666}
"""


HIDDEN = "[hidden]"


def hidden_texts(assignment, plans: dict | None = None) -> list[str]:
    """Verbatim text of the hidden tests that must never appear on a feedback page: each line of
    their bodies (long enough to be specific), their ``# uses:`` expressions, and the export plans the
    kernel received for them (as sent). Longest first, so that a longer match is cut before its parts."""
    import json

    from labkit.grading import plans as pl

    plans = plans or {}
    found = set()
    for t in assignment.tests:
        if not t.hidden:
            continue
        found.update(line.strip() for line in t.body.splitlines() if len(line.strip()) >= 12)
        for name, expr in t.uses.items():
            found.update((expr.strip(), f"{name} = {expr.strip()}"))
            plan = plans.get(t.question, {}).get(name)
            if plan is not None:
                found.update((json.dumps(plan, separators=(",", ":")), untrusted.dumps(plan)))
        if t.question in plans:
            found.add(pl.plan_json(t.question, plans[t.question]))
    if plans:
        found.add(untrusted.dumps(plans))
    return sorted((s for s in found if len(s) >= 8), key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s in text:
            text = text.replace(s, HIDDEN)
    return text


def _text(value, secrets: list[str] = ()) -> str:
    text = "".join(str(v) for v in value) if isinstance(value, list) else str(value)
    text = scrub(untrusted.clean_text(ANSI.sub("", text)), secrets)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"\n... ({len(text) - MAX_TEXT} more characters)"


def _png(data) -> str | None:
    data = "".join(data) if isinstance(data, list) else str(data)
    data = re.sub(r"\s", "", data)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(b"\x89PNG") or len(raw) > 2_000_000:
        return None
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def render_output(out: dict, secrets: list[str] = ()) -> str:
    esc = html.escape
    kind = out.get("output_type")
    if kind == "stream":
        text = _text(out.get("text", ""), secrets)
        if out.get("name") == "stderr":  # TensorFlow's start-up lines are not the student's doing
            text = quiet.strip_noise(text)
        return f'<pre class="out">{esc(text)}</pre>' if text.strip() else ""
    if kind == "error":
        tb = out.get("traceback") if isinstance(out.get("traceback"), list) else []
        tb = "\n".join(_text(t, secrets) for t in tb[-8:]) or f'{out.get("ename")}: {out.get("evalue")}'
        return f'<pre class="out err">{esc(_text(tb, secrets))}</pre>'
    data = out.get("data", {}) if isinstance(out.get("data"), dict) else {}
    if "image/png" in data:
        img = _png(data["image/png"])
        if img:
            return img
    if "text/plain" in data:
        return f'<pre class="out">{esc(_text(data["text/plain"], secrets))}</pre>'
    return ""


def render_notebook(nb: dict | None, secrets: list[str] = ()) -> str:
    """The student's cells (grader-injected cells left out) and their outputs, as safe HTML."""
    if not nb or not isinstance(nb.get("cells"), list):
        return "<p>The executed notebook is not available.</p>"
    parts, esc = [], html.escape
    for cell in nb.get("cells", [])[:2000]:
        if not isinstance(cell, dict):
            continue
        meta = cell.get("metadata", {}).get("labkit", {}) if isinstance(cell.get("metadata"), dict) else {}
        if isinstance(meta, dict) and meta.get("injected"):
            continue
        src = _text(cell.get("source", ""), secrets)
        if cell.get("cell_type") == "markdown":
            parts.append(f'<div class="cell md">{esc(src)}</div>')
        elif cell.get("cell_type") == "code":
            outputs = cell.get("outputs") if isinstance(cell.get("outputs"), list) else []
            outs = "".join(render_output(o, secrets) for o in outputs[:200] if isinstance(o, dict))
            parts.append(f'<div class="cell"><pre>{esc(src)}</pre>{outs}</div>')
    return "\n".join(parts)


def render_feedback(assignment: str, row: dict, results: list[dict], executed: dict | None,
                    secrets: list[str] = (), note: str = "") -> str:
    esc = lambda v: html.escape(untrusted.clean_text(str(v)))  # noqa: E731
    trs = []
    for r in results:
        mark = '<span class="pass">passed</span>' if r["passed"] else '<span class="fail">failed</span>'
        kind = "hidden" if r["hidden"] else "visible"
        over = " <small>(set by a grader)</small>" if r.get("overridden") else ""
        trs.append(f'<tr><td>{esc(r["test_id"])} <small>{kind}</small></td><td>{mark}</td>'
                   f'<td>{r["points"]:g} / {r["max_points"]:g}{over}</td><td>{esc(scrub(r["message"], secrets))}</td></tr>')
    notebook = f"<p>{esc(note)}</p>" if note else render_notebook(executed, secrets)
    reason = scrub(row["reason"], secrets)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{esc(assignment)}: feedback for {esc(row["student_id"])}</title><style>{_CSS}</style></head><body>
<h1>{esc(assignment)}: feedback for {esc(row["student_id"])}</h1>
<p><b>Score: {row["score"]:g} / {row["max_score"]:g}</b> &middot; status <b>{esc(row["status"])}</b>
{('&middot; ' + esc(reason)) if reason else ''}</p>
<h2>Tests</h2><table><thead><tr><th>test</th><th>result</th><th>points</th><th>message</th></tr></thead>
<tbody>{''.join(trs)}</tbody></table>
<h2>Your notebook, as the grader ran it</h2>{notebook}
</body></html>
"""


GRADES_COLUMNS = ["student_id", "score", "max_score", "status", "reason"]
LMS_COLUMNS = ["student_id", "assignment", "points", "points_possible", "percent", "status", "comment"]


def write_grades_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
        w = csv.DictWriter(fh, GRADES_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "score": f'{r["score"]:g}', "max_score": f'{r["max_score"]:g}'})


def write_lms_csv(path: Path, assignment: str, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
        w = csv.DictWriter(fh, LMS_COLUMNS)
        w.writeheader()
        for r in rows:
            pct = 100 * r["score"] / r["max_score"] if r["max_score"] else 0.0
            w.writerow({"student_id": r["student_id"], "assignment": assignment, "points": f'{r["score"]:g}',
                        "points_possible": f'{r["max_score"]:g}', "percent": f"{pct:.1f}",
                        "status": r["status"], "comment": r["reason"]})
