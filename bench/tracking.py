"""MLflow mirror of the results store: one experiment per study, a parent run per invocation,
a child run per unit (tag ``bench.spec_hash``), per-epoch and final metrics, artefacts.

Only the parent process writes to MLflow, from the finished run directories, so the same code
serves live runs, ``--jobs N`` and ``bench sync`` (run directories made on a cluster without a
tracking server). Mirroring is idempotent: a unit whose spec hash already has a finished child run
in the experiment is not logged twice. Default backend: ``sqlite:///<runs>/mlflow.db``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from bench.store import DONE, SPEC, read_json

__all__ = ["default_tracking_uri", "Tracker", "SearchTracker", "Guarded", "Ending", "flatten"]

log = logging.getLogger(__name__)
HASH_TAG = "bench.spec_hash"


def default_tracking_uri(runs_root: Path) -> str:
    """``--tracking-uri`` wins, then ``$MLFLOW_TRACKING_URI``, then sqlite under the runs root."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(Path(runs_root).resolve() / 'mlflow.db')}"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


def _metric_name(metric: str, sigma: float) -> str:
    return f"test/{metric}" if sigma == 0 else f"test_sigma_{sigma:g}/{metric}"


def _sqlite_path(tracking_uri: str) -> Path | None:
    """The file of a ``sqlite:///`` tracking URI (None for any other backend, or an in-memory database)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri[len(prefix):] in ("", ":memory:"):
        return None
    return Path(tracking_uri[len(prefix):].split("?", 1)[0])


def _new_sqlite_from_template(tracking_uri: str) -> None:
    """A new sqlite MLflow database starts as a copy of an empty one that this MLflow version migrated once.

    MLflow creates a new database by running its whole chain of schema migrations (alembic): about 3 s of CPU,
    as much as importing MLflow, for every new runs directory (every test, every kill-soak cycle). The
    template, ``<cache>/mlflow/empty-<version>.db``, is made the same way the first time and copied after; a
    copy is the same schema at the same revision, so MLflow opens it as its own. The one row MLflow writes
    into a new database, the ``Default`` experiment (id 0; bench never logs into it), gets the artefact
    location MLflow itself would give it in this process (``./mlruns/0``, absolute). A database that exists,
    or any other backend, is left alone.
    """
    import shutil
    import sqlite3

    path = _sqlite_path(tracking_uri)
    if path is None or path.exists():
        return
    import mlflow

    from bench.data.cache import cache_root

    template = cache_root() / "mlflow" / f"empty-{mlflow.__version__}.db"
    if not template.exists():
        from mlflow.tracking import MlflowClient

        template.parent.mkdir(parents=True, exist_ok=True)
        making = template.with_name(f"{template.stem}.{os.getpid()}.tmp")
        try:
            client = MlflowClient(f"sqlite:///{making.resolve()}")
            client.search_experiments()  # creates the tables and runs every migration
            engine = getattr(getattr(client._tracking_client, "store", None), "engine", None)
            if engine is not None:
                engine.dispose()
            os.replace(making, template)  # atomic: a process that races us copies a complete file either way
        finally:
            making.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(template, partial)
        with sqlite3.connect(partial) as db:
            db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                       (str(Path("mlruns").resolve() / "0"),))
        db.close()
        try:
            os.link(partial, path)  # atomic, and never over a database another process made meanwhile
        except FileExistsError:
            pass
    finally:
        partial.unlink(missing_ok=True)


def _open_experiment(tracking_uri: str, study: str, runs_root: Path):
    """A client bound to ``tracking_uri`` and the id of the study's experiment, created on first use
    (artefacts under the runs root for sqlite).

    Never ``mlflow.set_tracking_uri``: that also sets ``$MLFLOW_TRACKING_URI``, which
    :func:`default_tracking_uri` reads first, so a later study in the same process (or any subprocess)
    would be logged into this study's database.
    """
    from mlflow.tracking import MlflowClient

    for noisy in ("alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _new_sqlite_from_template(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is not None:
        return client, experiment.experiment_id
    artifacts = None
    if not tracking_uri.startswith(("http:", "https:", "databricks")):  # a database: artifacts beside the runs
        artifacts = (Path(runs_root).resolve() / "mlartifacts" / study).as_uri()
    return client, client.create_experiment(study, artifact_location=artifacts)


def _log_params(client, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k[:250], v) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


class Tracker:
    """Logs finished unit directories of one study under a parent run for this invocation."""

    def __init__(self, tracking_uri: str, study: str, runs_root: Path, *, parent_name: str, parent_params: Mapping[str, Any]) -> None:
        self.client, self.experiment_id = _open_experiment(tracking_uri, study, runs_root)
        run = self.client.create_run(self.experiment_id, run_name=parent_name, tags={"bench.kind": "invocation"})
        self.parent_id = run.info.run_id
        self._log_params(self.parent_id, flatten(parent_params))

    def _log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        _log_params(self.client, run_id, params)

    def already_logged(self, spec_hash: str) -> bool:
        """Whether a FINISHED child run of this spec exists. Unfinished ones (their mirroring was killed
        half-way) are deleted, so each unit ends with exactly one child run."""
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{HASH_TAG}` = '{spec_hash}'",
                                       max_results=50)
        if any(r.info.status == "FINISHED" for r in runs):
            return True
        for run in runs:
            self.client.delete_run(run.info.run_id)
        return False

    def log_unit(self, directory: Path) -> str | None:
        """Mirror one finished unit; returns the run id, or None when it was already there."""
        from mlflow.entities import Metric

        spec, done = read_json(directory / SPEC), read_json(directory / DONE)
        if self.already_logged(spec["spec_hash"]):
            return None
        name = f"{spec['arm']}/fold_{spec['fold']}/seed_{spec['seed']}"
        run = self.client.create_run(self.experiment_id, run_name=name, tags={
            "mlflow.parentRunId": self.parent_id, HASH_TAG: spec["spec_hash"], "bench.kind": "unit",
            "bench.arm": spec["arm"], "bench.method": spec["method"], "bench.split_hash": spec["split_hash"],
            "bench.code_version": spec.get("code_version", ""), "bench.hardware": done.get("hardware", "")})
        run_id = run.info.run_id
        params = flatten({k: v for k, v in spec.items() if k not in ("manifest", "cache_dir", "splits_path", "code_version")})
        self._log_params(run_id, params)
        now = int(time.time() * 1000)
        metrics = self._history_metrics(directory / "history.csv", now) + self._final_metrics(directory / "per_case.parquet", now)
        metrics += [Metric(f"unit/{k}", float(done[k]), now, 0) for k in ("params", "train_seconds", "eval_seconds") if k in done]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[i : i + 1000])
        for artefact in ("per_case.parquet", "history.csv", SPEC, DONE):
            if (directory / artefact).exists():
                self.client.log_artifact(run_id, str(directory / artefact))
        self.client.set_terminated(run_id, "FINISHED")
        return run_id

    @staticmethod
    def _history_metrics(path: Path, now: int) -> list:
        from mlflow.entities import Metric

        if not path.exists():
            return []
        history = pd.read_csv(path)

        def key(col: str) -> str:  # validation-split columns (val_<metric>) as val/<metric>, the rest as train/<col>
            return f"val/{col[4:]}" if col.startswith("val_") else f"train/{col}"

        return [Metric(key(col), float(row[col]), now, int(row["epoch"]))
                for _, row in history.iterrows() for col in history.columns
                if col != "epoch" and pd.notna(row[col])]

    @staticmethod
    def _final_metrics(path: Path, now: int) -> list:
        from mlflow.entities import Metric

        from bench.aggregate import fold_metrics

        folds = fold_metrics(pd.read_parquet(path))
        metrics = []
        for _, row in folds.iterrows():
            for col, value in row.items():
                if col in ("study", "arm", "method", "fold", "seed", "sigma") or pd.isna(value):
                    continue
                metrics.append(Metric(_metric_name(col, row["sigma"]), float(value), now, 0))
        return metrics

    def log_units(self, directories: Iterable[Path]) -> int:
        return sum(1 for d in directories if self.log_unit(d) is not None)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_id, status)


SEARCH_TAG, TRIAL_TAG, BEST_TAG = "bench.search_hash", "bench.trial_key", "bench.best"
_TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}


class SearchTracker:
    """MLflow mirror of a loss-weight search (``bench tune``): one parent run per search, one child per trial.

    The parent run is found again by the search's hash, so a resumed search keeps one parent. A trial
    is logged once it is finished (complete, pruned or failed), by the process that sees it first,
    keyed by ``bench.trial_key`` = ``fold_<k>#<number>`` (idempotent, like :class:`Tracker`). Child runs
    hold the weights as params, the objective, its per-step running estimate (``inner/objective``)
    and each inner fold's metrics; the best trial of every outer fold is tagged ``bench.best = true``.
    Written from the parent process only, from the Optuna storage, never from a worker.
    """

    def __init__(self, tracking_uri: str, study: str, runs_root: Path, *, search_hash: str, params: Mapping[str, Any]) -> None:
        self.client, self.experiment_id = _open_experiment(tracking_uri, study, runs_root)
        found = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{SEARCH_TAG}` = '{search_hash}' "
                                        "and tags.`bench.kind` = 'search'", max_results=1)
        if found:
            self.parent_id = found[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, run_name=f"{study} search {search_hash}",
                                         tags={"bench.kind": "search", SEARCH_TAG: search_hash})
            self.parent_id = run.info.run_id
            _log_params(self.client, self.parent_id, flatten(params))
        self.runs = {}
        for run in self.children():  # a child still RUNNING is a mirror killed half-way: deleted, logged again
            if run.info.status == "RUNNING":
                self.client.delete_run(run.info.run_id)
            else:
                self.runs[run.data.tags[TRIAL_TAG]] = run.info.run_id

    def children(self) -> list:
        return self.client.search_runs([self.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_id}'",
                                       max_results=50000)

    def log_trial(self, fold: int, trial, weights: Mapping[str, float]) -> str | None:
        """Mirror one finished Optuna trial; returns the run id, or None if it is logged already or unfinished."""
        from mlflow.entities import Metric

        key = f"fold_{fold}#{trial.number}"
        if key in self.runs or trial.state.name not in _TRIAL_STATUS:
            return None
        run = self.client.create_run(self.experiment_id, run_name=f"fold_{fold}/trial_{trial.number}", tags={
            "mlflow.parentRunId": self.parent_id, "bench.kind": "trial", TRIAL_TAG: key, "bench.fold": str(fold),
            "bench.trial": str(trial.number), "bench.state": trial.state.name, BEST_TAG: "false",
            "bench.defaults": str(bool(trial.user_attrs.get("bench.defaults"))).lower(),
            **({"bench.error": str(trial.user_attrs["bench.error"])[:5000]} if "bench.error" in trial.user_attrs else {})})
        run_id = self.runs[key] = run.info.run_id  # at once: an interrupt below must not make the `finally` mirror log
        # it a second time (a run left RUNNING is deleted and logged again by the next invocation)
        _log_params(self.client, run_id, flatten({"fold": fold, "trial": trial.number, "weights": dict(weights)}))
        now = int(time.time() * 1000)
        metrics = [Metric("inner/objective", float(v), now, int(step)) for step, v in sorted(trial.intermediate_values.items())]
        if trial.value is not None:
            metrics.append(Metric("objective", float(trial.value), now, 0))
        for row in trial.user_attrs.get("inner_metrics", []):
            metrics += [Metric(f"inner_fold_{row['inner_fold']}/{k}", float(v), now, 0) for k, v in row.items() if k != "inner_fold"]
        if "seconds" in trial.user_attrs:
            metrics.append(Metric("trial/seconds", float(trial.user_attrs["seconds"]), now, 0))
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[i : i + 1000])
        self.client.set_terminated(run_id, _TRIAL_STATUS[trial.state.name])
        return run_id

    def tag_best(self, best: Mapping[int, int]) -> None:
        """``bench.best = true`` on the best trial of each outer fold (``fold → trial number``), false elsewhere."""
        wanted = {f"fold_{fold}#{number}" for fold, number in best.items()}
        for run in self.children():
            key = run.data.tags.get(TRIAL_TAG)
            flag = "true" if key in wanted else "false"
            if run.data.tags.get(BEST_TAG) != flag:
                self.client.set_tag(run.info.run_id, BEST_TAG, flag)

    def log_best(self, record: Mapping[str, Any]) -> None:
        """The parent run's metrics: each outer fold's best objective and best weights."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for fold, entry in record["folds"].items():
            if "value" in entry:
                metrics.append(Metric(f"fold_{fold}/best_objective", float(entry["value"]), now, 0))
                metrics += [Metric(f"fold_{fold}/best_{k}", float(v), now, 0) for k, v in entry["params"].items()]
            if entry.get("defaults_value") is not None:
                metrics.append(Metric(f"fold_{fold}/defaults_objective", float(entry["defaults_value"]), now, 0))
        if metrics:
            self.client.log_batch(self.parent_id, metrics=metrics)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_id, status)


