"""The ``bench`` command line. Heavy imports live inside the commands so ``bench --help`` is instant."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import click

from bench.cli_options import PROFILE_OPTION, RUNS_OPTION, slurm_options, slurm_settings
from bench.cli_options import console as _console
from bench.errors import BenchError, Terminated


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """Benchmark suite for joint lesion segmentation + MS/NMOSD classification in 3D brain MRI.

    \b
    Examples:
      bench ls studies
      bench check smoke --profile smoke
      bench run --study smoke --profile smoke
      bench run --study smoke --profile cpu --jobs 2
      bench tune --study tune_joint_beta --profile cpu --jobs 2
      bench report smoke
      bench ui
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _register_commands() -> None:
    from bench.cli_data import data_group
    from bench.cli_inspect import calibrate, status

    for command in (data_group, status, calibrate):
        cli.add_command(command)


_register_commands()


@cli.group(name="ls")
def ls_group() -> None:
    """List registered methods or available studies."""


@ls_group.command("methods")
@PROFILE_OPTION
def ls_methods(profile: str | None) -> None:
    """Methods: name, task kind and parameter count at a profile (default cpu).

    \b
    Example: bench ls methods --profile paper
    """
    from rich.table import Table

    from bench.profiles import get_profile
    from bench.registry import METHODS, load_plugins

    load_plugins()
    prof = get_profile(profile or "cpu")
    table = Table(title=f"methods (parameters at profile '{prof.name}': {prof.size}³, width {prof.width})")
    for col in ("method", "kind", "parameters", "loss weights", "summary"):
        table.add_column(col)
    for name in METHODS:
        spec = METHODS.get(name)
        model = spec.build(in_channels=1, num_classes=2, spatial_size=prof.size, width=prof.width)
        n = sum(p.numel() for p in model.parameters())
        weights = ", ".join(f"{k}={v:g}" for k, v in spec.weights.items())
        table.add_row(name, spec.kind, f"{n / 1e6:.2f} M", weights, spec.summary)
    from rich.console import Console

    Console().print(table)


@ls_group.command("studies")
def ls_studies() -> None:
    """Studies: name, title and the paper table each reproduces."""
    from rich.console import Console
    from rich.table import Table

    from bench.study import load_study, study_paths

    table = Table(title="studies")
    for col in ("study", "title", "reproduces", "arms", "tunes"):
        table.add_column(col)
    for name in study_paths():
        study = load_study(name, check_methods=False)
        tunes = f"{study.tune.arm}: {', '.join(study.tune.weights)}" if study.tune else ""
        table.add_row(name, study.title, study.reproduces, str(len(study.arms)), tunes)
    Console().print(table)


@cli.command()
@click.argument("study")
@PROFILE_OPTION
def check(study: str, profile: str | None) -> None:
    """Build every arm of STUDY at a profile without training and report every problem.

    \b
    Example: bench check smoke --profile paper
    """
    from bench.checks import check_study

    problems = check_study(study, profile, _console())
    if problems:
        raise BenchError(f"{len(problems)} problem(s) in study '{study}': " + " | ".join(problems))


