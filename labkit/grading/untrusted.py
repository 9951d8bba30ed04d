"""Everything that crosses from a submission or a sandbox into the grader is untrusted input.

Student code controls: the submitted notebook (bytes), its folder's name, every message its kernel
sends (outputs, exception messages, exported values), and whatever it leaves in folders. This
module is the one place that turns such input into plain, bounded Python values, or says why it
can't:

- :func:`loads` -- JSON with a size limit, a nesting limit, no integer longer than a few hundred
  digits, and every string made valid text (:func:`clean_text`);
- :func:`clean_text` -- lone surrogates (``"\\udc80"``, from invalid UTF-8 or a JSON escape) and NUL
  characters become visible escapes, so that SQLite, CSV and HTML writers never fail on them;
- :func:`student_id` -- a folder name as a safe, printable student id (or why it is not one);
- :func:`read_file` -- a regular file, never through a link, at most N bytes;
- :func:`remove_tree` -- delete a folder however deep, wide or oddly named, never following links,
  never raising.

Every failure is an :class:`Untrusted` error with a message fit for a grade's reason column.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import unicodedata
from pathlib import Path

MAX_DEPTH = 64          # JSON nesting the grader accepts (a notebook needs about 8)
MAX_INT_DIGITS = 400    # longer integers are refused (Python's own limit is 4300, and slow)
MAX_NODES = 20_000_000  # values in one JSON document


class Untrusted(ValueError):
    """Input from a submission or a sandbox that the grader refuses (said in plain words)."""


def clean_text(text: str) -> str:
    """``text`` as valid Unicode without NULs: lone surrogates and NULs become ``\\udc80``/``\\x00``."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise Untrusted(f"an integer with {len(digits)} digits")
    return int(digits)


def clean(value, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES):
    """A copy of a parsed JSON value with every string cleaned; raises Untrusted when it nests deeper
    than ``max_depth`` or holds more than ``max_nodes`` values. Iterative: no recursion limit to hit."""
    if type(value) is str:
        return clean_text(value)
    if type(value) not in (dict, list):
        if value is None or type(value) in (bool, int, float):
            return value
        raise Untrusted(f"unexpected {type(value).__name__}")
    root: list = [None]
    stack = [(value, root, 0, 1)]  # (source container, destination container, index in dest, depth)
    nodes = 0
    while stack:
        src, dest, slot, depth = stack.pop()
        if depth > max_depth:
            raise Untrusted(f"nested deeper than {max_depth} levels")
        if type(src) is dict:
            out = {}
            for k, v in src.items():
                nodes += 1
                key = clean_text(k) if type(k) is str else str(k)
                if type(v) in (dict, list):
                    out[key] = None
                    stack.append((v, out, key, depth + 1))
                else:
                    out[key] = clean(v) if type(v) is str or v is None or type(v) in (bool, int, float) \
                        else _bad(v)
        else:
            out = [None] * len(src)
            for i, v in enumerate(src):
                nodes += 1
                if type(v) in (dict, list):
                    stack.append((v, out, i, depth + 1))
                else:
                    out[i] = clean(v) if type(v) is str or v is None or type(v) in (bool, int, float) else _bad(v)
        if nodes > max_nodes:
            raise Untrusted(f"more than {max_nodes} values")
        dest[slot] = out
    return root[0]


def _bad(v):
    raise Untrusted(f"unexpected {type(v).__name__}")


def loads(data: bytes | str, max_bytes: int, max_depth: int = MAX_DEPTH, what: str = "the data"):
    """Parse untrusted JSON into plain, clean Python values (or raise Untrusted saying why not)."""
    if len(data) > max_bytes:
        raise Untrusted(f"{what} is larger than {max_bytes} bytes")
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8", "replace")
    try:
        value = json.loads(data, parse_int=_parse_int)
    except Untrusted as exc:
        raise Untrusted(f"{what} holds {exc}") from None
    except RecursionError:
        raise Untrusted(f"{what} is nested too deeply") from None
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise Untrusted(f"{what} is not valid JSON ({clean_text(str(exc))[:120]})") from None
    try:
        return clean(value, max_depth)
    except Untrusted as exc:
        raise Untrusted(f"{what} is {exc}" if str(exc).startswith("nested") else f"{what} holds {exc}") from None


