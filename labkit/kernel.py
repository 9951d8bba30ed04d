"""The lab's Jupyter kernel: ipykernel, without start-up noise.

Every notebook of the lab (JupyterLab, papermill, the grader's sandbox, the course hub) runs the
``python3`` kernel of ``.venv``, whose ``kernel.json`` starts ``python -m labkit.kernel``. It is
ipykernel with two changes, both about what people see:

- the cell outputs and the terminal leave out TensorFlow's C++ start-up lines
  (:mod:`labkit.quiet`), which ``TF_CPP_MIN_LOG_LEVEL`` can't hide;
- ipykernel's "running over TCP without encryption" warning stays out of logs: these kernels
  listen on loopback only, started by the user's own server.

``python -m labkit.kernel --install`` writes that kernelspec (``make setup`` does it).
"""
from __future__ import annotations

import json
import logging
import os
import sys

from ipykernel.iostream import OutStream

from labkit.quiet import LineFilter


class QuietOutStream(OutStream):
    """ipykernel's stdout/stderr stream, with TensorFlow's start-up lines filtered out of the
    file-descriptor output it captures (from C++ libraries) before it reaches the notebook or the
    terminal. What Python code writes is never filtered."""

    def _watch_pipe_fd(self):
        if self._fid is None:
            return
        quiet = LineFilter()
        forward = True
        try:
            data = os.read(self._fid, 1 << 14)
            while data and self._should_watch:
                shown = quiet.feed(data.decode(errors="replace"))
                if shown:
                    if forward:
                        try:
                            self.write(shown)
                        except (RuntimeError, ValueError):  # the kernel is shutting down
                            forward = False
                    os.write(self._original_stdstream_copy, shown.encode())
                data = os.read(self._fid, 1 << 14)
            rest = quiet.flush()
            if rest:
                os.write(self._original_stdstream_copy, rest.encode())
        except Exception:  # noqa: BLE001 - as ipykernel: remember it, never kill the kernel
            self._exc = sys.exc_info()


class _DropTransportWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "without encryption" not in record.getMessage()


def main() -> None:
    """Start the kernel (what ``kernel.json`` runs)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    from ipykernel.kernelapp import IPKernelApp

    logging.getLogger("IPKernelApp").addFilter(_DropTransportWarning())
    IPKernelApp.launch_instance(outstream_class="labkit.kernel.QuietOutStream")


def install(prefix: str = sys.prefix, name: str = "python3", display_name: str = "Python 3 (labkit)") -> str:
    """Write this kernel's spec into ``prefix`` (a venv); return the kernel.json path."""
    from ipykernel.kernelspec import install as ipykernel_install

    folder = ipykernel_install(kernel_name=name, display_name=display_name, prefix=prefix)
    path = os.path.join(folder, "kernel.json")
    with open(path) as f:
        spec = json.load(f)
    spec["argv"] = [sys.executable, "-Xfrozen_modules=off", "-m", "labkit.kernel", "-f", "{connection_file}"]
    spec["env"] = {**spec.get("env", {}), "TF_CPP_MIN_LOG_LEVEL": "1"}
    with open(path, "w") as f:
        json.dump(spec, f, indent=1)
    return path


if __name__ == "__main__":
    if sys.argv[1:] == ["--install"]:
        print(install())
    else:
        main()
