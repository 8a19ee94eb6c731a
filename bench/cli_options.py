"""What every ``bench`` command module shares: the results-store and profile options and a stderr console."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["RUNS_OPTION", "PROFILE_OPTION", "console", "slurm_options", "slurm_settings"]

RUNS_OPTION = click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
                           show_default=True, help="Root of the results store.")
PROFILE_OPTION = click.option("--profile", "-p", default=None, help="smoke | cpu | paper (default: the study's).")


def console():
    """A rich console on stderr (progress bars and messages; results go to stdout)."""
    from rich.console import Console

    return Console(stderr=True)


def slurm_options(command):
    """``--executor`` and the SLURM options of ``bench run`` and ``bench tune`` (docs/cluster.md)."""
    options = [
        click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
                     help="local: processes on this machine; slurm: one SLURM job array (submitit)."),
        click.option("--partition", default=None, help="SLURM partition (default: the cluster's)."),
        click.option("--time", "time_min", type=click.IntRange(min=1), default=60, show_default=True,
                     help="SLURM time limit per task, in minutes."),
        click.option("--gpus-per-unit", type=click.IntRange(min=0), default=0, show_default=True),
        click.option("--cpus-per-unit", type=click.IntRange(min=1), default=1, show_default=True,
                     help="CPUs per SLURM task (its torch threads)."),
        click.option("--mem", default=None, help="Memory per SLURM task, as sbatch takes it (e.g. 16G)."),
        click.option("--max-parallel", type=click.IntRange(min=1), default=None,
                     help="At most this many tasks of the array at once (the array throttle)."),
        click.option("--slurm-arg", "slurm_args", multiple=True, metavar="KEY=VALUE",
                     help="Any other sbatch option, e.g. --slurm-arg account=lab --slurm-arg qos=short (repeatable)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def slurm_settings(executor: str, partition, time_min, gpus_per_unit, cpus_per_unit, mem, max_parallel, slurm_args):
    """The :class:`bench.slurm.SlurmOptions` of the command line, or None for the local executor."""
    if executor != "slurm":
        return None
    from bench.slurm import SlurmOptions

    return SlurmOptions(partition=partition, time_min=time_min, gpus_per_unit=gpus_per_unit, cpus_per_unit=cpus_per_unit,
                        mem=mem, max_parallel=max_parallel, extra=SlurmOptions.parse_extra(slurm_args))