@cli.command()
@click.option("--study", "-s", required=True, help="Study name (studies/<name>.yaml) or a YAML path.")
@PROFILE_OPTION
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True, help="Units run at once.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch threads per unit (default: cores / jobs).")
@click.option("--arms", default=None, help="Comma-separated subset of arms.")
@RUNS_OPTION
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite under --runs-dir).")
@click.option("--no-mlflow", is_flag=True, help="Do not mirror runs into MLflow (files are still written).")
@slurm_options
@click.option("--detach", is_flag=True, help="With --executor slurm: submit and return (bench status, bench sync later).")
def run(study: str, profile: str | None, jobs: int, threads: int | None, arms: str | None, runs_dir: Path,
        tracking_uri: str | None, no_mlflow: bool, executor: str, detach: bool, **slurm) -> None:
    """Train and evaluate every arm × fold × seed of a study; skips units already done.

    \b
    Rerunning after a crash or Ctrl-C trains only the missing units; a unit whose spec changed is
    moved to runs/<study>/.stale/ and rerun. Units another invocation is training are skipped.
    Examples: bench run --study smoke --profile smoke
              bench run --study comparison_seg --profile paper --executor slurm --gpus-per-unit 1 --time 600
    """
    from bench.orchestrate import run_study
    from bench.study import load_study

    if detach and executor != "slurm":
        raise click.UsageError("--detach needs --executor slurm")
    console = _console()
    loaded = load_study(study)
    summary = run_study(loaded, profile_name=profile, runs_root=runs_dir, jobs=jobs, threads=threads,
                        tracking_uri=tracking_uri, use_mlflow=not no_mlflow,
                        arms=[a.strip() for a in arms.split(",")] if arms else None, console=console,
                        slurm=slurm_settings(executor, **slurm), detach=detach)
    if summary.submitted:
        console.print(f"submitted {summary.submitted} unit(s) to SLURM; `bench status {loaded.name}` shows them, "
                      f"`bench sync {loaded.name}` mirrors the finished ones into MLflow")
        return
    console.print(f"{summary.trained} unit(s) trained, {summary.skipped} already done, {len(summary.failed)} failed "
                  f"in {summary.seconds:.1f} s; results in {runs_dir / loaded.name}")
    if summary.elsewhere:
        console.print(f"{summary.elsewhere} unit(s) were trained by another invocation of this study; "
                      f"`bench status {loaded.name}` shows where they stand")
    for key, error, directory in summary.failed:
        console.print(f"[red]failed[/red] {key}: {error} (traceback in {directory / 'FAILED.json'})")
    if summary.failed:
        sys.exit(1)


@cli.command()
@click.option("--study", "-s", required=True, help="Study with a `tune:` section (name or YAML path).")
@PROFILE_OPTION
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local worker processes sharing the storage (one trial each at a time).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch threads per worker (default: cores / jobs).")
@click.option("--storage", "storage_url", default=None,
              help="Optuna RDB storage URL shared by workers on several machines (default: sqlite under --runs-dir).")
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="Finished trials per outer fold (default: the study's tune.trials); raising it continues the search.")
@click.option("--grace-period", "grace", type=click.IntRange(min=2), default=60, show_default=True,
              help="Seconds without a heartbeat after which a running trial counts as dead, is failed and re-queued.")
@RUNS_OPTION
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite under --runs-dir).")
@click.option("--no-mlflow", is_flag=True, help="Do not mirror trials into MLflow.")
@slurm_options
def tune(study: str, profile: str | None, jobs: int, threads: int | None, storage_url: str | None, trials: int | None,
         grace: int, runs_dir: Path, tracking_uri: str | None, no_mlflow: bool, executor: str, **slurm) -> None:
    """Search the loss weights of a study's tuned arm, nested in its outer folds (Optuna).

    \b
    For each outer fold, trials train on inner folds of that fold's training set only and are pruned on
    the inner validation objective. Best weights per outer fold go to runs/<study>/tune/best.json, which
    `bench run` uses for the arm that says `weights: tuned`. Interrupt and rerun to resume; several
    workers (--jobs, or one `bench tune --storage URL` per machine, or --jobs SLURM tasks with
    --executor slurm) share one search.
    Examples: bench tune --study tune_joint_beta --profile cpu --jobs 2
              bench tune --study tune_joint_beta --storage postgresql://user@db/optuna
              bench tune --study tune_joint_beta --executor slurm --jobs 8 --storage postgresql://user@db/optuna
    """
    from bench.study import load_study
    from bench.tune_run import run_search

    console = _console()
    loaded = load_study(study)
    summary = run_search(loaded, profile_name=profile, runs_root=runs_dir, jobs=jobs, threads=threads,
                         storage_url=storage_url, tracking_uri=tracking_uri, use_mlflow=not no_mlflow, trials=trials,
                         grace=grace, console=console, slurm=slurm_settings(executor, **slurm))
    record = summary.record
    console.print(f"{summary.ran} trial(s) run in {summary.seconds:.1f} s; results in {summary.directory}")
    searched = list(summary.search.space)
    for fold, entry in record["folds"].items():
        weights = ", ".join(f"{k}={entry['weights'][k]:.3g}" for k in searched) if "weights" in entry else "—"
        value = f"{entry['value']:.4f}" if "value" in entry else "—"
        default = f"{entry['defaults_value']:.4f}" if entry.get("defaults_value") is not None else "—"
        console.print(f"fold {fold}: {entry['finished']}/{record['trials']} finished ({entry['pruned']} pruned, "
                      f"{entry['failed']} failed); best {weights}: objective {value} (paper's weights: {default})")
    if not all(entry["done"] for entry in record["folds"].values()):
        console.print("[yellow]the search is unfinished; rerun the same command to continue[/yellow]")
        sys.exit(1)


