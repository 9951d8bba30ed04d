"""Memory per student on the course hub, and how many students one machine holds.

Starts a real hub (``labkit hub serve``) with N students (as root), and measures with PSS (each
shared page counted once across processes, so sums are honest):

- the hub itself (JupyterHub, proxy, idle culler);
- each student's server with no kernel;
- each student "active": one kernel that imported TensorFlow/Keras and fitted a small model;
- the same student after the kernel was culled (LABKIT_KERNEL_IDLE_TIMEOUT).

    sudo .venv/bin/python bench/hub_memory.py [--students 3]

Prints readable lines, then one JSON object as the last line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hubkit import PREFIX, Hub, execute, fresh_course, login, student_processes, user_api  # noqa: E402

FIT = """
import numpy as np, keras
x = np.random.default_rng(0).normal(size=(2048, 32)).astype("float32"); y = (x.sum(1) > 0).astype("int32")
m = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(2, activation="softmax")])
m.compile("adam", "sparse_categorical_crossentropy"); m.fit(x, y, epochs=2, verbose=0); print("fitted")
"""


def pss_mb(procs, field: str = "pss") -> float:
    """Sum of ``field`` (pss: shared pages split among their users; uss: pages only these
    processes hold; rss: everything they map) over ``procs``, in MB."""
    total = 0
    for p in procs:
        try:
            total += getattr(p.memory_full_info(), field)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total / 2**20


def hub_processes(hub) -> list[psutil.Process]:
    root = psutil.Process(hub.proc.pid)
    return [root] + [c for c in root.children(recursive=True) if c.username() == "root"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--students", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (the hub creates student accounts)")
        return 1
    students = [f"mem{i}" for i in range(args.students)]
    course = fresh_course(Path("/tmp"), students)
    hub = Hub(course, students, log=Path("/tmp") / f"labkit-hub-memory-{os.getpid()}.log",
              env={"LABKIT_KERNEL_IDLE_TIMEOUT": "60"})
    out = {"students": args.students, "load_average_1min_at_start": os.getloadavg()[0]}
    try:
        hub.start()
        time.sleep(3)
        out["hub_mb"] = round(pss_mb(hub_processes(hub)), 1)
        print(f"hub + proxy + culler: {out['hub_mb']:.0f} MB")
        server, active, culled, kernels = [], [], [], {}
        for s in students:
            login(hub, s)
        time.sleep(3)
        for s in students:
            server.append(pss_mb(student_processes([PREFIX + s])))
        uss, rss = [], []
        for s in students:  # measured right after each fit, before the idle kernel can be culled
            unix = PREFIX + s
            kid = user_api(hub, unix, "POST", "/kernels", json={"name": "python3"}).json()["id"]
            kernels[s] = kid
            result = execute(hub, unix, kid, FIT, timeout=300)
            assert "fitted" in result["stdout"], result
            procs = student_processes([unix])
            active.append(pss_mb(procs))
            uss.append(pss_mb(procs, "uss"))
            rss.append(pss_mb(procs, "rss"))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and any(
                user_api(hub, PREFIX + s, "GET", "/kernels").json() for s in students):
            time.sleep(2)
        for s in students:
            culled.append(pss_mb(student_processes([PREFIX + s])))
        mean = lambda xs: round(sum(xs) / len(xs), 1)  # noqa: E731
        out.update(server_only_mb=mean(server), active_student_mb=mean(active), after_kernel_culled_mb=mean(culled),
                   per_student_active_mb=[round(x, 1) for x in active], active_student_uss_mb=mean(uss),
                   active_student_rss_mb=mean(rss))
        total_mb = psutil.virtual_memory().total / 2**20
        out["machine_mb"] = round(total_mb)
        out["students_by_memory"] = int((total_mb - out["hub_mb"] - 2048) // out["active_student_mb"])
        out["students_by_memory_idle"] = int((total_mb - out["hub_mb"] - 2048) // out["server_only_mb"])
        print(f"student's server, no kernel: {out['server_only_mb']:.0f} MB")
        print(f"active student (server + one TensorFlow kernel after a small fit): {out['active_student_mb']:.0f} MB")
        print(f"  (unique to the student, USS: {out['active_student_uss_mb']:.0f} MB; everything mapped, RSS: "
              f"{out['active_student_rss_mb']:.0f} MB)")
        print(f"after the idle kernel was culled: {out['after_kernel_culled_mb']:.0f} MB")
        print(f"memory allows about {out['students_by_memory']} active students on this {total_mb / 1024:.0f} GB machine "
              f"({out['students_by_memory_idle']} with no kernel running)")
    finally:
        left = hub.teardown()
        out["left_behind"] = left
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