class Guarded:
    """A tracker whose MLflow errors never stop the work: the files are the record, MLflow their mirror.

    ``Guarded(lambda: Tracker(...), warn=...)`` builds the tracker and forwards every method call to it.
    The first error (a locked or unreachable tracking database, a full disk under the artefact store)
    is reported once through ``warn`` together with how to catch up (``bench sync``); from then on every
    call is skipped, so a dead server does not cost a time-out per unit. ``failed`` holds the error.
    """

    def __init__(self, factory, *, warn, catch_up: str) -> None:
        self.failed: str | None = None
        self._warn, self._catch_up, self._tracker = warn, catch_up, None
        self._call(lambda: setattr(self, "_tracker", factory()), "opening the tracking store")

    def _call(self, action, what: str):
        if self.failed is not None:
            return None
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - any MLflow/database/network error
            self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
            self._warn(f"MLflow mirroring stopped ({what}: {self.failed}); the run goes on and its files are complete. "
                       f"Catch up later: {self._catch_up}.")
            return None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args, **kwargs):
            return self._call(lambda: getattr(self._tracker, name)(*args, **kwargs), name.replace("_", " "))

        return call


class Ending:
    """How an invocation ended, handed to ``on_end(status)`` however it ends: FINISHED (or what the body set
    ``status`` to), KILLED on Ctrl-C / SIGTERM, FAILED on any other error; the error still propagates.

    Example: ``with Ending(lambda status: tracker.finish(status)) as end: ...; end.status = "FAILED"``.
    """

    def __init__(self, on_end) -> None:
        self.on_end, self.status = on_end, "FINISHED"

    def __enter__(self) -> Ending:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if kind is not None:
            self.status = "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
        self.on_end(self.status)
        return False
