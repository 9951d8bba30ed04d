"""Bad set-up input gives a clear message, not a stack trace, and re-running recovers."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def project_copy(tmp_path, requirements=None):
    """A throw-away copy of what tools/setup.sh needs, so the real .venv is never touched."""
    proj = tmp_path / "proj"
    shutil.copytree(ROOT / "tools", proj / "tools")
    shutil.copytree(ROOT / "labkit", proj / "labkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", proj)
    shutil.copy(ROOT / "README.md", proj)
    (proj / "requirements.txt").write_text(requirements or (ROOT / "requirements.txt").read_text())
    return proj


def run(cmd, env=None, cwd=None, timeout=300):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


def test_wrong_python_version_is_a_clear_message(tmp_path):
    proj = project_copy(tmp_path)
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\necho 3.9\n")
    fake.chmod(0o755)
    result = run(["bash", "tools/setup.sh"], env={"PYTHON": str(fake)}, cwd=proj)
    assert result.returncode == 1
    assert "labkit needs Python 3.11" in result.stderr and "is Python 3.9" in result.stderr
    assert "PYTHON=/path/to/python3.11" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (proj / ".venv").exists()


def test_missing_compiler_is_a_clear_message(tmp_path):
    """A Horovod build with no C++ compiler on PATH stops before doing anything, and says what to install."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    compilers = {"c++", "g++", "gcc", "cc", "clang", "clang++"}
    for d in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(d).iterdir():
            name = tool.name
            if name in compilers or name.startswith(("x86_64-linux-gnu-g", "g++-", "gcc-", "c++-")):
                continue
            if not (bin_dir / name).exists():
                (bin_dir / name).symlink_to(tool)
    venv = Path(sys.prefix)
    result = run(["bash", str(ROOT / "tools" / "build_horovod.sh"), "--force", str(venv)],
                 env={"PATH": str(bin_dir), "LABKIT_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no C++ compiler found" in result.stderr and "apt-get install -y g++" in result.stderr
    assert "Traceback" not in result.stderr
    # and the Horovod already installed is untouched
    assert run([sys.executable, "-c", "import importlib.metadata as m; print(m.version('horovod'))"]).stdout.strip() == "0.28.1"


@pytest.mark.slow
def test_half_built_venv_is_recovered_by_rerunning(tmp_path):
    proj = project_copy(tmp_path, requirements="six==1.17.0\nsetuptools==80.9.0\nwheel==0.45.1\n")  # what labkit itself builds with
    venv = proj / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/nonexistent/interpreter\n")  # what an interrupted run can leave
    (venv / "bin" / "python").chmod(0o755)
    env = {"PYTHON": sys.executable if sys.version_info[:2] == (3, 11) else "python3.11"}
    env["PYTHON"] = shutil.which("python3.11") or env["PYTHON"]
    first = run(["bash", "tools/setup.sh"], env=env, cwd=proj)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "broken or foreign .venv" in first.stdout and "recreating" in first.stdout
    assert "skipping Horovod" in first.stdout
    check = run([str(venv / "bin" / "python"), "-c", "import six, labkit; print(six.__version__)"], cwd=tmp_path)
    assert check.stdout.strip() == "1.17.0", check.stderr
    # an interrupted dependency install (no stamp) is finished on the next run; nothing changed -> fast path
    (venv / ".labkit-deps").unlink()
    second = run(["bash", "tools/setup.sh"], env=env, cwd=proj)
    assert second.returncode == 0 and "installing pinned dependencies" in second.stdout
    third = run(["bash", "tools/setup.sh"], env=env, cwd=proj)
    assert third.returncode == 0 and "dependencies up to date" in third.stdout
