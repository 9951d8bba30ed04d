"""What counts as start-up noise, so every place that shows output to people can leave it out.

TensorFlow's C++ core logs through absl before absl is set up, straight to file descriptor 2, so
``TF_CPP_MIN_LOG_LEVEL`` can't hide it: an absl warning about that, then INFO lines (oneDNN is on;
this binary could use more CPU instructions). None of it is the student's doing, and it would be
the first thing they see in every lab. Only these lines are noise: warnings and errors (``W``/``E``
lines, Python warnings, tracebacks) always pass.

:class:`LineFilter` applies :func:`is_noise` to a stream of chunks, holding back at most one
partial line, and only while it could still grow into noise. The lab's kernel
(:mod:`labkit.kernel`), the Horovod launcher (:mod:`labkit.launch`) and the grader's feedback pages
use it.
"""
from __future__ import annotations

import re

#: absl's notice that it logs to stderr until initialised (TensorFlow prints it once per library).
ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
#: absl/glog INFO lines: ``I0000 00:00:1795628216.184360    4797 port.cc:153] oneDNN custom ...``.
_ABSL_INFO = re.compile(r"^I\d{4} \d{2}:\d{2}:\d+\.\d+\s+\d+ \S+:\d+\] ")
#: the second line of TensorFlow's cpu_feature_guard INFO message.
_CPU_GUARD = re.compile(r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.$")
_CPU_GUARD_START = "To enable the following instructions: "
_PARTIAL_INFO = re.compile(r"^I(\d{0,4}( [\d:.]*( +\d*( \S*)?)?)?)?$")


def is_noise(line: str) -> bool:
    """True for a TensorFlow/absl start-up line (without its newline): INFO lines and absl's preamble."""
    line = line.rstrip("\r")
    return line == ABSL_PREAMBLE or bool(_ABSL_INFO.match(line)) or bool(_CPU_GUARD.match(line))


def _could_become_noise(partial: str) -> bool:
    return (ABSL_PREAMBLE.startswith(partial) or _CPU_GUARD_START.startswith(partial)
            or partial.startswith(_CPU_GUARD_START) or bool(_PARTIAL_INFO.match(partial))
            or bool(_ABSL_INFO.match(partial)))


def strip_noise(text: str) -> str:
    """``text`` without its noise lines (for text that is complete, such as a saved output)."""
    return "".join(line for line in text.splitlines(keepends=True) if not is_noise(line.rstrip("\n")))


class LineFilter:
    """Drops noise lines from a stream of text chunks: ``feed(chunk)`` returns what to show."""

    def __init__(self):
        self.pending = ""

    def feed(self, chunk: str) -> str:
        text = self.pending + chunk
        lines = text.split("\n")
        self.pending = lines.pop()
        out = "".join(line + "\n" for line in lines if not is_noise(line))
        if self.pending and not _could_become_noise(self.pending):
            out, self.pending = out + self.pending, ""
        return out

    def flush(self) -> str:
        """What is held back (at the end of the stream), unless it is noise."""
        rest, self.pending = self.pending, ""
        return "" if is_noise(rest) else rest
