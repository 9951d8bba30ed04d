"""What the hub starts for each student, as that student: bring their home up to date, then
become ``jupyterhub-singleuser`` (JupyterLab).

    python -m labkit.hub.singleuser [jupyterhub-singleuser arguments...]

1. the lab's notebooks into ``~/lab`` (:func:`labkit.hub.distribute.sync`: edits are never
   overwritten);
2. every released assignment not fetched yet into ``~/assignments`` (:func:`labkit.hub.student.fetch`).

A failure in either is printed to the server's log and never stops the server from starting.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def prepare_home(home: Path, lab: Path | None, exchange: Path | None) -> list[str]:
    """Steps 1-2; return log lines."""
    from labkit.hub import distribute, student

    lines = []
    if lab and (lab / "notebooks").is_dir():
        try:
            done = distribute.sync(lab / "notebooks", home / "lab")
            changed = {k: v for k, v in done.items() if v != "up to date"}
            lines.append(f"lab notebooks: {len(done)} in ~/lab" + (f"; {changed}" if changed else ""))
        except OSError as exc:
            lines.append(f"lab notebooks not synced: {exc}")
    if exchange and (exchange / "released").is_dir():
        try:
            got = [d for d in student.fetch(home=home, exchange=exchange) if d["status"] == "fetched"]
            lines.append(f"assignments: {len(got)} new file(s) in ~/assignments")
        except (OSError, student.StudentError) as exc:
            lines.append(f"assignments not fetched: {exc}")
    return lines


def main(argv: list[str]) -> int:
    home = Path(os.environ.get("HOME") or Path.home())
    lab = Path(os.environ["LABKIT_LAB"]) if os.environ.get("LABKIT_LAB") else None
    exchange = Path(os.environ["LABKIT_EXCHANGE"]) if os.environ.get("LABKIT_EXCHANGE") else None
    os.umask(0o077)  # what the student creates is theirs alone unless they say otherwise
    for line in prepare_home(home, lab, exchange):
        print(f"[labkit] {line}", file=sys.stderr, flush=True)
    exe = Path(sys.executable).parent / "jupyterhub-singleuser"
    os.execv(sys.executable, [sys.executable, str(exe), *argv])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
