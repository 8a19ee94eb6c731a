"""PostgreSQL as the shared store, for real: `bench tune` workers on one Optuna storage, MLflow runs in a
PostgreSQL backend store, listed by `bench ui --backend-store-uri` (a server started by the test)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import REPO, free_port

from bench.soak import tune_study

BENCH = str(Path(sys.executable).with_name("bench"))
TRIALS = 3


def _bench(*args) -> subprocess.CompletedProcess:
    proc = subprocess.run([BENCH, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_tuning_workers_share_a_postgresql_storage_without_repeating_a_trial(tmp_path, postgres):
    from bench.tuning import Search, make_storage, open_fold_study

    study = tmp_path / "tune_pg.yaml"
    study.write_text(tune_study(TRIALS))
    runs = tmp_path / "runs"
    _bench("tune", "--study", study, "--profile", "smoke", "--jobs", 2, "--runs-dir", runs, "--no-mlflow",
           "--storage", postgres["optuna"])
    search = Search.from_json(json.loads((runs / "tune_pg" / "tune" / "search.json").read_text()))
    storage = make_storage(postgres["optuna"])
    for fold in range(search.folds):
        trials = [t for t in open_fold_study(search, storage, fold).get_trials() if not t.user_attrs.get("bench.surplus")]
        assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == TRIALS == len(trials)  # the budget, exactly
        weights = [tuple(sorted(t.params.items())) for t in trials]
        assert len(set(weights)) == len(weights)  # no trial twice
    best = json.loads((runs / "tune_pg" / "tune" / "best.json").read_text())
    assert all(best["folds"][str(k)]["done"] for k in range(search.folds))


def test_mlflow_runs_logged_to_postgresql_are_listed_by_bench_ui(tmp_path, smoke_runs, postgres):
    import mlflow

    runs, _, _ = smoke_runs
    _bench("sync", "smoke", "--runs-dir", runs, "--tracking-uri", postgres["mlflow"])
    client = mlflow.MlflowClient(postgres["mlflow"])
    experiment = client.get_experiment_by_name("smoke")
    children = [r for r in client.search_runs([experiment.experiment_id], max_results=1000)
                if r.data.tags.get("mlflow.parentRunId")]
    assert len(children) == 9 and {r.info.status for r in children} == {"FINISHED"}
    port = free_port()
    ui = subprocess.Popen([BENCH, "ui", "--backend-store-uri", postgres["mlflow"], "--port", str(port), "--runs-dir", runs],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=100"
        for _ in range(1200):  # the server is up when it answers (a failure bound, not a pace)
            assert ui.poll() is None, ui.stdout.read()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    listed = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("bench ui did not answer in 10 minutes")
        assert "smoke" in {e["name"] for e in listed["experiments"]}
    finally:
        import os
        import signal

        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(60)
