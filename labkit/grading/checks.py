"""Run tests on plain values, and explain failures in plain words.

Two users:

- the grader runs this module as a **fresh, isolated process of its own** (``python -I``, from a
  neutral folder: never the student's kernel, never the student's files on its import path). It
  reads ``{"tests": [...], "values": {question: [exported payloads]}}`` on stdin,
  decodes the values strictly into plain Python/numpy types, runs every test, and prints one
  JSON list of results. Student code never runs here: an exported value is only ever a number,
  string, list, dict or numeric array, so an object whose ``__eq__`` always says True, or a
  patched numpy, cannot reach the tests.
- :func:`labkit.check` (in the student's kernel) uses :func:`run_test` and :func:`explain` to
  run visible tests on the student's live variables.
"""
from __future__ import annotations

import ast
import json
import math
import signal
import sys

import numpy as np

ALLOWED_DTYPES = set("biufc")


class BadValue(ValueError):
    """An exported value that is not plain data."""


MAX_DIMS = 32
MAX_ITEMS = 5_000_000


def decode(obj, depth: int = 0):
    """The plain value behind an exported JSON object; raises BadValue for anything odd."""
    if depth > 25:
        raise BadValue("nested too deeply")
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) is list:
        return [decode(v, depth + 1) for v in obj]
    if type(obj) is dict and len(obj) == 1:
        (tag, inner), = obj.items()
        if tag == "__dict__" and type(inner) is dict:
            return {str(k): decode(v, depth + 1) for k, v in inner.items()}
        if tag == "__float__" and inner in ("nan", "inf", "-inf"):
            return float(inner)
        if tag == "__bigint__" and type(inner) is str and 0 < len(inner) < 400 \
                and inner.lstrip("-").isdigit() and inner.isascii():
            return int(inner)
        if tag == "__unsupported__":
            raise BadValue(f"it is a {str(inner)[:80]}, which the grader cannot receive "
                           "(export numbers, strings, lists, dicts or numeric numpy arrays)")
        if tag == "__ndarray__" and type(inner) is dict:
            return _array(inner)
    raise BadValue(f"unexpected {type(obj).__name__} in the exported values")


def _array(inner: dict):
    try:
        dtype = np.dtype(str(inner.get("dtype"))[:16])
    except (TypeError, ValueError, SyntaxError) as exc:
        raise BadValue(f"array dtype {str(inner.get('dtype'))[:20]!r} is not a dtype") from exc
    if dtype.kind not in ALLOWED_DTYPES or dtype.hasobject or dtype.subdtype is not None or dtype.fields:
        raise BadValue(f"array dtype {dtype} is not numeric")
    shape = inner.get("shape", [])
    if type(shape) is not list or len(shape) > MAX_DIMS or \
            not all(type(s) is int and 0 <= s <= MAX_ITEMS for s in shape) or math.prod(shape) > MAX_ITEMS:
        raise BadValue("array shape is not a short list of sizes")
    data = inner.get("data", [])
    if type(data) is not list:
        raise BadValue("array data is not a list")
    try:
        if dtype.kind == "c":
            if len(data) != 2 or not all(type(d) is list for d in data):
                raise BadValue("complex array data is not [real, imag]")
            re_, im = (np.asarray([_number(x) for x in d], dtype=np.float64) for d in data)
            arr = (re_ + 1j * im).astype(dtype)
        else:
            arr = np.asarray([_number(x) for x in data], dtype=dtype)
    except (OverflowError, ValueError, TypeError) as exc:
        raise BadValue(f"array data does not fit its dtype {dtype} ({str(exc)[:80]})") from exc
    if arr.size != math.prod(shape):
        raise BadValue("array shape does not match its data")
    return arr.reshape(shape)


def _number(x):
    if type(x) is str and x in ("nan", "inf", "-inf"):
        return float(x)
    if type(x) not in (bool, int, float):
        raise BadValue("array data is not numeric")
    return x


def load_values(texts: list) -> tuple[dict, dict]:
    """Merge exported payloads (dicts, or JSON texts of them) -> (values, errors).

    The earliest payload that holds a good value for a name wins (the export right after the
    question's tests, as if the tests ran there); later ones only fill in names that were
    missing or raised an error there (e.g. an answer cell moved below its tests).
    """
    values, errors = {}, {}
    for text in texts:
        try:
            entries = (json.loads(text) if isinstance(text, str) else text)["values"]
        except Exception:  # noqa: BLE001 -- a broken payload counts as no payload
            continue
        if type(entries) is not dict:
            continue
        for name, entry in entries.items():
            if type(entry) is not dict or type(name) is not str:
                continue
            if name in values:
                continue
            if "value" in entry:
                try:
                    values[name] = decode(entry["value"])
                    errors.pop(name, None)
                except Exception as exc:  # noqa: BLE001 -- BadValue, and anything numpy raises on odd input
                    errors[name] = f"{name} could not be received: {str(exc)[:300]}"
            else:
                errors[name] = f"computing {name} raised {str(entry.get('error'))[:300]}"
    return values, errors


