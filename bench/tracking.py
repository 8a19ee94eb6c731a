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

__all__ = ["default_tracking_uri", "Tracker", "flatten"]

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


class Tracker:
    """Logs finished unit directories of one study under a parent run for this invocation."""

    def __init__(self, tracking_uri: str, study: str, runs_root: Path, *, parent_name: str, parent_params: Mapping[str, Any]) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        for noisy in ("alembic", "mlflow"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        self.uri = tracking_uri
        experiment = self.client.get_experiment_by_name(study)
        if experiment is None:
            artifacts = None
            if tracking_uri.startswith("sqlite:"):
                artifacts = (Path(runs_root).resolve() / "mlartifacts" / study).as_uri()
            self.experiment_id = self.client.create_experiment(study, artifact_location=artifacts)
        else:
            self.experiment_id = experiment.experiment_id
        run = self.client.create_run(self.experiment_id, run_name=parent_name, tags={"bench.kind": "invocation"})
        self.parent_id = run.info.run_id
        self._log_params(self.parent_id, flatten(parent_params))

    def _log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def already_logged(self, spec_hash: str) -> bool:
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{HASH_TAG}` = '{spec_hash}'",
                                       max_results=5)
        return any(r.info.status == "FINISHED" for r in runs)

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
            "bench.code_version": spec.get("code_version", "")})
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
        return [Metric(f"train/{col}", float(row[col]), now, int(row["epoch"]))
                for _, row in history.iterrows() for col in history.columns if col != "epoch"]

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
