"""`bench tune` for real on the `smoke` profile: reproducible with a fixed seed and one worker; killed
mid-way and resumed it ends with exactly the budget; two workers share a storage without repeating a
trial; MLflow has one child run per trial under one search run; `bench run` trains the tuned arm with
each outer fold's best weights and `bench report` shows the search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, held_env, wait_for

from bench.soak import tune_study

BENCH = str(Path(sys.executable).with_name("bench"))
TRIALS = 3
STUDY = tune_study(TRIALS)  # two outer folds, the joint model fixed and tuned (bench.soak.TUNE_STUDY)


@pytest.fixture
def study_file(tmp_path) -> Path:
    path = tmp_path / "tune_smoke.yaml"
    path.write_text(STUDY)
    return path


def _bench(*args, check=True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([BENCH, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=3600, **kwargs)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _trials(runs: Path) -> dict[int, list]:
    """Outer fold → its Optuna trials, read from the default storage."""
    import optuna

    from bench.tuning import Search, make_storage, open_fold_study

    search = Search.from_json(json.loads((runs / "tune_smoke" / "tune" / "search.json").read_text()))
    storage = make_storage(f"sqlite:///{runs / 'tune_smoke' / 'tune' / 'optuna.db'}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return {k: open_fold_study(search, storage, k).get_trials() for k in range(search.folds)}


def _finished(trials) -> int:
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)


def test_fixed_seed_one_worker_gives_the_same_best_weights_twice(tmp_path, study_file):
    from rich.console import Console

    from bench.study import load_study
    from bench.tune_run import run_search

    study = load_study(str(study_file))
    records = []
    for name in ("a", "b"):
        summary = run_search(study, profile_name="smoke", runs_root=tmp_path / name, jobs=1, use_mlflow=False,
                             console=Console(file=open(os.devnull, "w")))
        records.append(summary.record)
    for fold in ("0", "1"):
        a, b = records[0]["folds"][fold], records[1]["folds"][fold]
        assert a["done"] and a["finished"] == TRIALS
        assert a["weights"] == b["weights"] and a["value"] == b["value"] and a["best_trial"] == b["best_trial"]
    trials = [pd.read_csv(tmp_path / n / "tune_smoke" / "tune" / "trials.csv") for n in ("a", "b")]
    cols = ["fold", "trial", "state", "value", "w_cls", "w_cross"]
    pd.testing.assert_frame_equal(trials[0][cols], trials[1][cols])  # every trial, not only the best
    assert trials[0].groupby("fold")["w_cls"].nunique().min() == TRIALS  # and the trials do differ


@pytest.mark.slow
def test_killed_search_resumes_to_exactly_the_budget_with_one_mlflow_run_per_trial(tmp_path, study_file):
    runs = tmp_path / "runs"
    args = ["tune", "--study", study_file, "--profile", "smoke", "--runs-dir", runs, "--grace-period", 2]
    marker = tmp_path / "held"  # trial 1 of outer fold 0 stops after its first epoch's report, until killed
    proc = subprocess.Popen([BENCH, *map(str, args)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, env=held_env("trial 0/1", marker))
    wait_for(marker.exists, proc)  # a state, not a time: the marker appears when the trial holds
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    folds = _trials(runs)
    fold, trial = 0, folds[0][1]
    assert sum(_finished(ts) for ts in folds.values()) >= 1 and trial.params
    assert _trials(runs)[fold][trial.number].state.name == "RUNNING"  # left running by the dead worker
    assert _finished(_trials(runs)[fold]) < TRIALS

    _bench(*args)
    folds = _trials(runs)
    for k, ts in folds.items():
        assert _finished(ts) == TRIALS, (k, [(t.number, t.state.name) for t in ts])
    dead = folds[fold][trial.number]
    assert dead.state.name == "FAIL"  # marked failed by the heartbeat check ...
    retry = [t for t in folds[fold] if t.system_attrs.get("failed_trial") == trial.number]
    assert len(retry) == 1 and retry[0].params == dead.params and retry[0].state.name in ("COMPLETE", "PRUNED")  # ... and retried
    best = json.loads((runs / "tune_smoke" / "tune" / "best.json").read_text())
    assert all(e["done"] and e["finished"] == TRIALS for e in best["folds"].values())

    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tune_smoke")
    runs_ = client.search_runs([experiment.experiment_id], max_results=1000)
    searches = [r for r in runs_ if r.data.tags.get("bench.kind") == "search"]
    assert len(searches) == 1 and searches[0].info.status == "FINISHED"  # the resumed search kept its parent run
    children = [r for r in runs_ if r.data.tags.get("mlflow.parentRunId") == searches[0].info.run_id]
    keys = Counter(r.data.tags["bench.trial_key"] for r in children)
    expected = {f"fold_{k}#{t.number}" for k, ts in folds.items() for t in ts}
    assert set(keys) == expected and set(keys.values()) == {1}  # one child run per trial, the failed one included
    by_key = {r.data.tags["bench.trial_key"]: r for r in children}
    assert by_key[f"fold_{fold}#{trial.number}"].info.status == "FAILED"
    for k, e in best["folds"].items():
        run = by_key[f"fold_{k}#{e['best_trial']}"]
        assert run.data.tags["bench.best"] == "true" and run.data.metrics["objective"] == pytest.approx(e["value"])
        assert float(run.data.params["weights.cls"]) == pytest.approx(e["weights"]["cls"])
    assert sum(r.data.tags["bench.best"] == "true" for r in children) == 2


@pytest.mark.slow
def test_two_workers_share_a_storage_then_run_and_report_use_the_tuned_weights(tmp_path, study_file):
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    out = _bench("tune", "--study", study_file, "--profile", "smoke", "--jobs", 2, "--runs-dir", runs, "--no-mlflow")
    assert "fold 0: 3/3 finished" in out.stderr.replace("\n", " ")
    for ts in _trials(runs).values():
        ran = [t for t in ts if not t.user_attrs.get("bench.surplus")]
        assert _finished(ran) == TRIALS == len(ran)  # no trial twice, none lost
        weights = [tuple(sorted(t.params.items())) for t in ran]
        assert len(set(weights)) == len(weights), weights  # no two trials with the same weights
        assert sum(bool(t.user_attrs.get("bench.defaults")) for t in ran) == 1  # the paper's β once

    best = json.loads((runs / "tune_smoke" / "tune" / "best.json").read_text())
    _bench("run", "--study", study_file, "--profile", "smoke", "--jobs", 2, "--runs-dir", runs, "--no-mlflow")
    for fold in (0, 1):
        spec = json.loads((runs / "tune_smoke" / "tuned" / f"fold_{fold}" / "seed_0" / "spec.json").read_text())
        assert spec["weights"] == best["folds"][str(fold)]["weights"] and spec["extra"]["tuned_by_search"] == best["search_hash"]
        fixed = json.loads((runs / "tune_smoke" / "fixed" / f"fold_{fold}" / "seed_0" / "spec.json").read_text())
        assert fixed["weights"] == {"seg": 1.0, "cls": 0.8, "cross": 1.0}
    _bench("report", study_file, "--runs-dir", runs, "--out", reports)
    out = reports / "tune_smoke"
    assert {"tuning.md", "tuning.csv", "tuning.png", "tuning.pdf"} <= {p.name for p in out.iterdir()}
    tuning = pd.read_csv(out / "tuning.csv")
    assert list(tuning["fold"]) == [0, 1] and (tuning["finished"] == TRIALS).all()
    assert list(tuning["best_cls"]) == [best["folds"][k]["weights"]["cls"] for k in ("0", "1")]
    report = (out / "report.md").read_text()
    assert "## Loss-weight search" in report and "paper's fixed weights | | 0.8 | 1 |" in report
    assert list(pd.read_csv(out / "table.csv")["label"]) == ["fixed", "tuned"]

    # a second `bench tune` with the budget met trains nothing; more trials continue the same search
    again = _bench("tune", "--study", study_file, "--profile", "smoke", "--runs-dir", runs, "--no-mlflow")
    assert "0 trial(s) run" in again.stderr
    more = _bench("tune", "--study", study_file, "--profile", "smoke", "--runs-dir", runs, "--no-mlflow", "--trials", 4)
    assert "2 trial(s) run" in more.stderr and all(_finished(ts) == 4 for ts in _trials(runs).values())


def test_tune_errors_are_one_line(tmp_path, study_file):
    proc = _bench("tune", "--study", "ablation_lgm", "--profile", "smoke", "--runs-dir", tmp_path, check=False)
    assert proc.returncode == 2 and "has no `tune:` section" in proc.stderr and "Traceback" not in proc.stderr
    proc = _bench("run", "--study", study_file, "--profile", "smoke", "--runs-dir", tmp_path, "--no-mlflow", check=False)
    assert proc.returncode == 2 and "best.json does not exist; run `bench tune --study tune_smoke --profile smoke` first" \
        in proc.stderr.replace("\n", " ")
    proc = _bench("tune", "--study", study_file, "--profile", "smoke", "--runs-dir", tmp_path, "--storage", "nosuchdb://x",
                  check=False)
    assert proc.returncode == 2 and "--storage nosuchdb://x: cannot open the Optuna storage" in proc.stderr
