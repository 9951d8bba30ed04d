"""Inside the sandbox: export the graded values as plain JSON, and notice tampering.

The grader appends small cells to the student's notebook that call :func:`dump`. It evaluates
the names and ``# uses:`` expressions the tests need in the student's namespace, and writes
them as JSON (numbers, strings, lists, dicts, numpy arrays as ``{"__ndarray__": ...}``) to
``.labkit/values/<question>.json``. Nothing here is trusted by the grader: student code could
patch this module or write those files itself. It only ever controls *its own answers*; the
grader decodes them strictly into plain types (so no ``__eq__`` trick survives) and runs the
tests in its own process.

:func:`guard_start` / :func:`guard_report` are a best-effort tripwire for monkeypatching
(builtins, numpy, IPython hooks, tracing); what they find makes the submission ``flagged``.
"""
from __future__ import annotations

import builtins
import json
import math
import os
import sys
import types

MAX_ITEMS = 5_000_000   # array elements / list items exported per value
VALUES_DIR = os.path.join(".labkit", "values")


def encode(value, depth: int = 0):
    """A JSON-safe form of ``value``, or ``{"__unsupported__": type}`` for anything else."""
    if depth > 20:
        return {"__unsupported__": "nesting deeper than 20"}
    if value is None or type(value) in (bool, str):
        return value
    if type(value) is int:
        return value if abs(value) < 2 ** 63 else {"__bigint__": str(value)}
    if type(value) is float:
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if type(value) in (list, tuple):
        if len(value) > MAX_ITEMS:
            return {"__unsupported__": f"list of {len(value)} items"}
        return [encode(v, depth + 1) for v in value]
    if type(value) is dict:
        if not all(type(k) is str for k in value):
            return {"__unsupported__": "dict with non-string keys"}
        return {"__dict__": {k: encode(v, depth + 1) for k, v in value.items()}}
    np = sys.modules.get("numpy")
    mod = type(value).__module__ or ""
    if mod.startswith(("tensorflow", "keras")) and hasattr(value, "numpy"):
        value = value.numpy()  # eager tensors and variables
    if np is not None and isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype.kind not in "biufc" or arr.size > MAX_ITEMS:
            return {"__unsupported__": f"numpy array of dtype {arr.dtype} and size {arr.size}"}
        if arr.dtype.kind == "c":
            data = [arr.real.ravel().tolist(), arr.imag.ravel().tolist()]
        else:
            data = [x if not isinstance(x, float) or math.isfinite(x) else repr(x)
                    for x in arr.ravel().tolist()]
        return {"__ndarray__": {"dtype": arr.dtype.str, "shape": list(arr.shape), "data": data}}
    return {"__unsupported__": f"{mod}.{type(value).__qualname__}"}


def dump(question: str, expressions: dict[str, str], namespace: dict, final: bool = False) -> None:
    """Evaluate each ``name -> expression`` in ``namespace`` and write the values as JSON."""
    values = {}
    for name, expr in expressions.items():
        try:
            values[name] = {"value": encode(eval(expr, namespace))}  # noqa: S307 (student's own code)
        except BaseException as exc:  # noqa: BLE001 -- any failure becomes a message for the test
            values[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    os.makedirs(VALUES_DIR, exist_ok=True)
    path = os.path.join(VALUES_DIR, ("final-" if final else "") + f"{question}.json")
    with open(path, "w") as fh:
        json.dump({"question": question, "values": values}, fh)


# --- tripwire -----------------------------------------------------------------------------------
_snapshot: dict = {}


def _watched():
    """The objects whose identity should not change while the student's code runs."""
    watched = {f"builtins.{k}": v for k, v in vars(builtins).items()
               if isinstance(v, (types.BuiltinFunctionType, type))}
    np = sys.modules.get("numpy")
    if np is not None:
        for name in ("allclose", "isclose", "array_equal", "asarray", "array", "testing"):
            watched[f"numpy.{name}"] = getattr(np, name, None)
    watched["json.dump"] = json.dump
    watched["labkit.export.dump"] = dump
    watched["labkit.export.encode"] = encode
    return watched


def _hooks() -> dict:
    hooks = {"sys.settrace": sys.gettrace() is not None, "sys.setprofile": sys.getprofile() is not None}
    try:
        ip = get_ipython()  # noqa: F821 -- defined inside IPython
    except NameError:
        return hooks
    for event, callbacks in ip.events.callbacks.items():
        hooks[f"ipython.events.{event}"] = len(callbacks)
    hooks["ipython.input_transformers_post"] = len(ip.input_transformers_post)
    hooks["ipython.input_transformers_cleanup"] = len(ip.input_transformers_cleanup)
    hooks["ipython.ast_transformers"] = len(ip.ast_transformers)
    hooks["ipython.custom_exceptions"] = len(getattr(ip, "custom_exceptions", ()) or ())
    return hooks


def guard_start() -> None:
    """Remember the identities of builtins, numpy's comparison helpers and IPython's hooks."""
    import numpy  # noqa: F401 -- so that numpy's functions are watched from the start

    _snapshot["ids"] = {k: id(v) for k, v in _watched().items()}
    _snapshot["hooks"] = _hooks()


def guard_report() -> list[str]:
    """What changed since :func:`guard_start`: replaced functions, added hooks."""
    if not _snapshot:
        return ["the tripwire's snapshot is missing (labkit.grading.export was reloaded?)"]
    found = []
    now = {k: id(v) for k, v in _watched().items()}
    for key, before in _snapshot["ids"].items():
        if now.get(key) != before:
            found.append(f"{key} was replaced")
    hooks = _hooks()
    for key, before in _snapshot["hooks"].items():
        if hooks.get(key) != before:
            found.append(f"{key} changed ({before} -> {hooks.get(key)})")
    for key in hooks.keys() - _snapshot["hooks"].keys():
        found.append(f"{key} was added")
    return found


def finish(namespace: dict, exports: dict[str, dict[str, str]]) -> None:
    """The grader's last cell: export every question again and write the tripwire's report."""
    for question, expressions in exports.items():
        dump(question, expressions, namespace, final=True)
    os.makedirs(VALUES_DIR, exist_ok=True)
    with open(os.path.join(VALUES_DIR, "guard.json"), "w") as fh:
        json.dump({"tamper": guard_report()}, fh)
