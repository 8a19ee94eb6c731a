"""``bench tune``, the driver: prepare the data and the search, run the workers, mirror into MLflow and
export ``trials.csv``, ``best.json`` and ``importances.csv`` (what ``bench run`` and ``bench report`` read).

The search itself — Optuna plumbing, one trial, the worker loop — is :mod:`bench.tuning`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.executors import default_threads
from bench.procs import set_threads, spawn_process, start_workers
from bench.search import BEST_FILE, IMPORTANCE_FILE, INNER_FILE, SEARCH_FILE, TRIALS_FILE, Search, make_search, tune_dir
from bench.splits import inner_splits
from bench.store import splits_file, write_json_atomic
from bench.tracking import Ending
from bench.tuning import (
    DEFAULT_GRACE,
    ERROR_ATTR,
    SURPLUS,
    default_storage,
    make_storage,
    open_fold_study,
    pool_worker,
    quiet_optuna,
    trial_counts,
    work,
)

__all__ = ["run_search", "SearchSummary", "export_results", "trial_rows"]

log = logging.getLogger(__name__)


def trial_rows(search: Search, storage) -> list[dict[str, Any]]:
    """One row per trial of every outer fold (the surplus ones excluded)."""
    rows = []
    for fold in range(search.folds):
        study = open_fold_study(search, storage, fold)
        for t in study.get_trials(deepcopy=False):
            if t.user_attrs.get(SURPLUS):
                continue
            last_step = max(t.intermediate_values) if t.intermediate_values else None
            row = {"fold": fold, "trial": t.number, "state": t.state.name, "value": t.value,
                   "last_step": last_step, "last_value": t.intermediate_values.get(last_step) if last_step else None,
                   "defaults": bool(t.user_attrs.get("bench.defaults")), "seconds": t.user_attrs.get("seconds"),
                   "error": t.user_attrs.get(ERROR_ATTR, ""),
                   "retry_of": t.system_attrs.get("failed_trial", t.user_attrs.get("bench.retry_of"))}
            row.update({f"w_{k}": v for k, v in t.params.items()})
            rows.append(row)
    return rows


def export_results(search: Search, storage, directory: Path) -> dict[str, Any]:
    """Write ``trials.csv``, ``best.json`` and ``importances.csv``; returns the best-weights record."""
    import pandas as pd

    optuna = quiet_optuna()
    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(trial_rows(search, storage)).to_csv(directory / TRIALS_FILE, index=False)
    folds: dict[str, Any] = {}
    importance_rows = []
    for fold in range(search.folds):
        study = open_fold_study(search, storage, fold)
        counts = trial_counts(study)
        complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        entry: dict[str, Any] = {"finished": counts["finished"], "complete": counts["complete"], "pruned": counts["pruned"],
                                 "failed": counts["failed"], "done": counts["finished"] >= search.trials}
        defaults = [t for t in complete if t.user_attrs.get("bench.defaults")]
        entry["defaults_value"] = defaults[0].value if defaults else None
        if complete:
            best = study.best_trial
            entry.update(best_trial=best.number, value=best.value, params=dict(best.params),
                         weights=search.weights(best.params), inner_metrics=best.user_attrs.get("inner_metrics", []))
        if len(complete) >= 2 and len(search.space) > 1:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            try:
                importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
            except (RuntimeError, ValueError) as exc:  # e.g. every complete trial has the same value
                log.info("fold %d: no importances: %s", fold, exc)
                importances = {}
            importance_rows += [{"fold": fold, "weight": k, "importance": v} for k, v in importances.items()]
        folds[str(fold)] = entry
    pd.DataFrame(importance_rows, columns=["fold", "weight", "importance"]).to_csv(directory / IMPORTANCE_FILE, index=False)
    record = {"study": search.study, "arm": search.arm, "method": search.method, "search_hash": search.hash,
              "objective": list(search.objective), "direction": search.direction, "trials": search.trials,
              "inner_folds": search.inner_folds, "pruner": search.pruner, "space": {k: list(v) for k, v in search.space.items()},
              "log": search.log, "defaults": dict(search.defaults), "profile": search.profile["name"], "folds": folds}
    write_json_atomic(directory / BEST_FILE, record)
    return record


@dataclass
class SearchSummary:
    search: Search
    record: dict[str, Any]
    ran: int
    seconds: float
    directory: Path


def _mirror(tracker, search: Search, storage) -> None:
    """Log every finished trial not yet in MLflow (idempotent); nothing once the mirror has failed."""
    if tracker is None or tracker.failed:
        return
    for fold in range(search.folds):
        study = open_fold_study(search, storage, fold)
        for t in study.get_trials(deepcopy=False):
            if not t.user_attrs.get(SURPLUS):
                tracker.log_trial(fold, t, search.weights(t.params))


@dataclass
class _Prepared:
    search: Search
    storage: Any
    url: str
    studies: list
    directory: Path

    def finished(self) -> int:
        """Finished trials counted against the budget, over every outer fold."""
        return sum(min(trial_counts(s)["finished"], self.search.trials) for s in self.studies)


def _prepare(study, profile, runs_root: Path, *, trials: int | None, storage_url: str | None, grace: int, console) -> _Prepared:
    """Step 1: the data, the outer splits, the resolved search and its inner splits on disk, the storage."""
    from bench.orchestrate import prepare
    from bench.splits import load_or_create_splits

    data = prepare(study, profile, console)
    splits = load_or_create_splits(splits_file(runs_root, study.name), list(data.cases), study.folds,
                                   study.split_seed, data.fingerprint, study.repeats)
    search = make_search(study, profile, data, splits, runs_root, trials=trials)
    directory = tune_dir(runs_root, study.name)
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / SEARCH_FILE, search.to_json())
    inner = {str(k): inner_splits(splits, k, list(data.cases), search.inner_folds)[0].to_json() for k in range(search.folds)}
    write_json_atomic(directory / INNER_FILE, inner)
    url = storage_url or default_storage(runs_root, study.name)
    storage = make_storage(url, grace)
    return _Prepared(search, storage, url, [open_fold_study(search, storage, k) for k in range(search.folds)], directory)


def _announce(study, profile, p: _Prepared, console) -> None:
    """Step 2: what is searched, how, and how far it got."""
    search = p.search
    console.print(f"[bold]{study.name}[/bold] — search of {search.method} ({search.arm}) weights "
                  f"{', '.join(f'{k} ∈ [{lo:g}, {hi:g}]' for k, (lo, hi) in search.space.items())}"
                  f"{' log-uniform' if search.log else ''}; objective mean({', '.join(search.objective)}) "
                  f"({search.direction}), {search.inner_folds} inner folds, {search.pruner} pruner")
    console.print(f"profile {profile.name} ({profile.size}³, {profile.epochs} epochs, width {profile.width}); "
                  f"{search.folds} outer folds × {search.trials} trials: {p.finished()} of {search.folds * search.trials} "
                  f"finished; search {search.hash}; storage {p.url}")


def _tracker(study, runs_root: Path, tracking_uri: str | None, p: _Prepared, console):
    """Step 3: the MLflow mirror of the search (guarded: an MLflow error is a warning, never a stop)."""
    from bench.spec import code_version
    from bench.tracking import Guarded, SearchTracker, default_tracking_uri

    params = {"search": {k: v for k, v in p.search.to_json().items() if k not in ("manifest", "cache_dir", "splits_path")},
              "storage": p.url, "code_version": code_version()}
    tracker = Guarded(lambda: SearchTracker(tracking_uri or default_tracking_uri(runs_root), study.name, runs_root,
                                            search_hash=p.search.hash, params=params),
                      warn=lambda text: console.print(f"[yellow]warning:[/yellow] {text}"),
                      catch_up=f"run `bench tune --study {study.name}` again (it mirrors every finished trial and trains none twice)")
    _mirror(tracker, p.search, p.storage)
    return tracker


RESUME_HINT = ("rerun the same command to resume: a dead worker's running trial is failed and re-queued after the "
               "grace period")


def _run_workers(p: _Prepared, *, jobs: int, threads: int, grace: int, refresh: Callable[[], None], on_epoch) -> None:
    """Step 4: one worker in this process, or ``jobs`` independent processes (one dying, e.g. killed for
    memory, leaves the others working) while this one refreshes the progress and the mirror."""
    if jobs <= 1:
        set_threads(threads)
        work(p.search.to_json(), p.url, grace=grace, on_trial=lambda fold, trial: refresh(), on_epoch=on_epoch)
        return
    workers = []
    try:
        for _ in range(jobs):
            workers.append(spawn_process(pool_worker, (p.search.to_json(), p.url, grace), threads=threads))
        while any(w.is_alive() for w in workers):
            time.sleep(2.0)
            refresh()
    except BaseException:
        for process in workers:
            process.terminate()
        raise
    codes = [w.exitcode for w in workers if w.exitcode]
    if codes and all(code in (130, -2) for code in codes):  # Ctrl-C reached the workers first
        raise KeyboardInterrupt
    dead = [f"worker {i} exited with status {w.exitcode}" for i, w in enumerate(workers) if w.exitcode]
    if dead:
        raise BenchError(f"{'; '.join(dead)} (its error is printed above); {RESUME_HINT}")


def _run_slurm_workers(p: _Prepared, *, jobs: int, grace: int, refresh: Callable[[], None], slurm, console,
                       name: str) -> None:
    """Step 4 on SLURM: ``jobs`` workers as one job array on the search's (server) storage, waited for."""
    from bench.slurm import POLL_S, submit_workers

    tasks = submit_workers(p.search.to_json(), p.url, grace, count=jobs, folder=p.directory / "slurm", options=slurm,
                           name=name)
    console.print(f"submitted SLURM array job {str(tasks[0].job_id).split('_')[0]}: {len(tasks)} tuning worker(s)")
    while not all(task.done() for task in tasks):
        time.sleep(POLL_S)
        refresh()
    dead = []
    for i, task in enumerate(tasks):
        try:
            task.result()
        except Exception as exc:  # noqa: BLE001 - a task that failed, was cancelled or ran out of time
            dead.append(f"worker {i} (SLURM task {task.job_id}) ended {task.state}: {str(exc).strip()[-300:]}")
    if dead:
        raise BenchError(f"{'; '.join(dead)}; {RESUME_HINT}")


