"""Worker processes: spawned with a parent watchdog, so a parent killed with SIGKILL leaves no orphan at work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import REPO

from bench.procs import run_isolated, spawn_pool
from bench.soak import descendants, wait_gone

PARENT = """
import sys, time
from bench.procs import spawn_pool, spawn_process

def forever(path):
    import os, time
    open(path + ".tmp", "w").write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    while True:
        time.sleep(0.1)

if __name__ == "__main__":
    pool = spawn_pool(1)
    pool.submit(forever, sys.argv[1])
    process = spawn_process(forever, (sys.argv[2],))
    time.sleep(3600)
"""


def test_workers_of_a_sigkilled_parent_stop_on_their_own(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    pool_pid, process_pid = tmp_path / "pool.pid", tmp_path / "process.pid"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, str(script), str(pool_pid), str(process_pid)], env=env, start_new_session=True)
    try:
        while not (pool_pid.exists() and process_pid.exists()):  # both workers are at work
            assert parent.poll() is None, "the parent ended before its workers started"
            time.sleep(0.05)
        workers = {int(pool_pid.read_text()), int(process_pid.read_text())}
        assert workers <= descendants(parent.pid)
        os.kill(parent.pid, signal.SIGKILL)  # the parent alone: no chance to stop its workers
        parent.wait()
        orphans = wait_gone(workers, 300)  # a bound for reporting a failure, not a pace: they notice in 0.5 s
        assert not orphans, f"orphan workers {orphans} still running 300 s after their parent died"
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)


def _square(x: int) -> int:
    return x * x


def test_a_pool_worker_runs_normally_and_the_pool_stops_cleanly():
    with spawn_pool(2, threads=1) as pool:
        assert list(pool.map(_square, range(5))) == [0, 1, 4, 9, 16]
    assert run_isolated(_square, (7,)) == 49


def _worker_state(name: str) -> tuple[str | None, str, bool]:
    import sys

    return os.environ.get(name), os.getcwd(), "monai" in sys.modules


def test_workers_fork_from_a_preloaded_server_with_the_parents_environment_and_directory(tmp_path, monkeypatch):
    """Workers fork from a server that imported MONAI before they were asked for (nothing this test sends a worker
    imports it), yet each sees its parent's environment and working directory as they are when it starts, not
    as they were when the server started."""
    from bench.procs import start_workers

    start_workers()
    monkeypatch.setenv("BENCH_TEST_PROBE", "set after the server started")
    monkeypatch.chdir(tmp_path)
    with spawn_pool(1) as pool:
        env, cwd, preloaded = pool.submit(_worker_state, "BENCH_TEST_PROBE").result()
    assert (env, cwd, preloaded) == ("set after the server started", str(tmp_path), True)
