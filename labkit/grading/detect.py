"""The flagging scan: what in a student's own cells looks like an attempt on the grader.

It reads code the way Python does, not as text, so that spelling tricks don't hide a name:

- **identifiers are NFKC-normalised** by Python's parser (``import ｓｏｃｋｅｔ`` *is*
  ``import socket``); the scan works on the syntax tree, where they already are;
- **aliases are followed**: ``import numpy as n; n.allclose = ...``, ``from numpy import testing as
  t``, ``m = np`` all resolve to the module they name;
- **names built from strings are folded** where the parts are constants:
  ``sys.modules['lab' + 'kit.grading']``, ``__import__(''.join(['so', 'cket']))``,
  ``getattr(np, 'all' + 'close')``, ``'tekcos'[::-1]``, ``chr(115) + ...``, f-strings of constants;
- IPython syntax (``%magic``, ``!shell``) is translated to the Python it runs first.

A finding never changes a score: it flags the submission for a person to review. Code that still
doesn't parse falls back to a text scan of its NFKC form.
"""
from __future__ import annotations

import ast
import re
import unicodedata

#: dotted-name prefixes -> what using them suggests
RULES = {
    "socket": "opens network connections", "urllib": "opens network connections",
    "requests": "opens network connections", "http": "opens network connections",
    "ftplib": "opens network connections", "smtplib": "opens network connections",
    "zmq": "talks to the kernel's sockets (zmq, jupyter_client)",
    "jupyter_client": "talks to the kernel's sockets (zmq, jupyter_client)",
    "subprocess": "starts or signals processes", "multiprocessing": "starts or signals processes",
    "pty": "starts or signals processes", "os.system": "starts or signals processes",
    "os.popen": "starts or signals processes", "os.fork": "starts or signals processes",
    "os.forkpty": "starts or signals processes", "os.kill": "starts or signals processes",
    "os.killpg": "starts or signals processes", "os.posix_spawn": "starts or signals processes",
    "os.posix_spawnp": "starts or signals processes", "signal.pthread_kill": "starts or signals processes",
    **{f"os.{f}": "starts or signals processes" for f in ("execl", "execle", "execlp", "execlpe", "execv", "execve",
                                                          "execvp", "execvpe", "spawnl", "spawnle", "spawnlp",
                                                          "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe")},
    "ctypes": "uses ctypes or gc introspection", "gc.get_referrers": "uses ctypes or gc introspection",
    "gc.get_referents": "uses ctypes or gc introspection", "gc.get_objects": "uses ctypes or gc introspection",
    "importlib": "edits the import system", "imp": "edits the import system", "sys.modules": "edits the import system",
    "sys.meta_path": "edits the import system", "sys.path_hooks": "edits the import system",
    "builtins": "touches builtins", "__builtins__": "touches builtins",
    "IPython": "uses IPython's internals (hooks, transformers)", "ipykernel": "uses IPython's internals (hooks, transformers)",
    "get_ipython": "uses IPython's internals (hooks, transformers)",
    "labkit": "refers to labkit, the grader",
    "sys.settrace": "traces or inspects frames", "sys.setprofile": "traces or inspects frames",
    "sys._getframe": "traces or inspects frames", "sys._current_frames": "traces or inspects frames",
    "sys.addaudithook": "traces or inspects frames", "threading.settrace": "traces or inspects frames",
    "threading.setprofile": "traces or inspects frames", "inspect": "traces or inspects frames",
    "exec": "runs code built at run time (exec, eval, __import__)",
    "eval": "runs code built at run time (exec, eval, __import__)",
    "compile": "runs code built at run time (exec, eval, __import__)",
    "__import__": "runs code built at run time (exec, eval, __import__)",
}
ALLOWED = ("labkit.check",)  # ``from labkit import check`` is how students self-check
CALLS_ONLY = {"exec", "eval", "compile", "__import__", "get_ipython"}  # names that matter when called or passed
#: names every kernel has without an import
BUILTIN_NAMES = CALLS_ONLY | {"__builtins__", "getattr", "setattr", "delattr", "vars", "globals", "chr", "str"}
#: modules whose attributes a submission must not replace (the export, the tripwire and the kernel use them)
PATCHABLE = {"numpy", "math", "builtins", "__builtins__", "json", "labkit", "sys", "IPython", "ipykernel", "operator",
             "zmq", "jupyter_client", "os"}