def run_search(study, *, profile_name: str | None, runs_root: Path, jobs: int = 1, threads: int | None = None,
               storage_url: str | None = None, tracking_uri: str | None = None, use_mlflow: bool = True,
               trials: int | None = None, grace: int = DEFAULT_GRACE, console=None, slurm=None) -> SearchSummary:
    """Prepare, announce, open the mirror, run the workers (see :func:`bench.tuning.work`; ``jobs`` SLURM tasks
    when ``slurm`` holds :class:`bench.slurm.SlurmOptions`), then export the results and mark the mirror's
    search run FINISHED, KILLED or FAILED."""
    from rich.console import Console

    from bench.progress import TrialProgress

    console = console or Console(stderr=True)
    start = time.perf_counter()
    profile = study.resolve_profile(profile_name)
    p = _prepare(study, profile, runs_root, trials=trials, storage_url=storage_url, grace=grace, console=console)
    _announce(study, profile, p, console)
    done_before = p.finished()
    if slurm is None and jobs > 1 and done_before < p.search.folds * p.search.trials:
        start_workers()  # the fork server imports while the MLflow mirror opens
    tracker = _tracker(study, runs_root, tracking_uri, p, console) if use_mlflow else None
    exported: dict[str, Any] = {}

    def on_end(status: str) -> None:  # the results and the mirror are written however the search ends
        exported["record"] = record = export_results(p.search, p.storage, p.directory)
        if tracker:
            _mirror(tracker, p.search, p.storage)
            tracker.tag_best({int(k): v["best_trial"] for k, v in record["folds"].items() if "best_trial" in v})
            tracker.log_best(record)
            tracker.finish(status)

    with Ending(on_end):
        with TrialProgress(console, p.search.folds * p.search.trials, done_before, f"{study.name}: trials") as bars:
            def refresh() -> None:
                bars.update(p.finished(), _best_text(p.search, p.studies))
                _mirror(tracker, p.search, p.storage)

            if slurm is None:
                _run_workers(p, jobs=jobs, threads=threads or default_threads(jobs), grace=grace, refresh=refresh,
                             on_epoch=bars.epoch)
            else:
                _run_slurm_workers(p, jobs=jobs, grace=grace, refresh=refresh, slurm=slurm, console=console,
                                   name=f"bench-tune-{study.name}")
            refresh()
    return SearchSummary(p.search, exported["record"], p.finished() - done_before, time.perf_counter() - start, p.directory)


def _best_text(search: Search, studies) -> str:
    best = []
    for study in studies:
        complete = [t.value for t in study.get_trials(deepcopy=False, states=None) if t.state.name == "COMPLETE"]
        if complete:
            best.append(max(complete) if search.direction == "maximize" else min(complete))
    return f"best per fold: {', '.join(f'{v:.3f}' for v in best)}" if best else ""
