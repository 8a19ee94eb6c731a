"""The SLURM executor (``--executor slurm``, through submitit): one job array per invocation.

``bench run --executor slurm`` submits one array task per pending unit; each task runs
:func:`bench.unit.run_unit` (which claims the unit, :mod:`bench.claims`) with ``--cpus-per-unit`` torch
threads. The submitting process (the login node) waits, shows progress as tasks end and alone writes
MLflow, mirroring each finished unit. A cancelled, preempted or timed-out task leaves no DONE.json; its
claim goes stale (its process is gone; on another node, its SLURM job has left the queue) and the next
invocation trains the unit again, and nothing else. With ``--detach`` the process submits and returns;
``bench status`` shows the array's tasks and ``bench sync`` mirrors what finished.

``bench tune --executor slurm`` submits its workers (:func:`bench.tuning.pool_worker`) as one array, all on
the search's storage, which must then be a server every node reaches (``--storage postgresql://…``).

Submitted arrays are recorded in ``runs/<study>/slurm/jobs.json`` (job id → the unit of each task); submitit's
logs and pickles are under ``runs/<study>/slurm/<job id>/``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.spec import PlannedUnit

__all__ = ["SlurmOptions", "submit_units", "wait_units", "submit_workers", "job_states", "recorded_tasks"]

JOBS_FILE = "jobs.json"
POLL_S = 5.0


@dataclass(frozen=True)
class SlurmOptions:
    """What ``--partition``, ``--time``, ``--gpus-per-unit``, ``--cpus-per-unit``, ``--mem``, ``--max-parallel``
    and ``--slurm-arg KEY=VALUE`` ask of every task."""

    partition: str | None = None
    time_min: int = 60
    gpus_per_unit: int = 0
    cpus_per_unit: int = 1
    mem: str | None = None
    max_parallel: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def parse_extra(pairs: Sequence[str]) -> dict[str, str]:
        out = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ConfigError(f"--slurm-arg {pair!r}: expected KEY=VALUE (an sbatch option without its dashes)")
            out[key.strip().lstrip("-").replace("-", "_")] = value
        return out

    def parameters(self) -> dict[str, Any]:
        """submitit's ``SlurmExecutor.update_parameters`` keywords (sbatch's options, underscored)."""
        params: dict[str, Any] = {"time": self.time_min, "cpus_per_task": self.cpus_per_unit, "nodes": 1,
                                  "ntasks_per_node": 1}
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_unit:
            params["gpus_per_node"] = self.gpus_per_unit
        if self.mem:
            params["mem"] = self.mem
        if self.max_parallel:
            params["array_parallelism"] = self.max_parallel
        if self.extra:
            params["additional_parameters"] = dict(self.extra)
        return params


def _executor(folder: Path, options: SlurmOptions, name: str):
    try:
        import submitit
    except ImportError:
        raise ConfigError("--executor slurm needs submitit: pip install 'jointbench[slurm]'") from None
    if shutil.which("sbatch") is None:
        raise ConfigError("--executor slurm: no `sbatch` on this machine's PATH; run on a SLURM login node")
    executor = submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=0)
    executor.update_parameters(job_name=name, **options.parameters())
    return executor


def _unit_task(spec: dict, directory: str, threads: int) -> dict[str, Any]:
    """One array task: a unit with ``threads`` torch threads (the function submitit runs on the node)."""
    from bench.procs import set_threads
    from bench.unit import run_unit

    set_threads(threads)
    return run_unit(spec, directory)


def _record(folder: Path, job_id: str, keys: list[str]) -> None:
    path = folder / JOBS_FILE
    jobs = json.loads(path.read_text()) if path.exists() else {}
    jobs[job_id] = {"submitted": time.time(), "tasks": keys}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(jobs, indent=1))
    tmp.replace(path)


def submit_units(units: list[PlannedUnit], folder: Path, options: SlurmOptions, name: str) -> list:
    """Submit ``units`` as one job array; returns submitit's jobs (task i = unit i) and records them."""
    folder.mkdir(parents=True, exist_ok=True)
    executor = _executor(folder, options, name)
    with executor.batch():
        jobs = [executor.submit(_unit_task, u.spec.to_json(), str(Path(u.directory).resolve()), options.cpus_per_unit)
                for u in units]
    if jobs:
        _record(folder, str(jobs[0].job_id).split("_")[0], [u.spec.key for u in units])
    return jobs


def wait_units(units: list[PlannedUnit], jobs: list, on_result: Callable[[PlannedUnit, dict[str, Any]], None],
               on_event: Callable[[PlannedUnit, dict[str, Any]], None] | None = None) -> None:
    """Wait for every task; ``on_result`` as each ends (a task that failed, was cancelled or timed out: failed)."""
    pending = dict(zip(range(len(jobs)), jobs))
    started: set[int] = set()
    while pending:
        for i, job in list(pending.items()):
            if on_event and i not in started and job.state in ("RUNNING", "COMPLETING"):
                started.add(i)
                on_event(units[i], {"type": "start", "epochs": units[i].spec.profile["epochs"]})
            if not job.done():
                continue
            del pending[i]
            try:
                result = job.result()
            except Exception as exc:  # noqa: BLE001 - the task died: cancelled, preempted, out of time or memory
                result = {"status": "failed", "error": f"SLURM task {job.job_id} ended {job.state}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                          "traceback": ""}
            on_result(units[i], result)
        if pending:
            time.sleep(POLL_S)


def submit_workers(search_data: dict, storage_url: str, grace: int, *, count: int, folder: Path,
                   options: SlurmOptions, name: str) -> list:
    """``count`` tuning workers (:func:`bench.tuning.pool_worker`) as one job array on a shared storage."""
    if storage_url.startswith("sqlite"):
        raise ConfigError("bench tune --executor slurm needs a storage every node reaches: --storage postgresql://…; "
                          "SQLite on a shared file system loses locks")
    folder.mkdir(parents=True, exist_ok=True)
    executor = _executor(folder, options, name)
    with executor.batch():
        jobs = [executor.submit(_worker_task, search_data, storage_url, grace, options.cpus_per_unit)
                for _ in range(count)]
    if jobs:
        _record(folder, str(jobs[0].job_id).split("_")[0], [f"tuning worker {i}" for i in range(count)])
    return jobs


def _worker_task(search_data: dict, storage_url: str, grace: int, threads: int) -> None:
    from bench.procs import set_threads
    from bench.tuning import pool_worker

    set_threads(threads)
    pool_worker(search_data, storage_url, grace)


def recorded_tasks(folder: Path) -> dict[str, list[str]]:
    """Array job id → the unit key (or worker) of each of its tasks, as submitted from this run directory."""
    path = folder / JOBS_FILE
    return {job: record["tasks"] for job, record in json.loads(path.read_text()).items()} if path.exists() else {}


def job_states(job_ids: Sequence[str]) -> dict[str, str]:
    """``<array job id>_<task>`` → its state, from ``sacct`` (finished and queued alike); empty without SLURM."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    proc = subprocess.run(["sacct", "-n", "-P", "-X", "--format=JobID,State", "-j", ",".join(job_ids)],
                          capture_output=True, text=True, timeout=60)
    states = {}
    for line in proc.stdout.splitlines():
        job, _, state = line.partition("|")
        if "_" in job and "[" not in job:
            states[job] = state.split()[0] if state else "?"
    return states
