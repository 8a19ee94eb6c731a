"""Executors: run units inline or in a local process pool (``--jobs N``).

Pool workers are spawned (not forked) and each uses a fixed number of torch threads: on a small CPU,
two units with one thread each beat one unit with two threads, and oversubscribed threads were
measured up to 13× slower. Workers report progress events through a queue; the parent process alone
writes to MLflow, so no two processes ever contend for the tracking database.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from bench.spec import PlannedUnit

__all__ = ["execute", "default_threads", "set_threads", "terminate_pool"]

OnEvent = Callable[[PlannedUnit, dict[str, Any]], None]
OnResult = Callable[[PlannedUnit, dict[str, Any]], None]


def default_threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(jobs, 1))


def set_threads(threads: int) -> None:
    """Torch (and OpenMP/MKL) threads of this process."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _pool_unit(spec: dict, directory: str, index: int, events) -> dict[str, Any]:
    from bench.unit import run_unit

    return run_unit(spec, directory, emit=lambda event: events.put((index, event)))


def _inline(units: list[PlannedUnit], threads: int, on_event: OnEvent, on_result: OnResult) -> None:
    from bench.unit import run_unit

    set_threads(threads)
    for unit in units:
        result = run_unit(unit.spec.to_json(), str(unit.directory), emit=lambda event, u=unit: on_event(u, event))
        on_result(unit, result)


def _pool(units: list[PlannedUnit], jobs: int, threads: int, on_event: OnEvent, on_result: OnResult) -> None:
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        events = manager.Queue()
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=set_threads, initargs=(threads,))
        futures: dict[Future, PlannedUnit] = {}
        try:
            for i, unit in enumerate(units):
                futures[pool.submit(_pool_unit, unit.spec.to_json(), str(unit.directory), i, events)] = unit
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(events, units, on_event)
                for future in finished:
                    unit = futures[future]
                    try:
                        result = future.result()
                    except Exception as exc:  # the worker process itself died
                        result = {"status": "failed", "error": f"worker died: {type(exc).__name__}: {exc}", "traceback": ""}
                    on_result(unit, result)
            _drain(events, units, on_event)
        except BaseException:
            terminate_pool(pool)
            raise
        pool.shutdown(wait=True)


def terminate_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's workers now (Ctrl-C, or an error in the parent) without waiting for their work."""
    for process in list(getattr(pool, "_processes", {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _drain(events, units: list[PlannedUnit], on_event: OnEvent) -> None:
    while True:
        try:
            index, event = events.get_nowait()
        except (queue_module.Empty, EOFError, OSError):
            return
        on_event(units[index], event)


def execute(units: list[PlannedUnit], *, jobs: int, threads: int | None, on_event: OnEvent, on_result: OnResult) -> None:
    """Run ``units``; ``on_event`` gets progress events, ``on_result`` each unit's outcome, in the parent process."""
    threads = threads or default_threads(jobs)
    if jobs <= 1 or len(units) <= 1:
        _inline(units, threads, on_event, on_result)
    else:
        _pool(units, min(jobs, len(units)), threads, on_event, on_result)