@cli.command()
@click.option("--study", "-s", default=None, help="Study whose arms are measured.")
@click.option("--method", "-m", "methods", multiple=True,
              help="Measure this registered method instead of a study (repeatable; 'all': every method).")
@PROFILE_OPTION
@click.option("--steps", type=click.IntRange(min=1), default=3, show_default=True, help="Timed repetitions after a warm-up.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Torch threads (CPU).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True)
@click.option("--levers", is_flag=True,
              help="Measure the speed levers (bf16 autocast, torch.compile, augmentation, to-device) instead; "
                   "default methods: unet3d, joint_model, resnet34.")
@click.option("--lever-timeout", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="With --levers: seconds one method × lever may take (torch.compile included); past it the "
                   "lever is reported as timed out and the next one is measured.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --levers: measure every method × lever in this many fresh processes (rounds over all of "
                   "them) and report the median and range; one process's timing moves by tens of per cent.")
def perf(study: str | None, methods: tuple[str, ...], profile: str | None, steps: int, threads: int, out: Path,
         levers: bool, lever_timeout: float, repeats: int) -> None:
    """Measure parameters, FLOPs, training-step time, inference time and peak memory of every arm.

    \b
    Writes reports/<study>/efficiency_<profile>.md and .csv (with --method: reports/methods/);
    `bench report` includes a study's table. With --levers: reports/methods/levers_<profile>.md and .csv.
    Examples: bench perf --study smoke --profile cpu
              bench perf --method all --profile cpu
              bench perf --levers --profile cpu --steps 5 --repeats 3
    """
    import pandas as pd

    from bench.perf import efficiency_markdown, measure_arms, method_arms
    from bench.profiles import get_profile
    from bench.progress import counter_bar
    from bench.study import load_study

    if levers:
        _perf_levers(methods, profile, steps, threads, out, lever_timeout, repeats)
        return
    if repeats > 1:
        raise click.UsageError("--repeats applies to --levers only")
    if bool(study) == bool(methods):
        raise click.UsageError("give either --study NAME or --method NAME (repeatable), not both")
    if study:
        loaded = load_study(study)
        name, arms, prof = loaded.name, loaded.arms, loaded.resolve_profile(profile)
    else:
        name, arms, prof = "methods", method_arms(list(methods)), get_profile(profile or "cpu")
    update, _ = counter_bar(_console(), f"measuring {len(arms)} arm(s) at {prof.name}")
    rows = measure_arms(arms, prof, steps=steps, threads=threads, progress=update)
    frame = pd.DataFrame(rows)
    target = out / name
    target.mkdir(parents=True, exist_ok=True)
    frame.to_csv(target / f"efficiency_{prof.name}.csv", index=False)
    table = efficiency_markdown(rows, {a.name: a.label for a in arms}, prof, threads=threads, steps=steps)
    (target / f"efficiency_{prof.name}.md").write_text(table)
    click.echo(table, nl=False)
    if any("error" in r for r in rows):
        sys.exit(1)


def _perf_levers(methods: tuple[str, ...], profile: str | None, steps: int, threads: int, out: Path,
                 timeout: float, repeats: int) -> None:
    import pandas as pd

    from bench.levers import DEFAULT_LEVER_METHODS, LEVERS, levers_markdown, measure_levers
    from bench.perf import method_arms
    from bench.profiles import get_profile
    from bench.progress import counter_bar

    names = [a.method for a in method_arms(list(methods))] if methods else list(DEFAULT_LEVER_METHODS)
    prof = get_profile(profile or "cpu")
    update, _ = counter_bar(_console(), f"measuring {len(LEVERS)} levers × {len(names)} method(s) at {prof.name}"
                                        + (f", {repeats} rounds" if repeats > 1 else ""))
    rows, data = measure_levers(names, prof, steps=steps, threads=threads, progress=update, timeout=timeout,
                                repeats=repeats)
    target = out / "methods"
    target.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(target / f"levers_{prof.name}.csv", index=False)
    table = levers_markdown(rows, data, prof, threads=threads, steps=steps, repeats=repeats)
    (target / f"levers_{prof.name}.md").write_text(table)
    click.echo(table, nl=False)


@cli.command()
@click.argument("study", required=False)
@click.option("--all", "all_studies", is_flag=True, help="Rebuild the report of every study with runs.")
@RUNS_OPTION
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True)
def report(study: str | None, all_studies: bool, runs_dir: Path, out: Path) -> None:
    """Write reports/<study>/ (tables, ROC, report.md) from the run directories only.

    \b
    Example: bench report smoke
    """
    from bench.report import build_report
    from bench.store import splits_file
    from bench.study import load_study, study_paths

    if all_studies == bool(study):
        raise BenchError("give either a STUDY or --all")
    names = [s for s in study_paths() if splits_file(runs_dir, s).exists()] if all_studies else [study]
    for name in names:
        loaded = load_study(name, check_methods=False)
        _warn_corrupt(runs_dir / loaded.name)
        result = build_report(loaded, runs_dir, out)
        click.echo(f"{loaded.name}: wrote {len(result.files)} files to {result.directory}")


