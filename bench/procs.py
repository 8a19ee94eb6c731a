"""The one way this suite starts worker processes: fresh processes, one thread budget each, never an orphan.

Every pool and worker (units of ``bench run --jobs N``, tuning workers, ``bench perf``, cohort
generation) comes from here. Workers are never forked from the parent: the parent may already run
torch/OpenMP threads, which a fork copies in a locked state. They fork from a *fork server*
(:data:`CONTEXT`): a process started fresh, which imports torch, MONAI and the harness once
(:data:`PRELOAD`; it runs no torch work, so no OpenMP pool exists to copy) and forks a worker on request.
A spawned worker imported all of that itself — about 10 s of CPU on a 2-core machine, for every worker
of every run — and a forked one starts in milliseconds; :func:`start_workers` starts the server early, so
that its imports overlap the parent's own start-up. A worker gets the parent's environment at its start,
as a spawned one would (:func:`_init_worker`), not the server's.

Each worker starts a watchdog thread that exits the worker as soon as its parent is gone: a parent killed
with SIGKILL gets no chance to stop its pool, and a worker left training would write a finished unit
later, behind the back of the invocation that reruns it. A forked worker's parent is the fork server,
which stays up while any of its workers runs, so the watchdog also watches the process that asked for the
worker (:func:`watch_parent`); once the workers are gone, the server exits too.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["alive", "CONTEXT", "SPAWN", "PRELOAD", "start_workers", "usable_cores", "CORES_ENV", "set_threads", "watch_parent",
           "spawn_pool", "spawn_process", "terminate_pool", "run_isolated", "WATCHDOG_INTERVAL_S", "ORPHAN_EXIT_CODE"]

#: What the fork server imports before it forks a worker: what training and evaluating a unit import.
PRELOAD = ["torch", "torch._dynamo", "monai", "bench.unit", "bench.loop", "bench.evaluate", "baselines", "methods"]
#: The context of every worker process and of the queues handed to them (see the module docstring).
CONTEXT = mp.get_context("forkserver")
CONTEXT.set_forkserver_preload(PRELOAD)
#: A truly spawned process, for measurements (:func:`run_isolated`): its peak RSS and allocator are its own.
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


def watch_parent(interval: float = WATCHDOG_INTERVAL_S, *, asker: int | None = None) -> None:
    """Exit this process (status :data:`ORPHAN_EXIT_CODE`, no cleanup) once its parent process is gone.

    A child's parent is the process that started it; when that parent dies, the child is re-parented (to
    init or a subreaper) and ``os.getppid()`` changes. A worker forked by the fork server has the server as
    its parent, and the server lives as long as any of its workers does (each holds the server's "alive"
    pipe), so such a worker also watches ``asker``, the process that asked for it: gone (or a zombie) means
    exit. ``os._exit`` skips every ``finally`` and atexit handler on purpose: a half-trained unit must not
    write anything more.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            if os.getppid() != parent or (asker is not None and not alive(asker)):
                os._exit(ORPHAN_EXIT_CODE)
            threading.Event().wait(interval)

    threading.Thread(target=watch, name="bench-parent-watchdog", daemon=True).start()


def start_workers() -> None:
    """Start the fork server now (it imports :data:`PRELOAD` while the caller goes on); idempotent."""
    from multiprocessing import forkserver

    forkserver.ensure_running()


def _from_here() -> tuple[int, dict[str, str]]:
    """What a new worker takes from the process asking for it: that process's pid and current environment."""
    return os.getpid(), dict(os.environ)


def _init_worker(asker: int, env: dict[str, str], threads: int | None, initializer: Callable[..., None] | None,
                 initargs: tuple) -> None:
    os.environ.clear()  # the parent's environment when it started this worker, not the fork server's
    os.environ.update(env)
    watch_parent(asker=asker)
    if threads:
        set_threads(threads)
    if initializer is not None:
        initializer(*initargs)


def spawn_pool(jobs: int, *, threads: int | None = None, initializer: Callable[..., None] | None = None,
               initargs: tuple = (), context=CONTEXT) -> ProcessPoolExecutor:
    """A process pool of ``jobs`` fresh workers, each with ``threads`` torch threads and a parent watchdog.

    ``initializer(*initargs)`` runs in each worker after that; objects that may only be inherited
    (e.g. a ``CONTEXT.Queue()``) can be handed to the workers through ``initargs``. ``context``: where the
    workers come from (:data:`CONTEXT`; :data:`SPAWN` for a measurement).
    """
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                               initargs=(*_from_here(), threads, initializer, initargs))


def _process_main(asker: int, env: dict[str, str], threads: int | None, target: Callable[..., Any], args: tuple) -> None:
    _init_worker(asker, env, threads, None, ())
    target(*args)


def spawn_process(target: Callable[..., Any], args: tuple = (), *, threads: int | None = None):
    """A started fresh process running ``target(*args)`` with a parent watchdog (and ``threads`` torch threads)."""
    process = CONTEXT.Process(target=_process_main, args=(*_from_here(), threads, target, args), daemon=False)
    process.start()
    return process


def terminate_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's workers now (Ctrl-C, SIGTERM, an error in the parent) without waiting for their work."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def run_isolated(fn: Callable[..., Any], args: tuple = (), *, threads: int | None = None, timeout: float | None = None) -> Any:
    """``fn(*args)`` in a freshly spawned process (a clean allocator, thread pool and peak RSS for a measurement).

    Raises :class:`TimeoutError` after ``timeout`` seconds (None: no limit), the process killed.
    """
    from concurrent.futures import TimeoutError as FutureTimeout

    pool = spawn_pool(1, threads=threads, context=SPAWN)
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
