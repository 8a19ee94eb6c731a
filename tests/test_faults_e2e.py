"""Faults a long run meets, through the real CLI on `smoke`: damaged result files, a full disk, the MLflow
database locked mid-run or its server unreachable. The files are the record: nothing is lost, nothing half
written is read as done, and every fault is reported with what to do."""

from __future__ import annotations

import errno
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, held_env, wait_for

pytestmark = pytest.mark.slow
BENCH = str(Path(sys.executable).with_name("bench"))


def _done(root: Path) -> list[Path]:
    return sorted(root.glob("*/fold_*/seed_*/DONE.json"))


def test_damaged_result_files_are_skipped_by_report_and_rerun_by_run(smoke_runs, bench_cli, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(smoke_runs[0], runs)
    parquet = runs / "smoke" / "unet3d" / "fold_0" / "seed_0" / "per_case.parquet"
    parquet.write_bytes(parquet.read_bytes()[: parquet.stat().st_size // 2])  # truncated
    spec = runs / "smoke" / "resnet34" / "fold_1" / "seed_0" / "spec.json"
    spec.write_text(spec.read_text()[:50])  # half a JSON document
    result = bench_cli("report", "smoke", "--runs-dir", runs, "--out", tmp_path / "reports")
    assert result.code == 0, result
    warnings = [line for line in result.err.splitlines() if line.startswith("warning: skipping")]
    assert len(warnings) == 2 and str(parquet) in result.err and str(spec) in result.err, result.err
    assert (tmp_path / "reports" / "smoke" / "report.md").exists()
    folds = pd.read_csv(tmp_path / "reports" / "smoke" / "folds.csv")
    assert len(folds[(folds.arm == "unet3d") & (folds.sigma == 0)]) == 2  # the damaged unit is not in the tables
    result = bench_cli("run", "--study", "smoke", "--profile", "smoke", "--runs-dir", runs, "--no-mlflow")
    assert result.code == 0 and "2 unit(s) trained, 7 already done" in result.err, result
    assert result.err.count("training it again") == 2
    assert len(list((runs / "smoke" / ".corrupt").glob("*/*/fold_*/seed_0/DONE.json"))) == 2  # kept aside, not deleted
    result = bench_cli("report", "smoke", "--runs-dir", runs, "--out", tmp_path / "reports")
    assert result.code == 0 and "warning" not in result.err, result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_full_disk_and_an_unreachable_tracking_server_lose_nothing(tmp_path, bench_cli, monkeypatch):
    """fold 1's per_case.parquet hits ENOSPC half-way and FAILED.json cannot be written either; MLflow's
    server does not answer. The run warns about both, the other units finish, the half-written unit is
    never taken for done, and the next run trains only it."""
    import bench.unit

    runs = tmp_path / "runs"
    to_parquet, write_json = pd.DataFrame.to_parquet, bench.unit.write_json_atomic

    def full_disk_parquet(frame, path, *args, **kwargs):
        if "fold_1" not in str(path):
            return to_parquet(frame, path, *args, **kwargs)
        Path(path).write_bytes(b"PAR1" + b"\0" * 100)  # what fit on the disk
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    def full_disk_json(path, data):
        if "fold_1" in str(path) and Path(path).name == "FAILED.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write_json(path, data)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk_parquet)
    monkeypatch.setattr(bench.unit, "write_json_atomic", full_disk_json)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    unreachable = f"http://127.0.0.1:{_free_port()}"
    result = bench_cli("run", "--study", "smoke", "--profile", "smoke", "--arms", "unet3d", "--runs-dir", runs,
                       "--tracking-uri", unreachable)
    assert result.code == 1, result
    assert "2 unit(s) trained, 0 already done, 1 failed" in result.err and "No space left on device" in result.err
    assert "MLflow mirroring stopped" in result.err and "bench sync smoke" in result.err, result.err
    unit = runs / "smoke" / "unet3d" / "fold_1" / "seed_0"
    assert (unit / "per_case.parquet").exists() and not (unit / "DONE.json").exists() and not (unit / "FAILED.json").exists()
    assert [p.parent.parent.name for p in _done(runs / "smoke")] == ["fold_0", "fold_2"]
    monkeypatch.undo()
    result = bench_cli("run", "--study", "smoke", "--profile", "smoke", "--arms", "unet3d", "--runs-dir", runs, "--no-mlflow")
    assert result.code == 0 and "1 unit(s) trained, 2 already done" in result.err, result
    frame = pd.read_parquet(unit / "per_case.parquet")
    assert len(frame) > 0 and set(frame["fold"]) == {1}


def test_mlflow_locked_mid_run_warns_and_sync_catches_up(tmp_path, bench_cli):
    """The tracking database is locked by another process while fold 1 trains: fold 0 is mirrored, the run
    finishes every unit with a warning, and `bench sync` mirrors the rest once the lock is gone."""
    from mlflow.tracking import MlflowClient

    runs, marker, release = tmp_path / "runs", tmp_path / "held", tmp_path / "release"
    env = {**held_env("unit unet3d/fold_1/seed_0", marker), "BENCH_TEST_RELEASE": str(release)}
    proc = subprocess.Popen([BENCH, "run", "--study", "smoke", "--profile", "smoke", "--arms", "unet3d", "--runs-dir",
                             str(runs)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(marker.exists, proc)  # fold 0 is done and mirrored; fold 1 waits at its start
        lock = sqlite3.connect(runs / "mlflow.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the database
        release.touch()
        _, err = proc.communicate(timeout=1800)
    finally:
        proc.kill()
    lock.execute("ROLLBACK")
    lock.close()
    assert proc.returncode == 0, err[-3000:]
    assert "3 unit(s) trained" in err and "MLflow mirroring stopped" in err and "locked" in err, err[-3000:]
    assert len(_done(runs / "smoke")) == 3
    result = bench_cli("sync", "smoke", "--runs-dir", runs)
    assert result.code == 0 and "2 unit(s) added to MLflow, 1 already there" in result.out, result
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    units = client.search_runs([experiment.experiment_id], filter_string="tags.`bench.kind` = 'unit'")
    assert sorted(r.data.tags["bench.spec_hash"] for r in units if r.info.status == "FINISHED") == \
        sorted({r.data.tags["bench.spec_hash"] for r in units}) and len(units) == 3
