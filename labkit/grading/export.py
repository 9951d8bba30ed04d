"""Inside the sandbox: compute the graded values and send them back as plain JSON; notice tampering.

The grader's notebook client (outside the sandbox, :mod:`labkit.grading.client`) asks the student's
kernel for each question's values right after the question's tests would have run, and once more
at the end. Each request is a Jupyter ``user_expressions`` call of :func:`export` with an *export
plan* (:mod:`labkit.grading.plans`): the student's names to read, and operations on them with plain
inputs (never a test's text). The values travel back inside the kernel's ``execute_reply`` on the
shell channel, to the client directly: nothing is written to a file that later cells could rewrite.

Nothing here is trusted by the grader: student code could patch this module or answer for it. It
only ever controls *its own answers*; the grader decodes them strictly into plain types (so no
``__eq__`` trick survives) and runs the tests in its own process.

:func:`guard_start` / :func:`guard_report` are a best-effort tripwire for monkeypatching
(builtins, numpy, IPython hooks, tracing); what they find makes the submission ``flagged``.
"""
from __future__ import annotations

import builtins
import json
import math
import operator
import sys
import types

MAX_ITEMS = 5_000_000   # array elements / list items exported per value


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


def evaluate(plan, namespace: dict):
    """Run an export plan (see :mod:`labkit.grading.plans`) in the student's namespace."""
    if "v" in plan:
        from labkit.grading.checks import decode

        return decode(plan["v"])
    if "name" in plan and len(plan) == 1:
        try:
            return namespace[plan["name"]]
        except KeyError:
            raise NameError(f"name {plan['name']!r} is not defined") from None
    if "ref" in plan:
        import importlib

        module, _, attr = plan["ref"].rpartition(".")
        return getattr(importlib.import_module(module), attr)
    if "attr" in plan:
        return getattr(evaluate(plan["attr"], namespace), plan["name"])
    if "item" in plan:
        return evaluate(plan["item"], namespace)[evaluate(plan["key"], namespace)]
    if "slice" in plan:
        return slice(*(None if p is None else evaluate(p, namespace) for p in plan["slice"]))
    if "call" in plan:
        fn = evaluate(plan["call"], namespace)
        return fn(*(evaluate(a, namespace) for a in plan["args"]),
                  **{k: evaluate(v, namespace) for k, v in plan["kw"].items()})
    if "op" in plan:
        args = [evaluate(a, namespace) for a in plan["args"]]
        if plan["op"] == "not_contains":
            return not operator.contains(*args)
        return getattr(operator, plan["op"])(*args)
    for kind, make in (("tuple", tuple), ("list", list), ("set", set)):
        if kind in plan:
            return make(evaluate(e, namespace) for e in plan[kind])
    if "dict" in plan:
        return {evaluate(k, namespace): evaluate(v, namespace) for k, v in plan["dict"]}
    if "eval" in plan:  # a visible test's expression that the grader could not split (students have it)
        return eval(plan["eval"], namespace)  # noqa: S307
    raise ValueError("unknown export plan")


def values(plans: dict, namespace: dict) -> dict:
    """Each ``name -> plan`` evaluated and encoded: ``{name: {"value": ...} | {"error": "..."}}``."""
    out = {}
    for name, plan in plans.items():
        try:
            out[name] = {"value": encode(evaluate(plan, namespace))}
        except BaseException as exc:  # noqa: BLE001 -- any failure becomes a message for the test
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return out


class Exported:
    """What a ``user_expressions`` export returns: IPython sends ``_repr_json_`` back to the client."""

    def __init__(self, payload: dict):
        self.payload = payload

    def _repr_json_(self):
        return self.payload

    def __repr__(self) -> str:
        return "<labkit export>"


def export(plan_text: str, namespace: dict) -> Exported:
    """One question's values: ``{"question": q, "values": {name: {"value"|"error": ...}}}``."""
    job = json.loads(plan_text)
    return Exported({"question": job["question"], "values": values(job["values"], namespace)})


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
    watched["json.loads"] = json.loads
    for name in ("export", "finish", "values", "evaluate", "encode", "guard_report"):
        watched[f"labkit.grading.export.{name}"] = globals()[name]
    watched["sys.modules[labkit.grading.export]"] = sys.modules.get(__name__)
    for name in ("attrgetter", "contains", "add", "eq"):
        watched[f"operator.{name}"] = getattr(operator, name)
    return watched


def _hooks() -> dict:
    hooks = {"sys.settrace": sys.gettrace() is not None, "sys.setprofile": sys.getprofile() is not None}
    try:
        from IPython import get_ipython

        ip = get_ipython()
    except ImportError:
        ip = None
    if ip is None:
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


def finish(plans_text: str, namespace: dict) -> Exported:
    """The last request: every question's values again, and the tripwire's report."""
    jobs = json.loads(plans_text)
    return Exported({"questions": {q: values(p, namespace) for q, p in jobs.items()}, "tamper": guard_report()})
