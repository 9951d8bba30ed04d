"""The course hub's spawner: JupyterHub's ``LocalProcessSpawner`` plus what a class needs.

Each student's server runs as their own Unix account (the local-process spawner's ``setuid``),
from the lab's ``.venv``, with JupyterLab as the interface and the lab's ``python3`` kernel.
Before it starts, as root:

- the student gets an inbox in the exchange (:func:`labkit.hub.exchange.ensure_inbox`);
- their server joins a cgroup with their memory/CPU/process limits (:mod:`labkit.hub.limits`),
  so that ``mem_limit`` and ``cpu_limit`` are enforced rather than only advertised;

and then, as the student, :mod:`labkit.hub.singleuser` syncs the lab's notebooks and fetches
released assignments before it becomes ``jupyterhub-singleuser``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Int, Unicode

from labkit.hub import exchange, limits


class LabSpawner(LocalProcessSpawner):
    course_root = Unicode(os.environ.get("LABKIT_COURSE", "/srv/labkit"),
                          help="The course folder (labkit.hub.course)").tag(config=True)
    max_pids = Int(1024, help="Processes and threads a student may run at once").tag(config=True)

    def _joins(self) -> list[Path]:
        joins = limits.prepare(self.user.name, limits.Limits(memory_bytes=self.mem_limit or None,
                                                             cpus=self.cpu_limit or None, max_pids=self.max_pids))
        if (self.mem_limit or self.cpu_limit) and not joins:
            self.log.warning("limits for %s are NOT enforced: no writable cgroup here (see deploy/README.md)",
                             self.user.name)
        else:
            self.log.info("limits for %s: memory %s, cpus %s, pids %s via %s", self.user.name, self.mem_limit,
                          self.cpu_limit, self.max_pids, ", ".join(str(j.parent) for j in joins))
        return joins

    def make_preexec_fn(self, name):
        become_user = super().make_preexec_fn(name)
        joins = self._joins()

        def preexec():  # after fork, before exec: still root, then the student
            limits.join(joins)
            become_user()

        return preexec

    async def start(self):
        from labkit.hub.course import Course

        course = Path(self.course_root)
        if (course / "exchange" / "inbox").is_dir():
            exchange.ensure_inbox(Course(course).inboxes, self.user.name)
        return await super().start()

    async def stop(self, now=False):
        await super().stop(now=now)
        limits.release(self.user.name)


def default_cmd() -> list[str]:
    """The command the spawner runs (as the student): this Python, labkit's wrapper."""
    return [sys.executable, "-m", "labkit.hub.singleuser"]
