"""``bench tune``: nested, resumable, parallel Optuna search of a method's loss weights.

A study's ``tune:`` section names the arm (its method and ``model_args``), the weights and their
ranges (log-uniform by default), the objective (the mean of inner-validation metrics), the trial
budget, the inner folds and the pruner. For each **outer** fold of the study's ``splits.json`` one
Optuna study searches the weights on **inner folds of that outer fold's training set only**
(grouped by patient, stratified by label; :func:`inner_splits` refuses any inner set holding an
outer test patient), so the outer test fold is never seen. ``bench run`` then trains an arm that
says ``weights: tuned`` with the best weights of each outer fold (:func:`tuned_weights`).

A trial trains one model per inner fold, for the profile's epochs, with the harness's training
code (:func:`bench.unit.training_setup`, :func:`bench.loop.train`), and evaluates it on its inner
validation scans after every epoch. It reports the running estimate of its objective — the mean
of the final values of the inner folds done and the current fold's value — at step
``inner_fold × epochs + epoch``, the same step for every trial, which the median or
successive-halving pruner compares. The trial's value is the mean over inner folds of the
final-epoch objective (final-epoch weights are what the harness evaluates). Every trial of an
outer fold trains with the same seeds, so trials differ by their weights only.

Decisions (recorded in the README):
- The paper's fixed weights are enqueued as the first trial of every search, so the search's
  history holds the inner objective of the weights it tries to beat.
- TPE is seeded per trial by (sampler seed, outer fold, trial number) (:func:`_sampler`): one worker
  repeats a search exactly; concurrent workers never repeat each other's random draws.
- Steps count the epochs trained so far (from 1); ``warmup_epochs`` of them are never pruned.
- The budget counts finished (complete or pruned) trials per outer fold. A trial asked beyond the
  budget by a concurrent worker is marked failed with ``bench.surplus`` before it trains.
- Storage: SQLite under ``runs/<study>/tune/optuna.db`` by default, any SQLAlchemy URL with
  ``--storage``. Optuna's heartbeat (which marks a killed worker's running trials failed after a
  grace period and, through ``RetryHeartbeatStaleTrialCallback``, re-queues them with the same
  weights) is implemented for RDB storages only in Optuna 5, so the journal file backend is not
  offered. A trial interrupted by Ctrl-C is re-queued the same way, and one whose worker died before its
  first heartbeat is given one (:func:`adopt_silent_trials`) so that the same rule applies to it. On SQLite
  every transaction begins with ``BEGIN IMMEDIATE`` (:func:`_serialise_sqlite_transactions`), or two workers
  could take the same enqueued trial.
- The search's identity (:meth:`Search.hash`) covers everything that changes a trial's result except
  the budget: raising ``trials`` continues the same search; changing anything else starts a new one
  (the old Optuna studies stay in the storage, never mixed).

Files under ``runs/<study>/tune/``: ``search.json`` (the resolved search), ``inner_splits.json``,
``optuna.db``, and — written by every invocation (:mod:`bench.tune_run`, the driver) — ``trials.csv``,
``best.json`` and ``importances.csv``, which ``bench run`` and ``bench report`` read (never the Optuna storage).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError, ConfigError
from bench.profiles import Profile
from bench.search import (
    Search,
    make_search,
    tune_dir,
    tuned_weights,
)
from bench.splits import inner_splits
from bench.testhooks import hold

__all__ = ["Search", "make_search", "inner_splits", "make_storage", "open_fold_study", "work", "pool_worker", "trial_counts",
           "quiet_optuna", "default_storage", "tuned_weights", "tune_dir", "SURPLUS", "ERROR_ATTR", "DEFAULT_GRACE"]

log = logging.getLogger(__name__)

SURPLUS = "bench.surplus"  # user attr of a trial asked beyond the budget (failed before training)
ERROR_ATTR = "bench.error"  # user attr of a trial whose training failed (diverged, objective undefined)
DEFAULT_GRACE = 60  # seconds without a heartbeat after which a running trial counts as dead


# ---------------------------------------------------------------------------------------------------------------
# Optuna plumbing

def quiet_optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*heartbeat.*")
    return optuna


def default_storage(runs_root: Path, study: str) -> str:
    return f"sqlite:///{(tune_dir(runs_root, study) / 'optuna.db').resolve()}"


def make_storage(url: str, grace: int = DEFAULT_GRACE):
    """An RDB storage with Optuna's heartbeat: a running trial silent for ``grace`` s is failed and re-queued."""
    optuna = quiet_optuna()
    sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = {"engine_kwargs": {"connect_args": {"timeout": 120}}} if sqlite else {}
    try:
        storage = optuna.storages.RDBStorage(
            url, heartbeat_interval=max(1, grace // 4), grace_period=grace,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3), **kwargs)
    except Exception as exc:  # bad URL, missing driver, unreachable server
        raise ConfigError(f"--storage {url}: cannot open the Optuna storage: {type(exc).__name__}: {exc}") from None
    if sqlite:
        _serialise_sqlite_transactions(storage.engine)
    return storage


def _serialise_sqlite_transactions(engine) -> None:
    """Make every transaction on ``engine`` (an SQLite database) take the write lock when it begins.

    Optuna hands a waiting (enqueued) trial to exactly one worker by reading it with ``SELECT … FOR UPDATE`` and
    setting it RUNNING only if it is still WAITING. SQLite ignores ``FOR UPDATE``, and Python's sqlite3 driver
    starts a transaction only at the first write, so two workers can both read WAITING and both "take" the
    trial: both train it, and the second to finish fails with "Cannot tell a COMPLETE trial" (a fresh-clone
    test run caught it; Optuna issues #4002, #4621). ``BEGIN IMMEDIATE`` at the start of every transaction
    makes the read and the write one atomic step, as ``FOR UPDATE`` does on PostgreSQL or MySQL; the storage
    traffic of a search is a few small transactions per epoch, so serialising them costs nothing measurable.
    Connections opened before this call are closed (the pool is disposed) so that every later one follows it.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _driver_leaves_transactions_to_us(dbapi_connection, connection_record):  # noqa: ARG001 - SQLAlchemy's signature
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()


def adopt_silent_trials(study, after: float) -> list[int]:
    """Record a heartbeat for every running trial of ``study`` that has never recorded one and started more than
    ``after`` seconds ago; returns their numbers.

    Optuna records a trial's first heartbeat from a thread it starts just after asking the trial, and its stale
    check skips a running trial without any heartbeat. A worker killed between the two (the tuning kill soak
    caught a Ctrl-C landing there) left its trial RUNNING for good, and the other workers waited for it forever.
    A live worker records the first heartbeat within milliseconds, so a trial still silent ``after`` seconds (a
    heartbeat interval) after its start belongs to a dead worker: with one heartbeat it goes stale after the
    grace period and is failed and re-queued like any other dead worker's trial.
    """
    import datetime

    optuna = quiet_optuna()
    storage = getattr(study._storage, "_backend", study._storage)  # Optuna wraps an RDB storage in a cache
    engine = getattr(storage, "engine", None)
    if engine is None:
        return []
    now = datetime.datetime.now()  # Optuna stamps datetime_start with the local naive time
    candidates = {t._trial_id: t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                  if t.datetime_start is not None and (now - t.datetime_start).total_seconds() > after}
    if not candidates:
        return []
    from sqlalchemy import text

    with engine.connect() as connection:
        beating = {row[0] for row in connection.execute(text("SELECT trial_id FROM trial_heartbeats"))}
    adopted = []
    for trial_id, number in sorted(candidates.items()):
        if trial_id not in beating:
            try:
                storage.record_heartbeat(trial_id)
                adopted.append(number)
            except Exception as exc:  # noqa: BLE001 - another worker adopted it first: its heartbeat serves as well
                log.debug("heartbeat for silent trial %d not recorded: %s", number, exc)
    if adopted:
        log.warning("trial(s) %s of %s were left running without a heartbeat by a dead worker; they will be failed "
                    "and re-queued after the grace period", adopted, study.study_name)
    return adopted


def _sampler(search: Search, fold: int, number: int = 0):
    """TPE seeded by (sampler seed, outer fold, trial number).

    Set afresh for every trial (:func:`_objective`): a sampler seeded once per worker would draw the
    same "random" startup weights in every worker that shares the storage (measured: two local workers
    ran trials 1 and 3 with identical weights). Seeded by the trial number, the weights of trial n
    depend only on the seed, the fold, n and the trials finished before it, so one worker repeats a
    search exactly and concurrent workers never repeat each other's draws.
    """
    optuna = quiet_optuna()
    seed = (search.sampler_seed * 1_000_003 + fold * 10_007 + number) % 2**32
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.startup_trials)


def _pruner(search: Search):
    optuna = quiet_optuna()
    # Steps count the epochs trained so far (1, 2, ...); Optuna never prunes at a step < n_warmup_steps, so
    # steps 1..warmup_epochs are safe with warmup_epochs + 1 (the halving pruner's first rung likewise).
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials, n_warmup_steps=search.warmup_epochs + 1)
    if search.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=search.warmup_epochs + 1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_fold_study(search: Search, storage, fold: int):
    """The Optuna study of one outer fold (created on first use, the paper's weights enqueued first)."""
    optuna = quiet_optuna()
    study = optuna.create_study(storage=storage, study_name=search.study_name(fold), direction=search.direction,
                                sampler=_sampler(search, fold), pruner=_pruner(search), load_if_exists=True)
    if not study.user_attrs.get("bench.search_hash"):
        study.set_user_attr("bench.search_hash", search.hash)
        study.set_user_attr("bench.fold", fold)
        defaults = {k: search.defaults[k] for k in search.space}
        inside = all(low <= defaults[k] <= high for k, (low, high) in search.space.items())
        if search.enqueue_defaults and inside:
            study.enqueue_trial(defaults, user_attrs={"bench.defaults": True}, skip_if_exists=True)
    return study


def trial_counts(study) -> dict[str, int]:
    from collections import Counter

    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    return {"finished": counts["COMPLETE"] + counts["PRUNED"], "running": counts["RUNNING"], "waiting": counts["WAITING"],
            "complete": counts["COMPLETE"], "pruned": counts["PRUNED"], "failed": counts["FAIL"]}


def _errors(study) -> list[str]:
    return [t.user_attrs[ERROR_ATTR] for t in study.get_trials(deepcopy=False) if ERROR_ATTR in t.user_attrs]


class TrialFailed(Exception):
    """A trial whose training or objective failed (recorded; the search goes on)."""


class _Surplus(Exception):
    """A trial asked beyond the budget by a concurrent worker, or one repeating another trial's weights."""


def _refuse_twin(trial, params: Mapping[str, float]) -> None:
    """Stop ``trial`` when an earlier trial of its fold that did not fail has the same weights.

    A trial of a dead worker can be re-queued twice (by the worker's own Ctrl-C handler and by the
    heartbeat, when the worker died before Optuna recorded the failure); the soak caught two runs of the
    paper's weights in one fold. The later twin is marked surplus (it does not count against the budget
    and is left out of the results); the earlier one never stops for a later one, so exactly one runs.
    Called after the weights are suggested and again before the value is returned.
    """
    for other in trial.study.get_trials(deepcopy=False, states=None):
        if other.number < trial.number and other.state.name in ("RUNNING", "COMPLETE", "PRUNED") and other.params == params:
            trial.set_user_attr(SURPLUS, True)
            trial.set_user_attr("bench.duplicate_of", other.number)
            raise _Surplus(f"trial {trial.number} repeats the weights of trial {other.number}")


# ---------------------------------------------------------------------------------------------------------------
# One trial

@dataclass
class _FoldData:
    inner: Any
    outer_train: list
    volumes: dict


def _fold_data(search: Search, fold: int, cache: dict) -> _FoldData:
    from bench.data.dataset import load_volumes
    from bench.data.manifest import read_manifest
    from bench.splits import read_splits

    if fold not in cache:
        cases = read_manifest(Path(search.manifest))
        splits = read_splits(Path(search.splits_path))
        if splits.hash != search.split_hash:
            raise BenchError(f"{search.splits_path}: split hash {splits.hash} differs from the search's {search.split_hash}")
        inner, outer_train = inner_splits(splits, fold, cases, search.inner_folds)
        volumes = dict(zip((c.scan_id for c in outer_train), load_volumes(Path(search.cache_dir), outer_train)))
        cache.clear()  # one outer fold's volumes in memory at a time
        cache[fold] = _FoldData(inner, outer_train, volumes)
    return cache[fold]


def objective_value(rows: list[dict[str, Any]], metrics: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """The mean of ``metrics`` over one inner validation set's per-case rows, and each metric."""
    import pandas as pd

    from bench.aggregate import case_metrics

    values = case_metrics(pd.DataFrame(rows))
    picked = {m: float(values.get(m, float("nan"))) for m in metrics}
    undefined = [m for m, v in picked.items() if not math.isfinite(v)]
    if undefined:
        raise TrialFailed(f"objective metric(s) {', '.join(undefined)} undefined on the inner validation set "
                          f"({len(rows)} scans; e.g. AUC needs both classes, DSC lesion scans needs a lesion)")
    return sum(picked.values()) / len(picked), picked


def run_trial(search: Search, fold: int, trial, data_cache: dict, on_epoch: Callable[[dict], None] | None = None) -> float:
    """Train and validate one weight setting on every inner fold of outer fold ``fold``; returns the objective."""
    import torch
    from monai.data import set_track_meta

    optuna = quiet_optuna()
    from bench.evaluate import evaluate
    from bench.loop import TrainingDiverged, train
    from bench.study_types import Training
    from bench.tasks import get_task
    from bench.unit import default_device, training_setup

    set_track_meta(False)
    params = {name: trial.suggest_float(name, low, high, log=search.log) for name, (low, high) in search.space.items()}
    _refuse_twin(trial, params)
    weights = search.weights(params)
    trial.set_user_attr("weights", weights)
    data = _fold_data(search, fold, data_cache)
    profile, training, device = Profile.from_dict(search.profile), Training(**search.training), default_device()
    epochs = profile.epochs
    finals: list[float] = []
    inner_metrics: list[dict[str, float]] = []
    start = time.perf_counter()
    for j in range(search.inner_folds):
        itrain, ival = data.inner.train_test(j, data.outer_train)
        model, loss_fn, loader = training_setup(search.method, model_args=search.model_args, weights=weights, profile=profile,
                                                training=training, train_cases=itrain, cache=Path(search.cache_dir),
                                                seed=1000 * fold + j, device=device)
        val_volumes = [data.volumes[c.scan_id] for c in ival]
        current: dict[str, Any] = {}

        def validate(row: dict[str, Any], j=j, ival=ival, val_volumes=val_volumes, model=model, loss_fn=loss_fn,
                     current=current) -> None:
            result = evaluate(model, loss_fn, ival, val_volumes, sigmas=(0.0,), device=device,
                              precision=profile.precision)
            value, metrics = objective_value(result.rows, search.objective)
            current.update(value=value, metrics=metrics)
            estimate = (sum(finals) + value) / (j + 1)
            step = j * epochs + row["epoch"]
            trial.report(estimate, step)
            hold(f"trial {fold}/{trial.number}")  # a kill test's pause point; returns at once otherwise
            if on_epoch:
                on_epoch({"fold": fold, "trial": trial.number, "inner_fold": j, "epoch": row["epoch"], "epochs": epochs,
                          "value": value, "estimate": estimate})
            if trial.should_prune():
                _refuse_twin(trial, params)  # a pruned twin would count against the budget too
                raise optuna.TrialPruned(f"inner fold {j + 1}, epoch {row['epoch']}: estimate {estimate:.4f}")
            model.train()

        try:
            train(model, loss_fn, loader, task=get_task(search.kind), method=search.method, training=training,
                  device=device, on_epoch=validate, **profile.recipe())
        except TrainingDiverged as exc:
            raise TrialFailed(f"inner fold {j + 1}: {exc}") from None
        finals.append(current["value"])
        inner_metrics.append({"inner_fold": j, "value": current["value"], **current["metrics"]})
        trial.set_user_attr("inner_metrics", inner_metrics)
        del model, loss_fn, loader
        if device.type == "cuda":
            torch.cuda.empty_cache()
    trial.set_user_attr("seconds", time.perf_counter() - start)
    _refuse_twin(trial, params)  # a twin that suggested its weights while this trial did
    return sum(finals) / len(finals)


def _objective(search: Search, fold: int, study, data_cache: dict, on_epoch):
    optuna = quiet_optuna()

    def objective(trial) -> float:
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and t.state.name != "FAIL"]
        if len(earlier) >= search.trials:
            trial.set_user_attr(SURPLUS, True)
            raise _Surplus(f"trial {trial.number} is beyond the budget of {search.trials}")
        study.sampler = _sampler(search, fold, trial.number)  # before the first suggest (see _sampler)
        try:
            return run_trial(search, fold, trial, data_cache, on_epoch)
        except (optuna.TrialPruned, _Surplus):
            raise
        except TrialFailed as exc:
            trial.set_user_attr(ERROR_ATTR, str(exc))
            raise
        except KeyboardInterrupt:  # re-queue the interrupted weights, as the heartbeat does for a killed worker
            study.enqueue_trial(trial.params, user_attrs={"bench.retry_of": trial.number})
            raise

    return objective


# ---------------------------------------------------------------------------------------------------------------
# Workers

def work(search_data: Mapping[str, Any], storage_url: str, *, grace: int = DEFAULT_GRACE, threads: int | None = None,
         on_trial: Callable[[int, Any], None] | None = None, on_epoch: Callable[[dict], None] | None = None,
         poll: float | None = None) -> int:
    """Run trials until every outer fold has its budget of finished trials; returns the trials this worker ran.

    Folds are served in order; after each trial the scan starts again from fold 0, so several workers
    (processes or machines sharing the storage) fill the folds together. When only other workers'
    trials are left running, this one waits for them (or for their heartbeat to go stale, when Optuna
    fails them and re-queues their weights).
    """
    optuna = quiet_optuna()
    if threads:
        import torch

        torch.set_num_threads(threads)
    search = Search.from_json(search_data)
    storage = make_storage(storage_url, grace)
    studies = [open_fold_study(search, storage, fold) for fold in range(search.folds)]
    data_cache: dict = {}
    ran = 0
    poll = poll if poll is not None else max(1.0, grace / 4)
    while True:
        others_running = False
        for fold, study in enumerate(studies):
            adopt_silent_trials(study, after=max(1, grace // 4))
            optuna.storages.fail_stale_trials(study)
            counts = trial_counts(study)
            if counts["finished"] >= search.trials:
                continue
            errors = _errors(study)
            if len(errors) > max(3, search.trials):
                raise BenchError(f"outer fold {fold}: {len(errors)} trials failed; the last: {errors[-1]}")
            if counts["finished"] + counts["running"] >= search.trials and not counts["waiting"]:
                others_running = True
                continue
            callbacks = [lambda st, ft, fold=fold: on_trial(fold, ft)] if on_trial else []
            study.optimize(_objective(search, fold, study, data_cache, on_epoch), n_trials=1, catch=(TrialFailed, _Surplus),
                           callbacks=callbacks, gc_after_trial=True)
            ran += 1
            break
        else:
            if not others_running:
                return ran
            time.sleep(poll)


def _interrupted(exc: BaseException | None) -> bool:
    """Whether ``exc`` is, or was raised while handling, a Ctrl-C (Optuna may fail to record a trial it was
    telling when the interrupt arrived, and raise its own error on top)."""
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def pool_worker(search_data: dict, storage_url: str, grace: int) -> None:
    """A local worker process of ``bench tune --jobs N``: status 130 when interrupted; other errors end it
    with a traceback and status 1."""
    try:
        work(search_data, storage_url, grace=grace)
    except BaseException as exc:
        if _interrupted(exc):
            raise SystemExit(130) from None
        raise
