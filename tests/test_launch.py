"""labkit.launch with real processes: results, progress, crashes, timeouts, interrupts, no orphans."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from processes import leftovers
from labkit import launch

pytestmark = pytest.mark.slow  # each test starts real horovodrun / TensorFlow processes


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _worker_pids(folder: Path) -> list[int]:
    return [int(p.read_text()) for p in sorted(folder.glob("pid.*"))]


def _assert_no_orphans(folder: Path, expected: int | None) -> None:
    """No worker alive and no process left; ``expected`` workers had started (None: any number,
    for a job stopped while its workers may still have been starting)."""
    pids = _worker_pids(folder)
    assert expected is None or len(pids) == expected, f"expected {expected} workers to have started, saw {pids}"
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "worker processes were left behind"
    assert not leftovers(), "the launcher left child processes behind"


# -------------------------------------------------------------------------------- worker bodies
def _report(folder):
    """Record this worker's pid so that the test can check that it is gone afterwards."""
    import horovod.tensorflow as hvd

    Path(folder, f"pid.{hvd.rank()}").write_text(str(os.getpid()))
    return hvd.rank(), hvd.size()


def _sum_ranks(folder):
    import horovod.tensorflow as hvd
    import tensorflow as tf

    _report(folder)
    for i in range(3):
        launch.progress(i + 1, 3, desc="demo", value=i)
    total = hvd.allreduce(tf.constant(float(hvd.rank() + 1)), op=hvd.Sum)
    print(f"rank {hvd.rank()} says hello")
    return {"rank": hvd.rank(), "size": hvd.size(), "sum": float(total),
            "intra": tf.config.threading.get_intra_op_parallelism_threads(),
            "omp": os.environ.get("OMP_NUM_THREADS"), "extra": os.environ.get("LABKIT_TEST_VAR")}


def _rank1_raises(folder):
    import horovod.tensorflow as hvd
    import tensorflow as tf

    rank, _ = _report(folder)
    if rank == 1:
        raise ValueError("rank one refuses to train")
    hvd.allreduce(tf.constant(1.0))  # rank 0 waits for rank 1 here, forever if nobody stops it
    return rank


def _rank1_killed(folder):
    import horovod.tensorflow as hvd
    import tensorflow as tf

    rank, _ = _report(folder)
    if rank == 1:
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)  # no traceback, no error file: a hard crash
    hvd.allreduce(tf.constant(1.0))
    return rank


def _sleep_forever(folder):
    _report(folder)
    print("sleeping", flush=True)
    time.sleep(3600)


# -------------------------------------------------------------------------------- tests
def test_two_workers_return_results_and_stream_rank0(tmp_path, capsys):
    results = launch.run(_sum_ranks, str(tmp_path), np=2, threads=1, timeout=120, progress_bar=False,
                         env={"LABKIT_TEST_VAR": "seen"})
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["size"] == 2 and r["sum"] == 3.0 for r in results)
    assert all(r["intra"] == 1 and r["omp"] == "1" and r["extra"] == "seen" for r in results)
    printed = capsys.readouterr().out
    assert "rank 0 says hello" in printed and "rank 1 says hello" not in printed  # only rank 0 streams
    assert "@@labkit-progress" not in printed  # progress lines never leak into the output
    _assert_no_orphans(tmp_path, 2)


def _my_cores():
    import os

    return sorted(os.sched_getaffinity(0))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning 2 workers needs 2 cores")
def test_pinned_workers_each_get_their_own_core():
    cores = launch.run(_my_cores, np=2, threads=1, timeout=120, echo=False, pin_cores=True)
    allowed = sorted(os.sched_getaffinity(0))
    assert cores == [[allowed[0]], [allowed[1]]]


def test_pinning_is_skipped_when_the_slices_do_not_fit():
    from labkit.threads import pin_to_cores

    before = os.sched_getaffinity(0)
    assert pin_to_cores(local_rank=len(before), threads=1) is None  # one worker too many
    assert pin_to_cores(local_rank=0, threads=len(before) + 1) is None
    assert os.sched_getaffinity(0) == before


