"""The one way this suite starts worker processes: spawned, one thread budget each, and never an orphan.

Every pool and worker (units of ``bench run --jobs N``, tuning workers, ``bench perf``, cohort
generation) comes from here. Workers are *spawned*, not forked: the parent may already run
torch/OpenMP threads, which a fork copies in a locked state. Each worker starts a watchdog thread
that exits the worker as soon as its parent is gone: a parent killed with SIGKILL gets no chance to
stop its pool, and a worker left training would write a finished unit later, behind the back of the
invocation that reruns it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["alive", "SPAWN", "usable_cores", "CORES_ENV", "set_threads", "watch_parent", "spawn_pool", "spawn_process", "terminate_pool",
           "run_isolated", "WATCHDOG_INTERVAL_S", "ORPHAN_EXIT_CODE"]

SPAWN = mp.get_context("spawn")
#: How often a worker checks that its parent is alive.
WATCHDOG_INTERVAL_S = 0.5
#: Exit status of a worker that stopped because its parent died.
ORPHAN_EXIT_CODE = 86
#: Cores this suite may use (default: the cores this process may run on); share a machine by lowering it.
CORES_ENV = "BENCH_CORES"


def usable_cores() -> int:
    """``$BENCH_CORES`` when set, else the cores this process may run on (its CPU affinity)."""
    value = os.environ.get(CORES_ENV)
    if value:
        try:
            cores = int(value)
        except ValueError:
            cores = 0
        if cores < 1:
            from bench.errors import ConfigError

            raise ConfigError(f"${CORES_ENV}={value!r}: expected a whole number of cores ≥ 1")
        return cores
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(threads: int) -> None:
    """Torch (and OpenMP/MKL) threads of this process."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def watch_parent(interval: float = WATCHDOG_INTERVAL_S) -> None:
    """Exit this process (status :data:`ORPHAN_EXIT_CODE`, no cleanup) once its parent process is gone.

    A spawned child's parent is the process that started it; when that parent dies, the child is
    re-parented (to init or a subreaper) and ``os.getppid()`` changes. ``os._exit`` skips every
    ``finally`` and atexit handler on purpose: a half-trained unit must not write anything more.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(ORPHAN_EXIT_CODE)
            threading.Event().wait(interval)

    threading.Thread(target=watch, name="bench-parent-watchdog", daemon=True).start()


def _init_worker(threads: int | None, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    watch_parent()
    if threads:
        set_threads(threads)
    if initializer is not None:
        initializer(*initargs)


def spawn_pool(jobs: int, *, threads: int | None = None, initializer: Callable[..., None] | None = None,
               initargs: tuple = ()) -> ProcessPoolExecutor:
    """A process pool of ``jobs`` spawned workers, each with ``threads`` torch threads and a parent watchdog.

    ``initializer(*initargs)`` runs in each worker after that; objects that may only be inherited
    (e.g. a ``SPAWN.Queue()``) can be handed to the workers through ``initargs``.
    """
    return ProcessPoolExecutor(max_workers=jobs, mp_context=SPAWN, initializer=_init_worker,
                               initargs=(threads, initializer, initargs))


def _process_main(threads: int | None, target: Callable[..., Any], args: tuple) -> None:
    _init_worker(threads, None, ())
    target(*args)


def spawn_process(target: Callable[..., Any], args: tuple = (), *, threads: int | None = None):
    """A started spawned process running ``target(*args)`` with a parent watchdog (and ``threads`` torch threads)."""
    process = SPAWN.Process(target=_process_main, args=(threads, target, args), daemon=False)
    process.start()
    return process


def terminate_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's workers now (Ctrl-C, SIGTERM, an error in the parent) without waiting for their work."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def run_isolated(fn: Callable[..., Any], args: tuple = (), *, threads: int | None = None, timeout: float | None = None) -> Any:
    """``fn(*args)`` in a fresh spawned process (a clean allocator and thread pool for a measurement).

    Raises :class:`TimeoutError` after ``timeout`` seconds (None: no limit), the process killed.
    """
    from concurrent.futures import TimeoutError as FutureTimeout

    pool = spawn_pool(1, threads=threads)
    try:
        return pool.submit(fn, *args).result(timeout)
    except FutureTimeout:
        raise TimeoutError(f"timed out after {timeout:g} s") from None
    finally:
        terminate_pool(pool)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state != "Z"
