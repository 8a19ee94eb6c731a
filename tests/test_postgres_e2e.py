"""PostgreSQL as MLflow's backend store, for real: runs synced into it are listed by `bench ui
--backend-store-uri` (a server started by the test). Tuning workers on a PostgreSQL Optuna storage:
tests/test_slurm_e2e.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import REPO, free_port

BENCH = str(Path(sys.executable).with_name("bench"))


def _bench(*args) -> subprocess.CompletedProcess:
    proc = subprocess.run([BENCH, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


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
