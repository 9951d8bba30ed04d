"""What this machine has for the lab, and how to fix what it lacks.

``labkit doctor`` prints it for people; ``labkit doctor --json`` for scripts. ``brief`` answers
from package metadata alone (no TensorFlow import, well under a second); the full check imports
TensorFlow and Horovod (about 7 s) to see how Horovod was really built and how TF sets threads.
"""
from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass

#: How to fix each thing that can be missing. ``make setup`` fixes most of them at once.
FIXES = {
    "python": "labkit needs Python 3.11: install it and re-run 'make setup' (or set PYTHON=/path/to/python3.11).",
    "tensorflow": "run 'make setup' (installs the pinned tensorflow-cpu into .venv).",
    "keras": "run 'make setup' (installs the pinned Keras 3 into .venv).",
    "horovod": "run 'make setup' (builds Horovod from source: tools/build_horovod.sh).",
    "horovod_tensorflow": "Horovod was built without TensorFlow: delete its cached wheel "
    "(~/.cache/labkit/wheels) and run 'make setup' again.",
    "horovod_gloo": "Horovod was built without Gloo: delete its cached wheel "
    "(~/.cache/labkit/wheels) and run 'make setup' again.",
    "horovodrun": "run 'make setup'; horovodrun comes with Horovod in .venv/bin.",
    "papermill": "run 'make setup' (installs papermill into .venv).",
    "jupyterlab": "run 'make setup' (installs JupyterLab 4 into .venv).",
    "java": "Spark needs Java 17 or newer: run 'make setup' as root (installs openjdk-17-jre-headless), "
    "or 'apt-get install openjdk-17-jre-headless'.",
    "pyspark": "run 'make setup' (installs the pinned pyspark, which bundles Spark's jars, into .venv).",
}

THREAD_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


@dataclass
class Check:
    """One line of the doctor's report: what was looked at, what was found, how to fix it."""

    name: str
    ok: bool
    value: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _package_check(name: str, *dists: str) -> Check:
    for dist in dists:
        found = _version(dist)
        if found:
            return Check(name, True, found)
    return Check(name, False, "missing", FIXES[name])


def _java_check() -> Check:
    """``java -version``: Spark 4 runs on Java 17 or newer."""
    import re
    import subprocess

    java = shutil.which("java")
    if not java:
        return Check("java", False, "missing", FIXES["java"])
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("java", False, f"{java} did not run: {exc}", FIXES["java"])
    m = re.search(r'version "(\d+)(?:\.(\d+))?[^"]*"', out.stderr + out.stdout)
    if not m:
        return Check("java", False, f"unreadable version from {java}", FIXES["java"])
    major = int(m.group(1)) if m.group(1) != "1" else int(m.group(2) or 0)
    version = m.group(0).split('"')[1]
    return Check("java", major >= 17, version, "" if major >= 17 else FIXES["java"])


def _spark_check() -> Check:
    """pyspark's version, and whether it carries Spark's jars (so no download is ever needed)."""
    found = _version("pyspark")
    if not found:
        return Check("pyspark", False, "missing", FIXES["pyspark"])
    try:
        import importlib.util
        spec = importlib.util.find_spec("pyspark")
        jars = os.path.join(os.path.dirname(spec.origin), "jars")
        count = len([f for f in os.listdir(jars) if f.endswith(".jar")])
    except (OSError, AttributeError, TypeError):
        count = 0
    if not count:
        return Check("pyspark", False, f"{found}, but without Spark's jars", FIXES["pyspark"])
    return Check("pyspark", True, f"{found} (Spark with {count} jars bundled)")


def usable_cores() -> int:
    """Cores this process may run on (respects taskset/cgroups affinity, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _horovod_build() -> list[Check]:
    """Import Horovod's TensorFlow extension and ask it how it was built."""
    try:
        import horovod.tensorflow as hvd
    except Exception as exc:  # ImportError, or a broken extension (undefined symbol ...)
        return [Check("horovod_tensorflow", False, f"import failed: {exc}", FIXES["horovod_tensorflow"])]
    gloo = bool(hvd.gloo_built())
    return [
        Check("horovod_tensorflow", True, "built with TensorFlow"),
        Check("horovod_gloo", gloo, "Gloo built" if gloo else "no Gloo", "" if gloo else FIXES["horovod_gloo"]),
        Check("horovod_mpi", True, "MPI built" if hvd.mpi_built() else "no MPI (not needed: the lab uses Gloo)"),
    ]


def _tf_threads() -> Check:
    import tensorflow as tf

    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    describe = lambda n: "auto" if n == 0 else str(n)  # noqa: E731 - 0 means "TF decides"
    return Check("tf_threads", True, f"intra-op {describe(intra)}, inter-op {describe(inter)}")


def collect(brief: bool = False) -> list[Check]:
    """Run every check. ``brief`` skips the ones that import TensorFlow."""
    py_ok = sys.version_info[:2] == (3, 11)
    checks = [
        Check("python", py_ok, platform.python_version(), "" if py_ok else FIXES["python"]),
        _package_check("tensorflow", "tensorflow-cpu", "tensorflow"),
        _package_check("keras", "keras"),
        _package_check("horovod", "horovod"),
        _package_check("papermill", "papermill"),
        _package_check("jupyterlab", "jupyterlab"),
        _java_check(),
        _spark_check(),
    ]
    horovodrun = shutil.which("horovodrun", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    checks.append(Check("horovodrun", bool(horovodrun), horovodrun or "missing", "" if horovodrun else FIXES["horovodrun"]))
    checks.append(Check("cores", True, f"{usable_cores()} usable of {os.cpu_count()}"))
    env_threads = ", ".join(f"{k}={os.environ[k]}" for k in THREAD_VARIABLES if k in os.environ)
    checks.append(Check("thread_env", True, env_threads or "none set (TF uses all cores)"))
    if not brief and checks[3].ok:
        checks.extend(_horovod_build())
    if not brief and checks[1].ok:
        checks.append(_tf_threads())
    return checks


def as_dict(checks: list[Check]) -> dict:
    """The machine-readable form: ``{"ok": bool, "checks": [{name, ok, value, fix}, ...]}``."""
    return {"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}


def format_report(checks: list[Check]) -> str:
    """A table a person can read, then the fixes for whatever is missing."""
    width = max(len(c.name) for c in checks)
    lines = [f"{'ok ' if c.ok else 'NO '} {c.name:<{width}}  {c.value}" for c in checks]
    problems = [c for c in checks if not c.ok]
    if problems:
        lines.append("")
        lines.append("To fix:")
        lines.extend(f"  - {c.name}: {c.fix}" for c in problems)
    else:
        lines.append("")
        lines.append("Everything the lab needs is here.")
    return "\n".join(lines)


def summary(checks: list[Check]) -> str:
    """One line, for the end of ``make setup``."""
    by_name = {c.name: c.value for c in checks}
    missing = [c.name for c in checks if not c.ok]
    line = (f"Python {by_name['python']}, TensorFlow {by_name['tensorflow']}, Keras {by_name['keras']}, "
            f"Horovod {by_name['horovod']}, {by_name['cores']} cores")
    return line + (f"; missing: {', '.join(missing)}" if missing else "")


def report(brief: bool = False) -> None:
    """Print the doctor's report (what notebooks call)."""
    print(format_report(collect(brief=brief)))