IDENTIFIER = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")
TEXT = [
    (r"/proc/|\bptrace\b", "reads other processes through /proc"),
    (r"\.labkit\b", "touches the grader's results folder"),
    (r"/run/kernel\b", "touches the kernel's sockets (zmq, jupyter_client)"),
]
MONKEYPATCH = "assigns to an attribute of {} (monkeypatching)"
MAX_FOLD = 10_000


def _rule(path: str | None) -> str | None:
    if not path:
        return None
    if any(path == a or path.startswith(a + ".") for a in ALLOWED):
        return None
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        found = RULES.get(".".join(parts[:i]))
        if found:
            return found
    return None


class Scanner(ast.NodeVisitor):
    """One pass over a cell's syntax tree, in source order, collecting findings."""

    def __init__(self, aliases: dict[str, str], strings: dict[str, str]):
        self.aliases, self.strings = aliases, strings  # shared across a submission's cells
        self.found: list[str] = []

    # -- what a name or expression refers to ------------------------------------------------------
    def fold(self, node) -> str | None:
        """The string an expression builds from constants, or None."""
        try:
            value = self._fold(node, 0)
        except (TypeError, ValueError, IndexError, OverflowError, RecursionError):
            return None
        return value if isinstance(value, str) and len(value) <= MAX_FOLD else None

    def _fold(self, node, depth):
        if depth > 50:
            return None
        f = lambda n: self._fold(n, depth + 1)  # noqa: E731
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)):
            return node.value
        if isinstance(node, ast.Name):
            return self.strings.get(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = f(node.operand)
            return -value if isinstance(value, int) else None
        if isinstance(node, ast.BinOp):
            left, right = f(node.left), f(node.right)
            if left is None or right is None:
                return None
            if isinstance(node.op, ast.Add) and type(left) is type(right):
                return left + right if not isinstance(left, str) or len(left) + len(right) <= MAX_FOLD else None
            if isinstance(node.op, ast.Mult) and {type(left), type(right)} == {str, int}:
                n = left if isinstance(left, int) else right
                s = right if isinstance(left, int) else left
                return s * n if 0 <= n and len(s) * n <= MAX_FOLD else None
            if isinstance(node.op, ast.Mod) and isinstance(left, str):
                return left % right
            return None
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                part = f(v.value) if isinstance(v, ast.FormattedValue) else f(v)
                if part is None:
                    return None
                parts.append(str(part))
            return "".join(parts)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [f(e) for e in node.elts]
            return None if any(i is None for i in items) else items
        if isinstance(node, ast.Subscript):
            value = f(node.value)
            if not isinstance(value, (str, list)):
                return None
            sl = node.slice
            if isinstance(sl, ast.Slice):
                bounds = [None if p is None else f(p) for p in (sl.lower, sl.upper, sl.step)]
                if any(b is not None and not isinstance(b, int) for b in bounds):
                    return None
                return value[slice(*bounds)]
            index = f(sl)
            return value[index] if isinstance(index, int) else None
        if isinstance(node, ast.Call) and not node.keywords:
            func = node.func
            args = [f(a) for a in node.args]
            if any(a is None for a in args):
                return None
            if isinstance(func, ast.Name) and func.id == "chr" and len(args) == 1 and isinstance(args[0], int):
                return chr(args[0])
            if isinstance(func, ast.Name) and func.id == "str" and len(args) == 1:
                return str(args[0])
            if isinstance(func, ast.Attribute):
                base = f(func.value)
                if isinstance(base, str) and func.attr == "join" and len(args) == 1 and isinstance(args[0], list):
                    return base.join(str(a) for a in args[0])
                if isinstance(base, str) and func.attr in ("format", "replace", "lower", "upper", "strip", "lstrip",
                                                            "rstrip", "title", "capitalize", "casefold", "swapcase"):
                    return getattr(base, func.attr)(*args)
        return None

    def resolve(self, node) -> str | None:
        """The dotted name an expression refers to (through aliases and string-built imports)."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id) or (node.id if node.id in BUILTIN_NAMES else None)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Subscript):
            base = self.resolve(node.value)
            key = self.fold(node.slice)
            if base in ("sys.modules", "builtins.__dict__", "__builtins__") and isinstance(key, str):
                return key if base == "sys.modules" else f"builtins.{key}"
            if isinstance(node.value, ast.Call) and self.resolve(node.value.func) in ("vars", "builtins.vars") \
                    and node.value.args and isinstance(key, str):
                inner = self.resolve(node.value.args[0])
                return f"{inner}.{key}" if inner else None
            if base and base.endswith(".__dict__") and isinstance(key, str):
                return f"{base[:-len('.__dict__')]}.{key}"
            return None
        if isinstance(node, ast.Call):
            func = self.resolve(node.func)
            if func in ("__import__", "importlib.import_module", "builtins.__import__") and node.args:
                return self.fold(node.args[0])
            if func in ("getattr", "builtins.getattr") and len(node.args) >= 2:
                base, attr = self.resolve(node.args[0]), self.fold(node.args[1])
                return f"{base}.{attr}" if base and isinstance(attr, str) else None
        return None

    def flag(self, what: str | None) -> None:
        if what and what not in self.found:
            self.found.append(what)

    def flag_path(self, path: str | None, called: bool = True) -> None:
        if path and (called or path.split(".")[0] not in CALLS_ONLY):
            self.flag(_rule(path))

    # -- visitors ---------------------------------------------------------------------------------
    def visit_Import(self, node):
        for a in node.names:
            name = unicodedata.normalize("NFKC", a.name)
            self.flag_path(name)
            if a.asname:
                self.aliases[a.asname] = name
            else:
                self.aliases[name.split(".")[0]] = name.split(".")[0]

    def visit_ImportFrom(self, node):
        module = unicodedata.normalize("NFKC", node.module or "")
        for a in node.names:
            path = f"{module}.{a.name}" if module else a.name
            self.flag_path(path if a.name != "*" else module)
            self.aliases[a.asname or a.name] = path

    def visit_Assign(self, node):
        self.visit(node.value)
        for target in node.targets:
            self._assigned(target, node.value)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)
            self._assigned(node.target, node.value)

    def visit_AugAssign(self, node):
        self.visit(node.value)
        self._assigned(node.target, None)

    def visit_Delete(self, node):
        for target in node.targets:
            self._assigned(target, None)

    def _assigned(self, target, value) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._assigned(t, None)
            return
        if isinstance(target, ast.Name):
            self.aliases.pop(target.id, None)
            self.strings.pop(target.id, None)
            if value is not None:
                path = self.resolve(value)
                folded = self.fold(value)
                if isinstance(folded, str):
                    self.strings[target.id] = folded
                elif path:
                    self.aliases[target.id] = path
            return
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            owner = self.resolve(target.value) if isinstance(target, ast.Attribute) else None
            if isinstance(target, ast.Subscript):
                whole = self.resolve(target)
                if whole and whole != self.resolve(target.value):
                    owner = whole.rsplit(".", 1)[0]
            if owner and owner.split(".")[0] in PATCHABLE:
                self.flag(MONKEYPATCH.format(owner))
            self.visit(target)

    def visit_Call(self, node):
        func = self.resolve(node.func)
        if func in ("setattr", "delattr", "builtins.setattr", "builtins.delattr") and node.args:
            owner = self.resolve(node.args[0])
            if owner and owner.split(".")[0] in PATCHABLE:
                self.flag(MONKEYPATCH.format(owner))
        self._built(node)
        path = self.resolve(node)
        if path:
            self.flag_path(path)
        self.flag_path(func)
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if isinstance(arg, ast.Name) and self.aliases.get(arg.id, arg.id) in CALLS_ONLY:
                self.flag_path(arg.id)  # passed around to be called later (map(eval, ...))
        self.generic_visit(node)

    def visit_Attribute(self, node):
        self.flag_path(self.resolve(node), called=False)
        self.generic_visit(node)

    def visit_Subscript(self, node):
        self._built(node)
        self.flag_path(self.resolve(node), called=False)
        self.generic_visit(node)

    def visit_Name(self, node):
        self.flag_path(self.resolve(node), called=False)

    def visit_Constant(self, node):
        if isinstance(node.value, str):
            self._text(node.value)

    def visit_BinOp(self, node):
        self._built(node)
        self.generic_visit(node)

    def visit_JoinedStr(self, node):
        self._built(node)
        self.generic_visit(node)

    def _built(self, node) -> None:
        """A string built at run time from constants: check it as text, and as a name if it is one."""
        folded = self.fold(node)
        if isinstance(folded, str):
            self._text(folded)
            if IDENTIFIER.fullmatch(folded):
                self.flag_path(folded)

    def _text(self, text: str) -> None:
        text = unicodedata.normalize("NFKC", text)
        for pattern, what in TEXT:
            if re.search(pattern, text):
                self.flag(what)


def _python(code: str) -> str:
    """IPython syntax (``%magic``, ``!cmd``) as the Python IPython would run."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(code)
    except Exception:  # noqa: BLE001 -- leave it to the parser (and the text fallback)
        return code


TEXT_FALLBACK = [
    (r"\b__builtins__\b|\bimport\s+builtins\b|\bbuiltins\s*\.", "touches builtins"),
    (r"\bsys\.modules\b|\bimportlib\b", "edits the import system"),
    (r"\bget_ipython\s*\(|\bIPython\b", "uses IPython's internals (hooks, transformers)"),
    (r"\bctypes\b|\bgc\.get_(referrers|objects)\b", "uses ctypes or gc introspection"),
    (r"\b__import__\b|(?<![\w.])(exec|eval|compile)\s*\(", "runs code built at run time (exec, eval, __import__)"),
    (r"\blabkit\b(?!\s+import\s+check\b)(?!\.check\b)", "refers to labkit, the grader"),
    (r"\bsys\.(settrace|setprofile|_getframe)\b|\binspect\.", "traces or inspects frames"),
    (r"\b(np|numpy|math)\.[A-Za-z_][\w.]*\s*=(?!=)", "assigns to a numpy/math attribute (monkeypatching)"),
    (r"\bsocket\b|\burllib\b|\brequests\b|\bhttp\.client\b", "opens network connections"),
    (r"\bsubprocess\b|\bos\.(system|popen|fork|exec\w*|spawn\w*|kill)\b", "starts or signals processes"),
    *TEXT,
]


class Submission:
    """The scan of one submission: feed it the student's cells in order (aliases carry over)."""

    def __init__(self):
        self.aliases: dict[str, str] = {}
        self.strings: dict[str, str] = {}

    def cell(self, source: str) -> list[str]:
        """What this cell's code suggests (plain phrases, in order, without duplicates)."""
        code = _python(source)
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            text = unicodedata.normalize("NFKC", "\n".join(
                line for line in source.splitlines() if not line.lstrip().startswith("#")))
            found = []
            for pattern, what in TEXT_FALLBACK:
                if re.search(pattern, text) and what not in found:
                    found.append(what)
            return found
        scanner = Scanner(self.aliases, self.strings)
        try:
            scanner.visit(tree)
        except RecursionError:
            scanner.flag("is nested too deeply to read")
        return scanner.found
