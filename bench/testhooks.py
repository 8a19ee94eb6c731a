"""Test-only pause points, so that kill tests kill at a state and never at a time.

With ``BENCH_TEST_HOLD=<point>`` and ``BENCH_TEST_HOLD_MARKER=<file>`` in the environment, the process that reaches
:func:`hold` with that point writes the marker file (its pid) and blocks until it is killed; a test waits for the
marker, then kills. With ``BENCH_TEST_RELEASE=<file>`` as well, the process goes on once that file exists (a test
that changes the world at that state, e.g. locks the tracking database, then lets the run continue). Without
them — always, outside the tests — :func:`hold` returns at once. :func:`trace` appends a line to a file a
test names (``BENCH_TEST_TRACE``), e.g. each unit a process starts to train.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["hold", "trace", "HOLD_ENV", "MARKER_ENV", "RELEASE_ENV", "TRACE_ENV"]

HOLD_ENV, MARKER_ENV, RELEASE_ENV = "BENCH_TEST_HOLD", "BENCH_TEST_HOLD_MARKER", "BENCH_TEST_RELEASE"
TRACE_ENV = "BENCH_TEST_TRACE"


def trace(line: str) -> None:
    """Append ``line`` to the file ``$BENCH_TEST_TRACE`` names (one ``write`` on an O_APPEND file, so lines of
    concurrent processes never interleave); nothing without it. Tests count what happened, e.g. trainings."""
    path = os.environ.get(TRACE_ENV)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{line}\n".encode())
        finally:
            os.close(fd)


def hold(point: str) -> None:
    """Block at ``point`` when a test asked for it, until killed or released (see the module docstring)."""
    if os.environ.get(HOLD_ENV) != point or not os.environ.get(MARKER_ENV):
        return
    marker = Path(os.environ[MARKER_ENV])
    marker.with_suffix(".tmp").write_text(str(os.getpid()))
    marker.with_suffix(".tmp").replace(marker)  # the marker appears whole
    release = os.environ.get(RELEASE_ENV)
    while not (release and Path(release).exists()):
        time.sleep(0.05 if release else 60)