# --- running one test ---------------------------------------------------------------------------
def _assert_source(body: str, lineno: int | None) -> str | None:
    if not lineno:
        return None
    lines = body.splitlines()
    return lines[lineno - 1].strip() if 0 < lineno <= len(lines) else None


def _shown(value) -> str:
    text = np.array2string(value, threshold=12) if isinstance(value, np.ndarray) else repr(value)
    return text if len(text) < 200 else text[:200] + "..."


def explain(exc: BaseException, body: str, namespace: dict) -> str:
    """Say in plain words why a test failed."""
    tb = exc.__traceback__
    lineno = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<test>":
            lineno = tb.tb_lineno
        tb = tb.tb_next
    line = _assert_source(body, lineno)
    if isinstance(exc, NameError):
        name = getattr(exc, "name", None) or str(exc)
        return (f"`{name}` is not defined yet. Run the cell where you define it (or check its "
                "spelling), then try again.")
    if isinstance(exc, NotImplementedError):
        return "this still raises NotImplementedError: replace the placeholder line with your solution."
    if isinstance(exc, AssertionError):
        said = f" ({exc})" if str(exc) else ""
        if line:
            names = []
            try:
                for node in ast.walk(ast.parse(line.removeprefix("assert ").split(",")[0])):
                    if isinstance(node, ast.Name) and node.id in namespace and node.id not in ("np", "math"):
                        names.append(node.id)
            except SyntaxError:
                pass
            values = "; ".join(f"{n} = {_shown(namespace[n])}" for n in dict.fromkeys(names))
            return f"the check `{line}` was not true{said}." + (f" Here {values}." if values else "")
        return f"a check was not true{said}."
    where = f" in `{line}`" if line else ""
    return f"your code raised {type(exc).__name__}: {exc}{where}."


class _TestTimeout(Exception):
    pass


def run_test(body: str, namespace: dict, seconds: int | None = None) -> tuple[bool, str | None]:
    """Execute a test body in ``namespace``: (passed, plain-words reason when it failed)."""
    def on_alarm(*_):
        raise _TestTimeout()
    old = None
    if seconds:
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(seconds)
    try:
        exec(compile(body, "<test>", "exec"), namespace)  # noqa: S102 -- instructor's test code
        return True, None
    except _TestTimeout:
        return False, f"the test took longer than {seconds} s"
    except BaseException as exc:  # noqa: BLE001 -- every failure becomes a message
        return False, explain(exc, body, namespace)
    finally:
        if seconds:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


def grade_values(tests: list[dict], value_texts: dict[str, list[str]], per_test_seconds: int = 20) -> list[dict]:
    """Every test on its question's decoded values -> [{test_id, question, passed, points, ...}].

    ``value_texts`` maps a question to the raw JSON texts exported for it (earliest first).
    """
    decoded = {q: load_values(texts) for q, texts in value_texts.items()}
    results = []
    for t in tests:
        values, errors = decoded.get(t["question"], ({}, {}))
        names = list(t["needs"]) + list(t["uses"])
        missing = [errors.get(n) or f"{n} was not exported (the notebook stopped before it)"
                   for n in names if n not in values]
        if missing:
            passed, why = False, "; ".join(missing)
        else:
            ns = {"np": np, "numpy": np, "math": math, "__builtins__": __builtins__}
            ns.update({n: values[n] for n in names})
            passed, why = run_test(t["body"], ns, per_test_seconds)
        message = "passed" if passed else t["message"]
        if not passed and not t["hidden"] and why:
            message = f"{t['message']}: {why}"
        elif not passed and t["hidden"] and missing:
            message = f"{t['message']} ({why})"
        results.append({"test_id": t["id"], "question": t["question"], "passed": passed,
                        "points": t["points"] if passed else 0.0, "max_points": t["points"],
                        "hidden": t["hidden"], "message": message[:1000]})
    return results


def main() -> int:
    """The grader's test process: a job on stdin, one JSON list of results on stdout."""
    import resource

    limit = 8 * 1024 ** 3  # the values come from student code: bound what decoding them may take
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    job = json.loads(sys.stdin.read())
    results = grade_values(job["tests"], job["values"], job.get("per_test_seconds", 20))
    sys.stdout.write(json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
