"""Unit claims: a unit is trained by one invocation at a time, also when several share a run directory.

Before a unit trains, its worker creates ``CLAIM.json`` in the unit's directory — atomically, with its
content, by hard-linking a finished temporary file (``link`` fails if the name exists, on local file
systems and NFS alike). The claim names its holder (host, pid, a random token) and carries a heartbeat
that a thread refreshes every :data:`HEARTBEAT_S` seconds. Another ``bench run`` of the same study (on
this machine, on another node of a cluster, started at the same moment or later) finds the claim and
skips the unit; its plan shows it as ``running``, and it never clears it as a partial unit.

A claim whose holder is gone is stale and is taken over: on the same host as soon as its pid no longer
runs (a SIGKILLed run, a crashed node's restart), from another host as soon as its SLURM job has left
the queue (cancelled, preempted, out of time: ``squeue``), or once its heartbeat is older than
:func:`claim_timeout` (``$BENCH_CLAIM_TIMEOUT``). The holder removes its claim when the
unit ends, done or failed; DONE.json, written before, is what says a unit is finished.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.procs import alive

__all__ = ["CLAIM", "Claim", "take_claim", "live_claim", "claim_timeout", "HEARTBEAT_S"]

CLAIM = "CLAIM.json"
#: seconds between heartbeats of a held claim
HEARTBEAT_S = 30.0
TIMEOUT_ENV = "BENCH_CLAIM_TIMEOUT"


def claim_timeout() -> float:
    """Heartbeat age (s) after which a claim held on another host is stale (``$BENCH_CLAIM_TIMEOUT``, 600)."""
    return float(os.environ.get(TIMEOUT_ENV, 600))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: judged by its age below


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (so that a reused pid is not taken for the holder), where /proc has it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _slurm_job() -> str | None:
    """This process's SLURM job (``<array job>_<task>`` for an array task), if it runs in one."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def _in_queue(job: str) -> bool | None:
    """Whether SLURM still runs (or queues) ``job``; None when ``squeue`` cannot tell."""
    import shutil
    import subprocess

    if shutil.which("squeue") is None:
        return None
    try:
        proc = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return False if "Invalid job id" in proc.stderr else None
    return bool(proc.stdout.strip())


def _holder_alive(record: dict[str, Any], path: Path) -> bool:
    if record.get("host") == socket.gethostname() and "pid" in record:
        pid = int(record["pid"])
        return alive(pid) and record.get("start_time") in (None, _start_time(pid))
    if record.get("slurm_job") and _in_queue(record["slurm_job"]) is False:  # cancelled, preempted, ended
        return False
    try:
        beat = max(float(record.get("heartbeat", 0)), path.stat().st_mtime)
    except OSError:
        return False
    return time.time() - beat < claim_timeout()


def live_claim(directory: Path) -> dict[str, Any] | None:
    """The record of a live claim on the unit in ``directory``, or None (no claim, or a stale one)."""
    path = Path(directory) / CLAIM
    record = _read(path)
    if record is None or not _holder_alive(record, path):
        return None
    return record


class Claim:
    """A held claim: refreshes its heartbeat in a thread until :meth:`release`."""

    def __init__(self, path: Path, record: dict[str, Any]):
        self.path, self.record = path, record
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="claim-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if not self.held():
                return
            self.record["heartbeat"] = time.time()
            tmp = self.path.with_name(f".claim.{self.record['token']}.beat")
            try:
                tmp.write_text(json.dumps(self.record))
                os.replace(tmp, self.path)
            except OSError:
                pass  # a full or vanished disk: the claim ages and may be taken over, which is safe

    def held(self) -> bool:
        current = _read(self.path)
        return bool(current) and current.get("token") == self.record["token"]

    def release(self) -> None:
        self._stop.set()
        if self.held():
            try:
                self.path.unlink()
            except OSError:
                pass


def _write_tmp(directory: Path, record: dict[str, Any]) -> Path:
    tmp = directory / f".claim.{record['token']}"
    tmp.write_text(json.dumps(record))
    return tmp


def take_claim(directory: Path) -> Claim | dict[str, Any]:
    """Claim the unit in ``directory`` for this process: a :class:`Claim`, or the live holder's record."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = time.time()
    record = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": _start_time(os.getpid()),
              "slurm_job": _slurm_job(), "token": uuid.uuid4().hex, "started": now, "heartbeat": now}
    path, tmp = directory / CLAIM, _write_tmp(directory, record)
    try:
        for _ in range(5):
            try:
                os.link(tmp, path)  # atomic: fails if a claim exists
                return Claim(path, record)
            except FileExistsError:
                pass
            holder = _read(path)
            if holder is None:
                continue  # released meanwhile: try again
            if _holder_alive(holder, path):
                return holder
            _remove_stale(path, holder)
        return _read(path) or {}
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale(path: Path, stale: dict[str, Any]) -> None:
    """Move a stale claim out of the way; if another process took it over meanwhile, put its claim back."""
    moved = path.with_name(f".claim.stale.{uuid.uuid4().hex}")
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        return
    if (_read(moved) or {}).get("token") != stale.get("token"):  # a fresh claim, not the stale one: restore it
        try:
            os.link(moved, path)
        except FileExistsError:
            pass
    moved.unlink(missing_ok=True)
