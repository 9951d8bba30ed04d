"""Suite-wide rules: every test cleans up the processes it started, and leftovers are its fault.

See tests/processes.py: pytest becomes a child subreaper, so orphans of a test stay visible, and
after each test whatever it left behind (alive, or a zombie nobody waited for) is killed, reaped,
and reported as an error of that test.
"""
from __future__ import annotations

import signal
import time

import psutil
import pytest

from processes import GRACE_SECONDS, _descendants, _describe, _is_zombie, _reap, leftovers


@pytest.fixture(autouse=True)
def no_leftover_processes(request):
    before = set(_descendants())
    yield
    deadline = time.monotonic() + GRACE_SECONDS
    left = leftovers(before)
    while left and time.monotonic() < deadline and not all(_is_zombie(p) for p in left):
        time.sleep(0.1)
        left = leftovers(before)
    if not left:
        return
    described = [_describe(p) for p in left]
    for p in left:
        try:
            if not _is_zombie(p):
                p.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=5)
    for p in left:
        _reap(p.pid)
    pytest.fail(f"{request.node.nodeid} left {len(left)} process(es) behind:\n  " + "\n  ".join(described),
                pytrace=False)
