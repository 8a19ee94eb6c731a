"""Learning curves end to end through the CLI on `smoke`: `training.validate` holds out a validation split of
each training fold (never a test scan), measures it every epoch into history.csv and MLflow (`val/*`), and the
report draws the curves and judges `pass_criteria`; the learnability study itself loads and covers every
registered method."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO

from bench.registry import METHODS, load_plugins
from bench.study import load_study

BENCH = str(Path(sys.executable).with_name("bench"))

STUDY = """include: _base.yaml
title: "Learning curves check"
profile: smoke
folds: 2
training: {validate: 2}
metrics: [dsc_lesion, auc]
pass_criteria: {auc: 0.0, dsc_lesion: 1.01}
reference: resnet34
arms:
  unet3d: {method: unet3d, label: 3D UNet}
  resnet34: {method: resnet34, label: ResNet34}
"""


def test_learnability_study_covers_every_registered_method_on_the_easy_cohort():
    load_plugins()
    study = load_study("learnability")
    assert sorted(a.method for a in study.arms) == sorted(METHODS.names())
    assert study.dataset.options == {"difficulty": 0.0}
    assert study.pass_criteria == {"auc": 0.85, "dsc_lesion": 0.40}
    assert study.training.validate >= 2 and study.resolve_profile("cpu").width == 0.25


@pytest.mark.slow
def test_validation_curves_and_learnability_verdict_through_the_cli(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "_base.yaml").write_text((REPO / "studies" / "_base.yaml").read_text())
    (studies / "curves.yaml").write_text(STUDY)
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    for args in (["run", "--study", "curves", "--jobs", "2", "--runs-dir", str(runs)],
                 ["report", "curves", "--runs-dir", str(runs), "--out", str(reports)]):
        proc = subprocess.run([BENCH, *args], cwd=tmp_path, capture_output=True, text=True, timeout=3600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    splits = json.loads((runs / "curves" / "splits.json").read_text())
    for arm, column in (("unet3d", "val_dsc_lesion"), ("resnet34", "val_auc")):
        for fold in (0, 1):
            unit = runs / "curves" / arm / f"fold_{fold}" / "seed_0"
            history = pd.read_csv(unit / "history.csv")
            assert list(history["epoch"]) == [1, 2] and history[column].notna().all()
            done = json.loads((unit / "DONE.json").read_text())
            test_ids = set(splits["test"][fold])
            # the validation split is carved from the training fold: fewer training scans, no test scan
            assert done["validation_cases"] > 0
            assert done["train_cases"] + done["validation_cases"] + len(test_ids) == 20
            assert set(pd.read_parquet(unit / "per_case.parquet")["case_id"]) == test_ids
    out = reports / "curves"
    assert (out / "learning.png").stat().st_size > 0
    curves = pd.read_csv(out / "learning.csv")
    assert set(curves["arm"]) == {"unet3d", "resnet34"} and {"loss_mean", "val_auc_mean"} <= set(curves.columns)
    verdict = pd.read_csv(out / "learnability.csv").set_index("arm")
    assert bool(verdict.loc["resnet34", "passes"])  # AUC ≥ 0 always holds
    assert not bool(verdict.loc["unet3d", "passes"])  # DSC ≥ 1.01 never does
    report = (out / "report.md").read_text()
    assert "## Learning" in report and "![Learning curves](learning.png)" in report and "not reached: 3D UNet" in report

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("curves")
    units = client.search_runs([experiment.experiment_id], filter_string="tags.`bench.kind` = 'unit'")
    resnet = [r for r in units if r.data.params.get("method") == "resnet34"]
    assert len(units) == 4 and resnet
    assert [m.step for m in client.get_metric_history(resnet[0].info.run_id, "val/auc")] == [1, 2]
