"""Export plans: what the student's kernel is asked to compute, without the test's text.

A test's ``# uses: y = clip(np.linspace(-3, 3, 7), lo=0)`` must run in the student's namespace
(it calls their function), but the expression itself is part of a hidden test and must never
reach the kernel, where student code could read it (input history, frames, execution hooks) and
print it. So the grader splits it:

- every part that does not touch the student's names (``np.linspace(-3, 3, 7)``, ``0``) is
  evaluated here, in the grader, into a plain value (numbers, strings, lists, dicts, numeric arrays);
- what is left is a small tree of operations on the student's names: call, attribute, index,
  operators, tuples/lists/dicts. :func:`labkit.grading.export.evaluate` runs that tree in the kernel.

So the kernel learns which of the student's names a test uses and the plain inputs it passes them:
what their own function would see anyway. It never sees the expression, the assertions, the
expected values or the messages. A hidden test whose ``# uses:`` expression can't be split this way
(a lambda or comprehension over student names) is an authoring error; a visible test's expression
may fall back to being sent as text (students have it in their notebook).
"""
from __future__ import annotations

import ast
import builtins
import json
import math

import numpy as np

from labkit.grading import authoring as au
from labkit.grading import export

#: Names the grader evaluates itself (never looked up in the student's namespace).
LOCAL = {"np": np, "numpy": np, "math": math}
SAFE_BUILTINS = {n: getattr(builtins, n) for n in (
    "abs", "all", "any", "bool", "complex", "dict", "divmod", "enumerate", "float", "frozenset", "int", "len",
    "list", "max", "min", "pow", "range", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple",
    "zip", "True", "False", "None")}
BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "truediv", ast.FloorDiv: "floordiv",
          ast.Mod: "mod", ast.Pow: "pow", ast.MatMult: "matmul", ast.LShift: "lshift", ast.RShift: "rshift",
          ast.BitOr: "or_", ast.BitXor: "xor", ast.BitAnd: "and_"}
UNARY = {ast.USub: "neg", ast.UAdd: "pos", ast.Not: "not_", ast.Invert: "invert"}
COMPARE = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge",
           ast.Is: "is_", ast.IsNot: "is_not", ast.In: "contains", ast.NotIn: "not_contains"}


class PlanError(au.AuthoringError):
    """A ``# uses:`` expression the grader can't split into plain inputs and student operations."""


def _student_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id not in LOCAL
            and n.id not in SAFE_BUILTINS}


def _local_value(node: ast.AST, where: str):
    """Evaluate a part that uses no student name, here, into a plan leaf."""
    try:
        value = eval(compile(ast.Expression(node), "<uses>", "eval"),  # noqa: S307 -- the instructor's own text
                     {"__builtins__": SAFE_BUILTINS, **LOCAL})
    except Exception as exc:  # noqa: BLE001
        raise PlanError(f"{where}: {ast.unparse(node)!r} failed in the grader: {type(exc).__name__}: {exc}") from exc
    encoded = export.encode(value)
    if not _unsupported(encoded):
        return {"v": encoded}
    ref = _module_path(node)
    if ref:
        return {"ref": ref}
    raise PlanError(f"{where}: {ast.unparse(node)!r} is not a plain value the grader can send "
                    "(numbers, strings, lists, dicts, numeric arrays, or np/math functions)")


def _unsupported(encoded) -> bool:
    if isinstance(encoded, dict):
        return "__unsupported__" in encoded or any(_unsupported(v) for v in encoded.values())
    if isinstance(encoded, list):
        return any(_unsupported(v) for v in encoded)
    return False


def _module_path(node: ast.AST) -> str | None:
    """``np.linalg.norm`` -> ``"numpy.linalg.norm"``, ``len`` -> ``"builtins.len"`` (a function the kernel
    imports itself)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in LOCAL:
        return ".".join([LOCAL[node.id].__name__, *reversed(parts)])
    if isinstance(node, ast.Name) and node.id in SAFE_BUILTINS and not parts:
        return f"builtins.{node.id}"
    return None


def _plan(node: ast.AST, where: str):
    if isinstance(node, ast.Slice):  # only inside an index: x[1:3], x[:, 0]
        return {"slice": [None if p is None else _plan(p, where) for p in (node.lower, node.upper, node.step)]}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):  # item by item: a tuple stays a tuple, a set a set
        kind = {ast.Tuple: "tuple", ast.List: "list", ast.Set: "set"}[type(node)]
        if any(isinstance(e, ast.Starred) for e in node.elts):
            raise PlanError(f"{where}: starred items are not supported in '# uses:'")
        return {kind: [_plan(e, where) for e in node.elts]}
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {"dict": [[_plan(k, where), _plan(v, where)] for k, v in zip(node.keys, node.values)]}
    if not _student_names(node):
        return _local_value(node, where)
    if isinstance(node, ast.Name):
        return {"name": node.id}
    if isinstance(node, ast.Attribute):
        return {"attr": _plan(node.value, where), "name": node.attr}
    if isinstance(node, ast.Subscript):
        return {"item": _plan(node.value, where), "key": _plan(node.slice, where)}
    if isinstance(node, ast.Call):
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise PlanError(f"{where}: *args and **kwargs are not supported in '# uses:'")
        return {"call": _plan(node.func, where), "args": [_plan(a, where) for a in node.args],
                "kw": {k.arg: _plan(k.value, where) for k in node.keywords}}
    if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
        return {"op": BINOPS[type(node.op)], "args": [_plan(node.left, where), _plan(node.right, where)]}
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return {"op": UNARY[type(node.op)], "args": [_plan(node.operand, where)]}
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARE:
        op, left, right = COMPARE[type(node.ops[0])], node.left, node.comparators[0]
        if op in ("contains", "not_contains"):  # `a in b` is contains(b, a)
            left, right = right, left
        return {"op": op, "args": [_plan(left, where), _plan(right, where)]}
    raise PlanError(f"{where}: '# uses:' can call, index, take attributes of and combine with operators the "
                    f"student's names, but not {type(node).__name__} ({ast.unparse(node)!r}); a lambda or "
                    "comprehension would have to reach the student's kernel as code")


def compile_expression(expr: str, where: str = "'# uses:'", hidden: bool = True) -> dict:
    """One ``# uses:`` expression -> its plan. Visible tests may fall back to ``{"eval": text}``."""
    try:
        return _plan(ast.parse(expr.strip(), mode="eval").body, where)
    except PlanError:
        if hidden:
            raise
        return {"eval": expr}


def compile_exports(assignment: au.Assignment) -> dict[str, dict[str, dict]]:
    """Per question, name -> plan for every value its tests need (plain names and ``# uses:``)."""
    out: dict[str, dict[str, dict]] = {}
    for t in assignment.tests:
        q = out.setdefault(t.question, {})
        for name in t.needs:
            q.setdefault(name, {"name": name})
        for name, expr in t.uses.items():  # as in Assignment.exports: a later test's expression wins
            q[name] = compile_expression(expr, f"test {t.id} ({name})", hidden=t.hidden)
    return out


def plan_json(question: str, plans: dict[str, dict]) -> str:
    """The text sent to the kernel for one question's export."""
    return json.dumps({"question": question, "values": plans}, separators=(",", ":"))
