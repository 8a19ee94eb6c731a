"""Errors a user can fix. The CLI prints them on one line, without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["BenchError", "ConfigError", "DataError", "LeakageError", "Terminated", "did_you_mean"]


class BenchError(Exception):
    """Base class: the message names the file, the field, what was expected and what arrived."""


class ConfigError(BenchError):
    """A study file, a profile or a command-line option is wrong."""


class DataError(BenchError):
    """A dataset, a manifest row or an image file is wrong."""


class LeakageError(DataError):
    """A split would put one patient on both sides of a fold."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C (workers stopped, MLflow runs marked KILLED), exit status 143."""


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for close matches of ``word``, or an empty string."""
    matches = difflib.get_close_matches(str(word), sorted(options), n=3, cutoff=0.7)
    if not matches:
        return ""
    return " (did you mean " + " or ".join(f"'{m}'" for m in matches) + "?)"
