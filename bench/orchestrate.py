"""``bench run`` end to end: data → splits → plan − done → execute → MLflow mirror → summary."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from bench.study_types import Study

__all__ = ["RunSummary", "run_study", "prepare"]


@dataclass
class RunSummary:
    planned: int = 0
    skipped: int = 0
    trained: int = 0
    elsewhere: int = 0  # units another invocation was training (claimed) or finished meanwhile
    submitted: int = 0  # units handed to SLURM by a detached invocation
    failed: list[tuple[str, str, Path]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def prepare(study: Study, profile, console: Console):
    """Generate (first use) and preprocess the study's dataset, with progress bars."""
    from bench.data import prepare_dataset
    from bench.progress import counter_bar

    gen, _ = counter_bar(console, f"generating the {study.dataset.name} cohort")
    pre, _ = counter_bar(console, f"preprocessing to {profile.size}³")
    return prepare_dataset(study.dataset.name, study.dataset.options, profile, generate_progress=gen, preprocess_progress=pre)


def _train_pending(plan, summary: RunSummary, tracker, console: Console, *, jobs: int, threads: int | None, slurm,
                   detach: bool) -> None:
    """Train the plan's pending units (locally or on SLURM) with progress bars; each finished unit is mirrored."""
    from bench.executors import default_threads, execute
    from bench.progress import UnitProgress

    with UnitProgress(console, len(plan.pending), f"{plan.study.name}: units") as bars:
        def on_result(unit, result):
            if result["status"] == "elsewhere":  # claimed by another invocation after this one planned
                summary.elsewhere += 1
                bars.unit_finished(False)
                return
            failed = result["status"] != "done"
            if failed:
                summary.failed.append((unit.spec.key, result.get("error", "?"), unit.directory))
            else:
                summary.trained += 1
                if tracker:
                    tracker.log_unit(unit.directory)
            bars.unit_finished(failed)

        def on_event(unit, event):
            bars.event(unit.spec.key, event)

        if slurm is None:
            execute(plan.pending, jobs=jobs, threads=threads or default_threads(jobs), on_event=on_event,
                    on_result=on_result)
        else:
            summary.submitted = _on_slurm(plan, slurm, detach, console, on_event, on_result)


def _on_slurm(plan, slurm, detach: bool, console: Console, on_event, on_result) -> int:
    """Submit the pending units as one job array; wait for it unless ``detach`` (then: how many were submitted)."""
    from bench.slurm import submit_units, wait_units

    jobs = submit_units(plan.pending, plan.study_root / "slurm", slurm, name=f"bench-{plan.study.name}")
    console.print(f"submitted SLURM array job {str(jobs[0].job_id).split('_')[0]}: {len(jobs)} task(s)")
    if detach:
        return len(jobs)
    wait_units(plan.pending, jobs, on_result, on_event)
    return 0


def run_study(
    study: Study,
    *,
    profile_name: str | None,
    runs_root: Path,
    jobs: int = 1,
    threads: int | None = None,
    tracking_uri: str | None = None,
    use_mlflow: bool = True,
    arms: Sequence[str] | None = None,
    console: Console | None = None,
    slurm=None,
    detach: bool = False,
) -> RunSummary:
    """Plan the study, train what is pending (locally with ``jobs`` processes, or as a SLURM job array when
    ``slurm`` holds :class:`bench.slurm.SlurmOptions`), mirror finished units into MLflow."""
    from bench.runner import make_plan, tidy_pending
    from bench.tasks import get_task

    console = console or Console(stderr=True)
    start = time.perf_counter()
    profile = study.resolve_profile(profile_name)
    data = prepare(study, profile, console)
    plan = make_plan(study, profile, data, runs_root, arms)
    problems = [p for u in {u.spec.method: u for u in plan.units}.values()
                for p in get_task(u.spec.kind).data_problems(u.spec.method, has_masks=data.has_masks, has_labels=data.has_labels)]
    if problems:
        from bench.errors import ConfigError

        raise ConfigError(f"study '{study.name}': " + "; ".join(problems))
    summary = RunSummary(planned=len(plan.units), skipped=len(plan.done))
    console.print(f"[bold]{study.name}[/bold] — {study.title}")
    console.print(f"profile {profile.name} ({profile.size}³, {profile.epochs} epochs, width {profile.width}), "
                  f"{len(data.cases)} scans, {study.folds} folds, split {plan.splits.hash}, "
                  f"{len(plan.units)} units: {len(plan.done)} done, {len(plan.pending)} to run"
                  + (f", {len(plan.running)} being trained by another invocation" if plan.running else ""))
    summary.elsewhere = len(plan.running)
    for message in tidy_pending(plan):
        console.print(f"[yellow]{message}[/yellow]")
    if plan.pending and jobs > 1 and slurm is None:
        from bench.procs import start_workers

        start_workers()  # the workers' fork server imports torch and the methods while the MLflow mirror opens
    tracker = None
    if use_mlflow:
        from bench.spec import code_version
        from bench.tracking import Guarded, Tracker, default_tracking_uri

        uri = tracking_uri or default_tracking_uri(runs_root)
        tracker = Guarded(lambda: Tracker(
            uri, study.name, runs_root, parent_name=f"{study.name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
            parent_params={"study": study.name, "profile": profile.as_dict(), "folds": study.folds,
                           "seeds": list(study.seeds), "split_hash": plan.splits.hash, "data_fingerprint": data.fingerprint,
                           "code_version": code_version(), "jobs": jobs}),
            warn=lambda text: console.print(f"[yellow]warning:[/yellow] {text}"),
            catch_up=f"`bench sync {study.name} --runs-dir {runs_root}" + (f" --tracking-uri {uri}`" if tracking_uri else "`"))
        tracker.log_units(u.directory for u in plan.done)  # idempotent: units finished by an earlier invocation

    from bench.tracking import Ending

    with Ending(lambda status: tracker.finish(status) if tracker else None) as end:
        if not plan.pending and not plan.running:
            console.print(f"all {len(plan.units)} units are already done with the same spec; nothing to train")
        elif not plan.pending:
            console.print("every unit is done or being trained by another invocation; nothing to train here")
        else:
            _train_pending(plan, summary, tracker, console, jobs=jobs, threads=threads, slurm=slurm, detach=detach)
            end.status = "FAILED" if summary.failed else "FINISHED"
    summary.seconds = time.perf_counter() - start
    return summary
