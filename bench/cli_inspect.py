"""``bench status`` (where a study's units stand) and ``bench calibrate`` (the tests' error rates),
registered on :mod:`bench.cli`. Heavy imports live inside the commands so ``bench --help`` stays instant."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli_options import PROFILE_OPTION, RUNS_OPTION
from bench.cli_options import console as _console

__all__ = ["status", "calibrate"]


@click.command()
@click.option("--replicates", type=click.IntRange(min=50), default=1000, show_default=True,
              help="Simulated studies per design and null (and per planted effect).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulation.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: the usable cores).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True)
def calibrate(replicates: int, seed: int, jobs: int | None, out: Path) -> None:
    """Measure the type-I error and power of every significance test on the suite's design.

    \b
    Simulates the default cohort's patients, folds, arms, seeds and repeats (and a longitudinal cohort)
    under a true null and planted effects, and writes reports/calibration/ (calibration.md, type1.md
    and .csv, power.csv/.png/.pdf, model.json). About 4 min at 1,000 replicates on 2 cores.
    Example: bench calibrate --replicates 1000
    """
    import time

    from bench.calibrate import calibrate as run_calibration
    from bench.calibrate import noise_record
    from bench.procs import usable_cores
    from bench.progress import counter_bar
    from bench.report.calibration import write_calibration

    workers = jobs or usable_cores()
    update, _ = counter_bar(_console(), f"simulating {replicates:,} studies per design × null × effect")
    start = time.perf_counter()
    rows = run_calibration(replicates, workers=workers, seed=seed, progress=update)
    files = write_calibration(rows, out / "calibration", replicates=replicates, seed=seed,
                              seconds=time.perf_counter() - start, workers=workers, model=noise_record())
    click.echo((out / "calibration" / "calibration.md").read_text())
    click.echo(f"wrote {len(files)} files under {out / 'calibration'}")


@click.command()
@click.argument("study")
@PROFILE_OPTION
@RUNS_OPTION
def status(study: str, profile: str | None, runs_dir: Path) -> None:
    """Where a study's units stand: done, running (and where), failed, partial, missing, stale, corrupt.

    \b
    Read from the run directories (a running unit is one a live invocation has claimed).
    Example: bench status comparison_seg --profile cpu
    """
    from rich.console import Console
    from rich.table import Table

    from bench.claims import live_claim
    from bench.orchestrate import prepare
    from bench.runner import make_plan
    from bench.study import load_study

    loaded = load_study(study)
    resolved = loaded.resolve_profile(profile)
    console = _console()
    plan = make_plan(loaded, resolved, prepare(loaded, resolved, console), runs_dir)
    states = ("done", "running", "failed", "partial", "missing", "stale", "corrupt")
    table = Table(title=f"{loaded.name} at {resolved.name}: {len(plan.units)} units")
    for column in ("arm", *states):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for arm in loaded.arms:
        units = [u for u in plan.units if u.spec.arm == arm.name]
        table.add_row(arm.name, *(str(sum(u.status == s for u in units)) for s in states))
    Console(width=120).print(table)  # stdout; plain text when it is not a terminal
    for unit in plan.running:
        holder = live_claim(unit.directory) or {}
        where = f"SLURM task {holder['slurm_job']}, " if holder.get("slurm_job") else ""
        click.echo(f"running: {unit.spec.key} ({where}{holder.get('host', '?')}, pid {holder.get('pid', '?')})")
    _slurm_lines(plan.study_root / "slurm")


def _slurm_lines(folder: Path) -> None:
    """The SLURM arrays submitted for the study, each task's state from ``sacct``."""
    from collections import Counter

    from bench.slurm import job_states, recorded_tasks

    arrays = recorded_tasks(folder)
    states = job_states(list(arrays))
    for job, tasks in arrays.items():
        counts = Counter(states.get(f"{job}_{i}", "unknown to sacct") for i in range(len(tasks)))
        click.echo(f"SLURM array {job}: {len(tasks)} task(s): " + ", ".join(f"{n} {s}" for s, n in counts.most_common()))
