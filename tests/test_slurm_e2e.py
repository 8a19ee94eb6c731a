"""`--executor slurm` on a real one-node SLURM cluster started by the test session (tests/cluster/): the smoke
study as one job array gives the local run's results; a task cancelled mid-run is the only unit trained again;
`bench tune` workers as SLURM tasks on PostgreSQL meet the budget with no trial twice. SLURM reports a
cancelled task 15–20 s late (submitit polls `sacct`), so these tests wait on states, with generous bounds."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
from conftest import REPO, held_env, wait_for

from bench.soak import tune_study

BENCH = str(Path(sys.executable).with_name("bench"))
HELD = "unet3d_dice/fold_1/seed_0"
ARM = HELD.split("/")[0]  # the cancel test runs this arm's three units: one cancelled, two beside it


def _bench(*args, env, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([BENCH, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=3600, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _cases(runs: Path) -> pd.DataFrame:
    frame = pd.concat([pd.read_parquet(p) for p in sorted((runs / "smoke").glob("*/fold_*/seed_*/per_case.parquet"))])
    return frame.drop(columns=["code_version"]).sort_values(["arm", "fold", "case_id", "sigma"]).reset_index(drop=True)


def test_the_smoke_study_as_a_job_array_matches_the_local_run(tmp_path, slurm, smoke_runs):
    local, _, _ = smoke_runs
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    out = _bench("run", "--study", "smoke", "--profile", "smoke", "--runs-dir", runs, "--executor", "slurm",
                 "--cpus-per-unit", 1, "--time", 30, "--max-parallel", 2, env=slurm)
    assert "submitted SLURM array job" in out.stderr and "9 unit(s) trained" in out.stderr.replace("\n", " ")
    pd.testing.assert_frame_equal(_cases(runs), _cases(local))  # the same numbers, case by case
    jobs = json.loads((runs / "smoke" / "slurm" / "jobs.json").read_text())
    assert len(jobs) == 1 and len(next(iter(jobs.values()))["tasks"]) == 9  # one array, a task per unit
    for root, name in ((runs, "slurm"), (local, "local")):
        _bench("report", "smoke", "--runs-dir", root, "--out", reports / name, env=slurm)
    for table in ("table.csv", "significance.csv", "versus_reference.csv"):
        assert (reports / "slurm" / "smoke" / table).read_text() == (reports / "local" / "smoke" / table).read_text()
    status = _bench("status", "smoke", "--profile", "smoke", "--runs-dir", runs, env=slurm)
    assert "9 task(s): 9 COMPLETED" in status.stdout


def test_a_cancelled_task_is_the_only_unit_trained_again(tmp_path, slurm):
    runs, trace = tmp_path / "runs", tmp_path / "trained.txt"
    env = {**held_env(f"unit {HELD}", tmp_path / "held.pid"), **{k: v for k, v in slurm.items()
                                                                  if k.startswith("SLURM")}, "BENCH_TEST_TRACE": str(trace)}
    run = subprocess.Popen([BENCH, "run", "--study", "smoke", "--profile", "smoke", "--arms", ARM, "--runs-dir", str(runs),
                            "--no-mlflow", "--executor", "slurm", "--time", "30"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (tmp_path / "held.pid").exists(), run)  # the held unit's task is running
    jobs = json.loads((runs / "smoke" / "slurm" / "jobs.json").read_text())
    job, record = next(iter(jobs.items()))
    task = f"{job}_{record['tasks'].index(HELD)}"
    subprocess.run(["scancel", task], env=env, check=True, timeout=60)
    _, err = run.communicate(timeout=3600)
    assert run.returncode == 1 and f"failed {HELD}" in " ".join(err.split()), err[-3000:]
    assert "2 unit(s) trained" in " ".join(err.split())
    first = Counter(line.split()[1] for line in trace.read_text().splitlines())
    assert len(first) == 3 and set(first.values()) == {1}

    env.pop("BENCH_TEST_HOLD")
    again = _bench("run", "--study", "smoke", "--profile", "smoke", "--arms", ARM, "--runs-dir", runs, "--no-mlflow",
                   "--executor", "slurm", "--time", 30, env=env)
    assert "1 unit(s) trained, 2 already done" in " ".join(again.stderr.split())
    second = Counter(line.split()[1] for line in trace.read_text().splitlines()) - first
    assert second == Counter({HELD: 1})  # the cancelled unit, and nothing else
    assert len(list((runs / "smoke").glob("*/fold_*/seed_*/DONE.json"))) == 3


def test_tuning_workers_as_slurm_tasks_on_postgresql(tmp_path, slurm, postgres):
    from bench.tuning import Search, make_storage, open_fold_study

    study, runs = tmp_path / "tune_slurm.yaml", tmp_path / "runs"
    study.write_text(tune_study(3))
    url, env = postgres["optuna"], slurm
    _bench("tune", "--study", study, "--profile", "smoke", "--runs-dir", runs, "--no-mlflow", "--executor", "slurm",
           "--jobs", 2, "--time", 30, "--storage", url, env=env)
    search = Search.from_json(json.loads((runs / "tune_slurm" / "tune" / "search.json").read_text()))
    storage = make_storage(url)
    for fold in range(search.folds):
        trials = [t for t in open_fold_study(search, storage, fold).get_trials() if not t.user_attrs.get("bench.surplus")]
        assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 3 == len(trials)
        weights = [tuple(sorted(t.params.items())) for t in trials]
        assert len(set(weights)) == len(weights)
    jobs = json.loads((runs / "tune_slurm" / "tune" / "slurm" / "jobs.json").read_text())
    assert [len(r["tasks"]) for r in jobs.values()] == [2]  # two workers, one array