def _warn_corrupt(study_root: Path) -> None:
    """One warning per finished unit whose files no longer match its DONE.json (skipped, not a crash)."""
    from bench.store import corrupt_units

    for directory, problem in corrupt_units(study_root):
        click.echo(f"warning: skipping {directory}: {problem}; `bench run --study {study_root.name}` moves it to "
                   f"{study_root / '.corrupt'} and trains it again", err=True)


@cli.command()
@click.argument("study")
@RUNS_OPTION
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite under --runs-dir).")
def sync(study: str, runs_dir: Path, tracking_uri: str | None) -> None:
    """Mirror finished run directories of STUDY into MLflow (idempotent)."""
    from bench.store import done_units
    from bench.tracking import Tracker, default_tracking_uri

    _warn_corrupt(runs_dir / study)
    units = done_units(runs_dir / study)
    if not units:
        raise BenchError(f"no finished units under {runs_dir / study}")
    tracker = Tracker(tracking_uri or default_tracking_uri(runs_dir), study, runs_dir, parent_name=f"{study} sync",
                      parent_params={"study": study, "kind": "sync"})
    added = tracker.log_units(units)
    tracker.finish()
    click.echo(f"{study}: {added} unit(s) added to MLflow, {len(units) - added} already there")


@cli.command()
@RUNS_OPTION
@click.option("--port", default=5000, show_default=True)
@click.option("--tracking-uri", "--backend-store-uri", "tracking_uri", default=None,
              help="The MLflow backend store (default: sqlite under --runs-dir), e.g. postgresql://user@host/mlflow.")
def ui(runs_dir: Path, port: int, tracking_uri: str | None) -> None:
    """Serve the MLflow UI for the runs on http://127.0.0.1:PORT (docs/cluster.md for a team server)."""
    import subprocess

    from bench.tracking import default_tracking_uri

    uri = tracking_uri or default_tracking_uri(runs_dir)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    click.echo(f"MLflow UI for {uri} on http://127.0.0.1:{port} (Ctrl-C to stop)")
    mlflow = Path(sys.executable).with_name("mlflow")
    subprocess.run([str(mlflow), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)], env=env, check=False)


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main() -> None:
    """Entry point: user errors print one line (no traceback) and exit with status 2.

    SIGTERM (``kill``, a batch scheduler's stop) unwinds like Ctrl-C, so pool workers are stopped and
    the MLflow runs of this invocation are marked KILLED instead of being left RUNNING.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli(standalone_mode=False)
    except BenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (Terminated, click.exceptions.Abort) as exc:  # click turns KeyboardInterrupt (and Terminated) into Abort
        if isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated):
            click.echo("terminated; finished units are kept, rerun the same command to resume", err=True)
            sys.exit(143)
        click.echo("interrupted; finished units are kept, rerun the same command to resume", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted; finished units are kept, rerun the same command to resume", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
