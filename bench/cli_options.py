"""What every ``bench`` command module shares: the results-store and profile options and a stderr console."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["RUNS_OPTION", "PROFILE_OPTION", "console"]

RUNS_OPTION = click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
                           show_default=True, help="Root of the results store.")
PROFILE_OPTION = click.option("--profile", "-p", default=None, help="smoke | cpu | paper (default: the study's).")


def console():
    """A rich console on stderr (progress bars and messages; results go to stdout)."""
    from rich.console import Console

    return Console(stderr=True)
