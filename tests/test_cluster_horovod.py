"""Multi-host Horovod across the namespaced hosts, through labkit.launch.run (root only).

The cluster maps each host's own name to 127.0.1.1, as Debian's /etc/hosts does: unpatched
Horovod 0.28.1 fails there ("gloo::IoException ... connect [127.0.1.1]: Connection refused",
its process-set context ignores HOROVOD_GLOO_IFACE); tools/build_horovod.sh carries the fix.
"""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from clusters import cluster, needs_root
from labkit import launch

pytestmark = [pytest.mark.slow, needs_root]


@pytest.fixture(scope="module")
def c():
    with cluster("hvd", hosts=2, loopback_hostname=True) as made:
        yield made


def _clean(c, seconds: float = 15.0) -> dict:
    """Processes left on each host besides its sshd (waits up to ``seconds`` for them to go)."""
    deadline = time.monotonic() + seconds
    while True:
        left = {h: c.processes(h) for h in c.names}
        if not any(left.values()) or time.monotonic() > deadline:
            return {h: [_describe(p) for p in pids] for h, pids in left.items() if pids}
        time.sleep(0.2)


def _describe(pid: int) -> str:
    try:
        return f"{pid}: {Path(f'/proc/{pid}/cmdline').read_text().replace(chr(0), ' ')[:120]}"
    except OSError:
        return str(pid)


# -------------------------------------------------------------------------------- worker bodies
def _train(steps):
    """A Keras model trained with labkit.distributed's gradient averaging on every rank."""
    import os
    import socket

    import keras
    import numpy as np
    import tensorflow as tf

    from labkit import distributed

    keras.utils.set_random_seed(1)
    import horovod.tensorflow as hvd

    rng = np.random.default_rng(hvd.rank())  # each rank its own data: only averaging keeps them equal
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    opt = keras.optimizers.SGD(0.1)
    step = distributed.train_step_fn(model, opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for i in range(steps):
        loss = step(tf.constant(x), tf.constant(y))
        if i == 0:
            distributed.broadcast_state(model, opt)
        launch.progress(i + 1, steps, loss=float(loss))
    print(f"rank {hvd.rank()} on {socket.gethostname()} trained", flush=True)
    return {"host": socket.gethostname(), "weights": [w.tolist() for w in model.get_weights()],
            "threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "cores": sorted(os.sched_getaffinity(0))}


def _pid_then(folder, rank1_sleeps_in_collective: bool):
    import horovod.tensorflow as hvd
    import tensorflow as tf

    Path(folder, f"pid.{hvd.rank()}").write_text(str(os.getpid()))
    if hvd.rank() == 0 or rank1_sleeps_in_collective:
        hvd.allreduce(tf.constant(1.0))  # waits for the other rank
    time.sleep(3600)                     # rank 1: outside any collective


# -------------------------------------------------------------------------------- tests
def test_two_host_training_gives_identical_weights(c, capsys):
    start = time.monotonic()
    out = launch.run(_train, 5, np=2, hosts="h1:1,h2:1", timeout=240, progress_bar=False, pin_cores=True)
    print(f"2-host training took {time.monotonic() - start:.1f} s")
    assert [r["host"] for r in out] == ["h1", "h2"]
    for a, b in zip(out[0]["weights"], out[1]["weights"]):
        assert a == b
    # the hosts share this machine's cores: 1 thread each by default, and each on its own core
    assert [r["threads"] for r in out] == [max(1, len(os.sched_getaffinity(0)) // 2)] * 2
    if len(os.sched_getaffinity(0)) >= 2:
        assert out[0]["cores"] != out[1]["cores"]
    printed = capsys.readouterr().out
    assert "rank 0 on h1 trained" in printed and "rank 1 on h2 trained" not in printed
    assert _clean(c) == {}


def test_killing_one_hosts_worker_stops_the_job_and_leaves_both_hosts_clean(c, tmp_path):
    result = {}

    def go():
        try:
            launch.run(_pid_then, str(tmp_path), True, np=2, hosts="h1:1,h2:1", timeout=240, echo=False)
        except launch.WorkerError as exc:
            result["error"] = exc

    t = threading.Thread(target=go)
    t.start()
    deadline = time.monotonic() + 180
    while not (tmp_path / "pid.1").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    victim = int((tmp_path / "pid.1").read_text())
    assert victim in c.pids("h2"), "rank 1 should run on h2"
    os.kill(victim, signal.SIGKILL)
    t.join(timeout=90)
    assert not t.is_alive(), "launch.run did not return after a worker died"
    assert result["error"].rank == 1
    assert _clean(c) == {}


def test_timeout_stops_a_remote_rank_outside_any_collective(c, tmp_path):
    start = time.monotonic()
    with pytest.raises(launch.WorkerError) as info:
        launch.run(_pid_then, str(tmp_path), False, np=2, hosts="h1:1,h2:1", timeout=40, echo=False)
    assert info.value.reason == "timeout"
    assert time.monotonic() - start < 40 + 20
    assert _clean(c, seconds=10) == {}


def test_interrupting_the_launcher_leaves_both_hosts_clean(c, tmp_path):
    """A notebook's "interrupt kernel": SIGINT to the process that called launch.run."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import signal, sys
        # a background shell starts jobs with SIGINT ignored; a kernel always handles it
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from labkit import launch
        from test_cluster_horovod import _pid_then
        try:
            launch.run(_pid_then, {str(tmp_path)!r}, False, np=2, hosts="h1:1,h2:1", timeout=300)
        except KeyboardInterrupt:
            print("interrupted cleanly", flush=True)
            sys.exit(3)
    """))
    env = {**os.environ, "LABKIT_CLUSTER": c.name}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        while not (tmp_path / "pid.1").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (tmp_path / "pid.1").exists(), "workers never started"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        seconds = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 3, out
    assert seconds < 20, f"launch.run took {seconds:.1f} s to return after SIGINT"
    assert _clean(c) == {}


def test_an_unreachable_host_fails_fast_and_leaves_nothing(tmp_path):
    with cluster("dead", hosts=2) as d:
        os.kill(d.host("h2").sshd_pid, signal.SIGKILL)  # h2 is down: no ssh, no rendezvous
        start = time.monotonic()
        with pytest.raises(launch.WorkerError):
            launch.run(_pid_then, str(tmp_path), True, np=2, hosts="h1:1,h2:1", timeout=120, echo=False,
                       cluster=d)
        assert time.monotonic() - start < 90, "a failed start must not wait for the whole timeout"
        assert _clean(d) == {}
