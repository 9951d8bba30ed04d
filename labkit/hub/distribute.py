"""Give each student the lab's notebooks, and never overwrite their edits.

Runs as the student each time their server starts (:mod:`labkit.hub.singleuser`). It copies
``notebooks/*.ipynb`` into ``~/lab/`` and remembers the SHA-256 of each copy in
``~/lab/.labkit-sync.json``. On later starts, for each notebook:

- not in the home: copied (a new lab appears; a deleted one comes back, as with nbgitpuller);
- unchanged since we copied it, and changed upstream: updated to the new version;
- changed by the student: left alone, whatever happened upstream.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

STATE = ".labkit-sync.json"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sync(source: str | os.PathLike, dest: str | os.PathLike, pattern: str = "*.ipynb") -> dict[str, str]:
    """Bring ``dest`` up to date with ``source``; return ``{name: what happened}``."""
    source, dest = Path(source), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    state_path = dest / STATE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        state = {}
    done = {}
    for src in sorted(source.glob(pattern)):
        name, target = src.name, dest / src.name
        upstream = _sha(src)
        if target.is_symlink() or (target.exists() and not target.is_file()):
            done[name] = "kept (not a regular file)"
            continue
        if not target.exists():
            action = "copied"
        elif _sha(target) == upstream:
            done[name] = "up to date"
            state[name] = upstream
            continue
        elif state.get(name) == _sha(target):
            action = "updated (you had not changed it)"
        else:
            done[name] = "kept (you changed it)"
            continue
        tmp = dest / f".{name}.sync"
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)
        state[name] = upstream
        done[name] = action
    tmp = dest / f".{STATE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, state_path)
    return done
