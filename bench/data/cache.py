"""Where generated and preprocessed data are cached, and the synthetic cohort's default difficulty.

A leaf module: :mod:`bench.data`, the anatomy and the generator all read these, and it imports none of them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "DEFAULT_DIFFICULTY"]

#: The synthetic cohort's default class overlap (docs/data.md: a logistic regression on lesion count, volume and
#: mean size reaches about 0.78 accuracy at this value).
DEFAULT_DIFFICULTY = 0.25


def cache_root() -> Path:
    """``$BENCH_CACHE``, else ``$XDG_CACHE_HOME/jointbench``, else ``~/.cache/jointbench``."""
    if os.environ.get("BENCH_CACHE"):
        return Path(os.environ["BENCH_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "jointbench"