def test_crashing_worker_names_its_rank_and_leaves_no_orphans(tmp_path):
    with pytest.raises(launch.WorkerError) as info:
        launch.run(_rank1_raises, str(tmp_path), np=2, threads=1, timeout=120, echo=False)
    err = info.value
    assert err.rank == 1
    assert "ValueError: rank one refuses to train" in err.reason
    assert "rank 1 failed" in str(err)
    _assert_no_orphans(tmp_path, 2)


def test_killed_worker_is_named_with_its_signal(tmp_path):
    with pytest.raises(launch.WorkerError) as info:
        launch.run(_rank1_killed, str(tmp_path), np=2, threads=1, timeout=120, echo=False)
    assert info.value.rank == 1
    assert "SIGKILL" in info.value.reason or "exit" in info.value.reason
    _assert_no_orphans(tmp_path, 2)


def test_timeout_stops_every_worker(tmp_path):
    start = time.monotonic()
    with pytest.raises(launch.WorkerError) as info:
        launch.run(_sleep_forever, str(tmp_path), np=2, threads=1, timeout=25, echo=False)
    assert info.value.reason == "timeout"
    assert "timeout" in str(info.value)
    assert time.monotonic() - start < 25 + 15, "teardown after the timeout took too long"
    # On a loaded machine the workers may still be importing TensorFlow at 25 s: whether or not
    # they got to run, none may survive (the subreaper makes any orphan a visible leftover).
    _assert_no_orphans(tmp_path, None)


