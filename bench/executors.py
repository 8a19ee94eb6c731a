"""Executors: run units inline or in a local process pool (``--jobs N``).

Pool workers come from :func:`bench.procs.spawn_pool` (forked from a preloaded fork server, a fixed number of torch threads each,
gone as soon as the parent is): on a small CPU, two units with one thread each beat one unit with two
threads, and oversubscribed threads were measured up to 13× slower. Workers report progress events
through a queue they inherit; the parent process alone writes to MLflow, so no two processes ever
contend for the tracking database.
"""

from __future__ import annotations

import queue as queue_module
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from bench.procs import CONTEXT, set_threads, spawn_pool, terminate_pool, usable_cores
from bench.spec import PlannedUnit

__all__ = ["execute", "default_threads", "set_threads", "terminate_pool"]

OnEvent = Callable[[PlannedUnit, dict[str, Any]], None]
OnResult = Callable[[PlannedUnit, dict[str, Any]], None]
_EVENTS = None  # the worker's end of the parent's event queue (set by the pool initializer)


def default_threads(jobs: int) -> int:
    """Torch threads per unit when ``jobs`` units run at once: the usable cores (``$BENCH_CORES``) shared out."""
    return max(1, usable_cores() // max(jobs, 1))


def _bind_events(events) -> None:
    global _EVENTS
    _EVENTS = events


def _pool_unit(spec: dict, directory: str, index: int) -> dict[str, Any]:
    from bench.unit import run_unit

    return run_unit(spec, directory, emit=lambda event: _EVENTS.put((index, event)))


def _inline(units: list[PlannedUnit], threads: int, on_event: OnEvent, on_result: OnResult) -> None:
    from bench.unit import run_unit

    set_threads(threads)
    for unit in units:
        result = run_unit(unit.spec.to_json(), str(unit.directory), emit=lambda event, u=unit: on_event(u, event))
        on_result(unit, result)


def _pool(units: list[PlannedUnit], jobs: int, threads: int, on_event: OnEvent, on_result: OnResult) -> None:
    events = CONTEXT.Queue()
    pool = spawn_pool(jobs, threads=threads, initializer=_bind_events, initargs=(events,))
    futures: dict[Future, PlannedUnit] = {}
    try:
        for i, unit in enumerate(units):
            futures[pool.submit(_pool_unit, unit.spec.to_json(), str(unit.directory), i)] = unit
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
    events.close()


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