def dumps(value) -> str:
    """JSON text of a value this module produced (ASCII only: safe in any pipe or file)."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


# --- names --------------------------------------------------------------------------------------
MAX_ID_CHARS = 100


def student_id(name: str) -> tuple[str, str | None]:
    """A submission folder's name -> (student id, why it is not a usable id or None).

    Names that are valid UTF-8, printable and at most 100 characters are their own id. Others (bytes
    that are not UTF-8, control characters, very long names) get a printable id -- the name with
    escapes, shortened, plus a hash so that two such names never collide -- and a reason.
    """
    raw = os.fsencode(name)
    try:
        text = raw.decode("utf-8")
        problem = None
    except UnicodeDecodeError:
        text, problem = raw.decode("utf-8", "backslashreplace"), "is not valid UTF-8"
    if problem is None and any(unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn") or c in "\u2028\u2029"
                               for c in text):
        problem = "holds control or unassigned characters"
    if problem is None and len(text) > MAX_ID_CHARS:
        problem = f"is longer than {MAX_ID_CHARS} characters"
    if problem is None:
        return text, None
    shown = "".join(c if c.isprintable() and unicodedata.category(c) not in ("Cs", "Co", "Cn")
                    else c.encode("unicode_escape").decode("ascii") for c in text)
    return f"{shown[:60]}~{hashlib.sha256(raw).hexdigest()[:8]}", f"the folder's name {problem}"


# --- files --------------------------------------------------------------------------------------
def read_file(name: str | os.PathLike, limit: int, dir_fd: int | None = None) -> bytes:
    """The bytes of a regular file (never through a link), refusing files over ``limit`` bytes."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last part is a link
            raise Untrusted("it is a link (links are never followed)") from None
        raise Untrusted(f"it cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Untrusted("it is not a regular file")
        if st.st_size > limit:
            raise Untrusted(f"it is larger than {limit // (1024 * 1024)} MB")
        chunks, size = [], 0
        while True:
            block = os.read(fd, min(1 << 20, limit + 1 - size))
            if not block:
                break
            chunks.append(block)
            size += len(block)
            if size > limit:
                raise Untrusted(f"it is larger than {limit // (1024 * 1024)} MB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def remove_tree(path: str | os.PathLike) -> bool:
    """Delete ``path`` and everything under it; True when it is gone. Never follows links, never raises.

    Works at any depth with a constant number of open files: sub-folders of a folder being emptied
    are first moved up to the top folder (a rename), so no path ever grows long and nothing recurses.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        try:
            os.unlink(path)
            return True
        except OSError:
            return False
    try:
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    counter = 0
    try:
        for _ in range(10_000_000):  # each round empties one folder; bounded however odd the tree
            with os.scandir(top) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            if not entries:
                break
            progress = False
            for name, is_dir in entries:
                if not is_dir:
                    progress |= _try(os.unlink, name, dir_fd=top)
                    continue
                try:
                    os.chmod(name, 0o700, dir_fd=top, follow_symlinks=False)
                except (OSError, NotImplementedError):
                    pass
                try:
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top)
                except OSError:
                    progress |= _try(os.rmdir, name, dir_fd=top)
                    continue
                try:
                    with os.scandir(sub) as it:
                        children = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
                    for child, child_is_dir in children:
                        if child_is_dir:
                            counter += 1
                            progress |= _try(os.rename, child, f".labkit-rm-{os.getpid()}-{counter}",
                                             src_dir_fd=sub, dst_dir_fd=top)
                        else:
                            progress |= _try(os.unlink, child, dir_fd=sub)
                finally:
                    os.close(sub)
                progress |= _try(os.rmdir, name, dir_fd=top)
            if not progress:
                return False
    except OSError:
        return False
    finally:
        os.close(top)
    return _try(os.rmdir, path)


def _try(fn, *args, **kwargs) -> bool:
    try:
        fn(*args, **kwargs)
        return True
    except OSError:
        return False
