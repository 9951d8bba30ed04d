"""The student's side of the loop: ``labkit fetch`` and ``labkit submit`` (run as the student).

- ``fetch`` copies a released assignment into ``~/assignments/<name>/``. A file already there is
  never overwritten: it may hold the student's work.
- ``submit`` copies the notebook into the student's own inbox as
  ``<UTC time>-<sha256 prefix>.ipynb`` and prints a receipt (time, SHA-256). Every submission is
  kept; the last one counts. The time in the name is only the student's claim: the instructor's
  ``collect`` uses the time the kernel recorded for the file, which cannot be set back.

Both find the exchange through ``$LABKIT_EXCHANGE``, which the course hub sets.
"""
from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from labkit.hub.exchange import MAX_BYTES


class StudentError(RuntimeError):
    """Something the student can fix; the message says how."""


def exchange_root() -> Path:
    path = os.environ.get("LABKIT_EXCHANGE")
    if not path:
        raise StudentError("no course exchange here: LABKIT_EXCHANGE is not set. Run this on the course hub "
                           "(in a JupyterLab terminal or with '!labkit ...' in a notebook).")
    return Path(path)


def me() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def released(exchange: Path | None = None) -> dict[str, dict]:
    """The released assignments: name -> their public assignment.json."""
    root = (exchange or exchange_root()) / "released"
    found = {}
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name.startswith("."):
            continue
        try:
            found[folder.name] = json.loads((folder / "assignment.json").read_text())
        except (OSError, ValueError):
            continue
    return found


def _info(name: str, exchange: Path) -> dict:
    info = released(exchange).get(name)
    if info is None:
        names = ", ".join(released(exchange)) or "none yet"
        raise StudentError(f"no released assignment called {name!r} (released: {names})")
    return info


def fetch(name: str | None = None, home: Path | None = None, exchange: Path | None = None) -> list[dict]:
    """Copy released assignments (all, or ``name``) into ``~/assignments``; one dict per file."""
    exchange = exchange or exchange_root()
    home = home or Path.home()
    names = [name] if name else list(released(exchange))
    if name:
        _info(name, exchange)
    done = []
    for n in names:
        src = exchange / "released" / n / "files"
        dest = home / "assignments" / n
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            rel = path.relative_to(src)
            target = dest / rel
            if target.exists() or target.is_symlink():
                done.append({"assignment": n, "file": str(target), "status": "kept (already there: yours is not overwritten)"})
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            done.append({"assignment": n, "file": str(target), "status": "fetched"})
    return done


@dataclass
class Receipt:
    assignment: str
    student: str
    file: str
    sha256: str
    submitted_at: str
    number: int
    deadline: str | None
    late: bool


def submit(name: str, notebook: str | Path | None = None, exchange: Path | None = None,
           now: datetime | None = None) -> Receipt:
    """Submit ``notebook`` (default ``~/assignments/<name>/<notebook>``) for assignment ``name``."""
    import nbformat

    exchange = exchange or exchange_root()
    info = _info(name, exchange)
    path = Path(notebook) if notebook else Path.home() / "assignments" / name / info["notebook"]
    if not path.is_file():
        raise StudentError(f"{path} does not exist. Fetch the assignment first ('labkit fetch {name}'), "
                           "or give the notebook's path.")
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise StudentError(f"{path} is larger than {MAX_BYTES // 2**20} MB: clear large outputs and save it again.")
    try:
        nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception as exc:  # noqa: BLE001 -- any reason it is not a notebook
        raise StudentError(f"{path} is not a readable notebook ({type(exc).__name__}): save it from JupyterLab "
                           "and submit again.") from exc
    now = now or datetime.now(timezone.utc)
    sha = hashlib.sha256(data).hexdigest()
    inbox = exchange / "inbox" / me()
    if not inbox.is_dir():
        raise StudentError(f"you have no inbox at {inbox}: ask your instructor (the hub makes it when your server starts).")
    folder = inbox / name
    folder.mkdir(mode=0o700, exist_ok=True)
    stamp = now.strftime("%Y%m%dT%H%M%S.%fZ")
    final = folder / f"{stamp}-{sha[:12]}.ipynb"
    tmp = folder / f".{final.name}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    number = len([p for p in folder.glob("*.ipynb")])
    deadline = info.get("deadline")
    late = bool(deadline) and now > datetime.fromisoformat(deadline)
    return Receipt(name, me(), str(final), sha, now.isoformat(timespec="seconds"), number, deadline, late)


def submissions(name: str, exchange: Path | None = None) -> list[dict]:
    """The student's own submissions of ``name``, oldest first."""
    folder = (exchange or exchange_root()) / "inbox" / me() / name
    rows = []
    for p in sorted(folder.glob("*.ipynb")) if folder.is_dir() else []:
        st = p.stat()
        rows.append({"file": p.name, "bytes": st.st_size,
                     "recorded_at": datetime.fromtimestamp(st.st_ctime, timezone.utc).isoformat(timespec="seconds")})
    return rows


def receipt_text(r: Receipt) -> str:
    when = "LATE: after the deadline " + r.deadline if r.late else (f"before the deadline {r.deadline}" if r.deadline else "no deadline")
    return (f"submitted {r.assignment} as {r.student} at {r.submitted_at} ({when})\n"
            f"  sha256 {r.sha256}\n"
            f"  submission {r.number}: every submission is kept, the last one counts")


def as_dict(r: Receipt) -> dict:
    return asdict(r)