def _interrupt_driver(tmp_path: Path, hogs: int = 0) -> tuple[int, str, float]:
    """Start a script inside launch.run, SIGINT it once its workers run (what a notebook's
    "interrupt kernel" does), optionally while ``hogs`` busy loops keep the cores busy.
    Returns (exit code, output, seconds from SIGINT to exit)."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import signal, sys
        # A shell that starts jobs in the background (nohup, '&' without job control) starts them
        # with SIGINT ignored, and Python then leaves it ignored; a kernel always handles it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from labkit import launch
        from test_launch import _sleep_forever
        try:
            launch.run(_sleep_forever, {str(tmp_path)!r}, np=2, threads=1, timeout=300)
        except KeyboardInterrupt:
            print("interrupted cleanly", flush=True)
            sys.exit(3)
    """))
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(_worker_pids(tmp_path)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert len(_worker_pids(tmp_path)) == 2, "workers never started"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out = ""
        return proc.returncode, out, time.monotonic() - sent
    finally:
        for p in [proc, *busy]:
            if p.poll() is None:
                p.kill()
            p.wait()


def test_interrupt_of_the_launching_process_leaves_no_orphans(tmp_path):
    code, out, seconds = _interrupt_driver(tmp_path)
    assert code == 3 and "interrupted cleanly" in out, out
    assert seconds < 10, f"launch.run took {seconds:.1f} s to return after SIGINT"
    _assert_no_orphans(tmp_path, 2)


def test_interrupt_under_cpu_load_returns_within_10_s_and_leaves_no_worker(tmp_path):
    code, out, seconds = _interrupt_driver(tmp_path, hogs=2)
    assert code == 3 and "interrupted cleanly" in out, out
    assert seconds < 10, f"with both cores busy, launch.run took {seconds:.1f} s to return after SIGINT"
    _assert_no_orphans(tmp_path, 2)


def _local_worker(folder):
    rank = int(os.environ["LABKIT_RANK"])
    Path(folder, f"pid.{rank}").write_text(str(os.getpid()))
    if rank == 1 and os.environ.get("CRASH"):
        raise RuntimeError("plain worker 1 crashed")
    if rank == 0 and os.environ.get("CRASH"):
        time.sleep(3600)  # would hang without teardown
    return rank, os.environ["LABKIT_SIZE"], os.environ.get("MY_ROLE")


def test_run_local_gives_per_rank_environments_and_tears_down(tmp_path):
    out = launch.run_local(_local_worker, str(tmp_path), np=2, timeout=120, echo=False,
                           rank_env=lambda r: {"MY_ROLE": f"worker{r}"})
    assert out == [(0, "2", "worker0"), (1, "2", "worker1")]
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    with pytest.raises(launch.WorkerError) as info:
        launch.run_local(_local_worker, str(crash_dir), np=2, timeout=120, echo=False, env={"CRASH": "1"})
    assert info.value.rank == 1 and "plain worker 1 crashed" in info.value.reason
    _assert_no_orphans(crash_dir, 2)


# -------------------------------------------------------------------------------- no processes
def test_hosts_become_horovodrun_arguments(tmp_path):
    cmd = launch.horovodrun_command(tmp_path, 8, "node1:4,node2:4", ["-p", "2222"])
    assert cmd[1:7] == ["--gloo", "-np", "8", "-H", "node1:4,node2:4", "-p"]
    assert cmd[-3:] == ["-m", "labkit.launch", str(tmp_path)]
    assert launch.horovodrun_command(tmp_path, 2)[5] == "localhost:2"
    with pytest.raises(ValueError, match="fewer than np"):
        launch.horovodrun_command(tmp_path, 3, "a:1,b:1")
    with pytest.raises(ValueError, match="node1:4"):
        launch.horovodrun_command(tmp_path, 2, "a:two")


def test_teardown_never_kills_a_process_that_merely_reused_a_workers_pid(tmp_path):
    job = launch._Job(tmp_path)
    job.write_pid(0)
    assert job.local_worker(0).pid == os.getpid()
    host, pid, started, machine = job.pid(0).read_text().split()
    job.pid(0).write_text(f"{host} {pid} {float(started) - 100} {machine}")  # same pid, another process
    assert job.local_worker(0) is None
    job.pid(0).write_text(f"some-other-host {pid} {started} other-machine:1")  # a worker on another machine
    assert job.local_worker(0) is None
    assert job.where(0) == ("some-other-host", "other-machine:1")
    # a namespaced "host" of this machine has another hostname but the same machine: still local
    job.pid(0).write_text(f"h2 {pid} {started} {launch.machine_id()}")
    assert job.local_worker(0).pid == os.getpid()


def test_progress_lines_drive_a_bar_and_stay_out_of_the_output(capsys):
    out = launch._Output(echo=True)
    for i in (1, 2, 3):
        out.feed("[0]<stdout>:@@labkit-progress " + '{"step": %d, "total": 3, "desc": "d", "metrics": {"loss": 0.5}}' % i)
    out.feed("[0]<stdout>:hello from rank 0")
    out.feed("[1]<stdout>:hello from rank 1")
    assert out.bar.bar.n == 3 and out.bar.bar.total == 3
    out.bar.close()
    printed = capsys.readouterr().out
    assert printed.strip() == "hello from rank 0"
    assert out.tail(1) == "hello from rank 1"


def test_multi_host_plans_count_workers_per_machine():
    # horovodrun fills hosts in order; pinning counts each rank among the workers of its machine
    assert launch._rank_hosts("a:2,b:2", 3) == ["a", "a", "b"]
    assert launch._machine_slots("a:2,b:2", 4, shared_machine=False) == [0, 1, 0, 1]
    # namespaced hosts share this machine's cores: every worker needs its own core
    assert launch._machine_slots("h1:1,h2:1", 2, shared_machine=True) == [0, 1]
    assert launch._machine_slots(None, 2, shared_machine=False) == [0, 1]
    assert launch._ssh_args(["-p", "2222", "-i", "/k"])[-4:] == ["-p", "2222", "-i", "/k"]


def _sleep_plain(seconds):
    time.sleep(seconds)
    return "slept"


@pytest.mark.parametrize("how", ["stale lease", "job folder deleted"])
def test_worker_whose_launcher_is_gone_exits_by_itself(tmp_path, how):
    """A worker on another host can't see the launcher's pid: the job's lease tells it the launcher is gone."""
    import cloudpickle

    job = launch._Job(tmp_path / "job")
    job.dir.mkdir()
    job.payload().write_bytes(cloudpickle.dumps((_sleep_plain, (300,), {})))
    job.renew_lease()
    env = {**os.environ, "LABKIT_RANK": "0", "LABKIT_SIZE": "1", "LABKIT_LEASE_SECONDS": "3",
           "LABKIT_PARENT": "another-machine:1 1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "labkit.launch", "--plain", str(job.dir)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not job.pid(0).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if how == "job folder deleted":
            import shutil

            shutil.rmtree(job.dir)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == (72 if how == "stale lease" else 71)
