"""Unit claims: one holder at a time, stale claims taken over (dead pid, old heartbeat from another host),
a claimed unit is `running` to every planner; two `bench run` of one study started together train every unit
exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, wait_for

from bench.claims import CLAIM, Claim, live_claim, take_claim
from bench.procs import CONTEXT, spawn_process
from bench.store import unit_status


def test_one_holder_and_release(tmp_path):
    first = take_claim(tmp_path / "unit")
    assert isinstance(first, Claim) and first.held()
    second = take_claim(tmp_path / "unit")  # this very process holds it: a live holder
    assert not isinstance(second, Claim) and second["token"] == first.record["token"]
    assert unit_status(tmp_path / "unit", "h") == "running"
    first.release()
    assert not (tmp_path / "unit" / CLAIM).exists() and live_claim(tmp_path / "unit") is None
    assert unit_status(tmp_path / "unit", "h") == "missing"
    assert [p.name for p in (tmp_path / "unit").iterdir()] == []  # no temporary file left


def _write_claim(directory: Path, **record) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CLAIM).write_text(json.dumps({"token": "old", "started": 0, **record}))


def test_a_dead_holder_on_this_host_is_taken_over_at_once(tmp_path):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_claim(tmp_path / "unit", host=socket.gethostname(), pid=dead.pid, heartbeat=time.time())
    assert live_claim(tmp_path / "unit") is None and unit_status(tmp_path / "unit", "h") == "partial"
    claim = take_claim(tmp_path / "unit")
    assert isinstance(claim, Claim) and claim.held()
    claim.release()


def test_another_hosts_claim_is_live_until_its_heartbeat_is_older_than_the_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CLAIM_TIMEOUT", "100")
    _write_claim(tmp_path / "fresh", host="node-7", pid=1, heartbeat=time.time())
    assert live_claim(tmp_path / "fresh")["host"] == "node-7"
    assert not isinstance(take_claim(tmp_path / "fresh"), Claim)
    _write_claim(tmp_path / "old", host="node-7", pid=1, heartbeat=time.time() - 500)
    old = tmp_path / "old" / CLAIM
    os.utime(old, (time.time() - 500, time.time() - 500))
    assert live_claim(tmp_path / "old") is None
    claim = take_claim(tmp_path / "old")
    assert isinstance(claim, Claim) and claim.record["token"] != "old"
    claim.release()


def _contend(directory: str, start: str, results) -> None:
    start = Path(start)
    (start.parent / f"ready.{os.getpid()}").touch()
    while not start.exists():  # every contender is up before any tries: they race for real
        time.sleep(0.005)
    claim = take_claim(Path(directory))
    results.put(isinstance(claim, Claim))
    (start.parent / f"tried.{os.getpid()}").touch()
    deadline = time.monotonic() + 600  # a bound for a broken test only (a contender that died), not a pace
    while len(list(start.parent.glob("tried.*"))) < CONTENDERS and time.monotonic() < deadline:
        time.sleep(0.005)  # hold it until every other contender has tried


CONTENDERS = 6


@pytest.mark.parametrize("stale", [False, True])
def test_contenders_started_together_get_exactly_one_claim(tmp_path, stale):
    """Six processes race for one claim; the winner holds it until all have tried. Both the start and the
    holding wait on states on disk, not times: with a fixed one-second hold, a contender that a loaded machine
    started late found the winner's process gone — a dead holder, rightly taken over — and two "won"."""
    directory, start = tmp_path / "unit", tmp_path / "go"
    if stale:  # they race for a stale claim's takeover, too
        _write_claim(directory, host="node-9", pid=1, heartbeat=0)
        os.utime(directory / CLAIM, (0, 0))
    results = CONTEXT.Queue()
    processes = [spawn_process(_contend, (str(directory), str(start), results)) for _ in range(CONTENDERS)]
    wait_for(lambda: len(list(tmp_path.glob("ready.*"))) == CONTENDERS, *processes)
    start.touch()
    won = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(600)
    assert sum(won) == 1, won


def test_two_runs_started_together_train_every_unit_exactly_once(tmp_path):
    bench = str(Path(sys.executable).with_name("bench"))
    runs, trace = tmp_path / "runs", tmp_path / "trained.txt"
    env = {**os.environ, "BENCH_TEST_TRACE": str(trace)}
    command = [bench, "run", "--study", "smoke", "--profile", "smoke", "--runs-dir", str(runs)]
    procs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=3600) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    trained = Counter(line.split()[1] for line in trace.read_text().splitlines())
    units = {str(p.parent.relative_to(runs / "smoke")) for p in (runs / "smoke").glob("*/fold_*/seed_*/DONE.json")}
    assert len(units) == 9 and set(trained) == units
    assert set(trained.values()) == {1}, trained  # every unit trained once, by one of the two
    pids = {line.split()[2] for line in trace.read_text().splitlines()}
    assert len(pids) >= 2  # both invocations trained (their workers are the pids)
    assert not list((runs / "smoke").glob("*/fold_*/seed_*/" + CLAIM))  # every claim released
    status = subprocess.run([bench, "status", "smoke", "--profile", "smoke", "--runs-dir", str(runs)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert status.returncode == 0, status.stderr[-2000:]
    assert "9 units" in status.stdout and "unet3d" in status.stdout
