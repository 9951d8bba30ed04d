"""Write environment.yml and binder/requirements.txt from requirements.txt (the single source).

    python tools/sync_pins.py          # rewrite both
    python tools/sync_pins.py --check  # exit 1 and say what differs (tests/test_pins.py does this)

Horovod is left out of both: it is built from source after TensorFlow (tools/build_horovod.sh),
which binder/postBuild runs the same way. So are the lines marked ``# no-deps``: their declared
dependencies are wrong for this stack, so tools/install_nodeps.sh installs them (hash-checked,
without dependencies) for both set-ups.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


NO_DEPS = "# no-deps"


def _requirements(root: Path) -> list[tuple[str, str, bool]]:
    """``(name, version, no_deps)`` for every ``name==version [--hash=...]`` line."""
    path = root / "requirements.txt"
    found = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            spec = line.split()[0]
            name, sep, version = spec.partition("==")
            if not sep:
                raise ValueError(f"{path.name}: '{line}' is not pinned with ==")
            found.append((name.strip().lower(), version.strip(), NO_DEPS in raw))
    return found


def pins(root: Path = ROOT) -> dict[str, str]:
    """``{name: version}`` for every pinned line (comments and blanks skipped)."""
    return {name: version for name, version, _ in _requirements(root)}


def no_deps(root: Path = ROOT) -> set[str]:
    """Names of the packages marked ``# no-deps`` (installed by tools/install_nodeps.sh)."""
    return {name for name, _, nd in _requirements(root) if nd}


def pip_lines(p: dict[str, str]) -> list[str]:
    return [f"{name}=={version}" for name, version in p.items() if name != "horovod"]


def environment_yml(p: dict[str, str]) -> str:
    body = "\n".join(f"      - {line}" for line in pip_lines(p))
    return f"""# For conda users: `conda env create -f environment.yml`, then `bash tools/install_nodeps.sh "$CONDA_PREFIX/bin/python"`
# and `bash tools/build_horovod.sh "$CONDA_PREFIX"`.
# Generated from requirements.txt by tools/sync_pins.py; tests/test_pins.py fails when they drift.
name: labkit
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - cxx-compiler
  - make
  - pip:
{body}
"""


def binder_requirements(p: dict[str, str]) -> str:
    return ("# repo2docker installs these; binder/postBuild then installs the no-deps packages and builds Horovod.\n"
            "# Generated from requirements.txt by tools/sync_pins.py; tests/test_pins.py fails when they drift.\n"
            + "\n".join(pip_lines(p)) + "\n")


def expected_files(root: Path = ROOT) -> dict[Path, str]:
    skip = no_deps(root)
    p = {k: v for k, v in pins(root).items() if k not in skip}
    return {root / "environment.yml": environment_yml(p), root / "binder" / "requirements.txt": binder_requirements(p)}


def main(argv: list[str], root: Path = ROOT) -> int:
    expected = expected_files(root)
    stale = [path for path, text in expected.items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(root)} has drifted from requirements.txt: run 'python tools/sync_pins.py'")
        return 1 if stale else 0
    for path, text in expected.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
