"""End to end through the real CLI on the `smoke` profile: run, rerun, kill + resume, changed spec,
a failing unit, MLflow contents, the report, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, held_env, wait_for, write_dataset

pytestmark = pytest.mark.slow
BENCH = str(Path(sys.executable).with_name("bench"))
PER_CASE_COLUMNS = {"study", "arm", "method", "fold", "seed", "sigma", "case_id", "patient_id", "label", "prob_nmosd",
                    "pred", "dsc", "ppv", "tpr", "vd", "hd95", "assd", "lesion_f1", "ref_empty", "pred_empty",
                    "spec_hash", "split_hash", "code_version"}


def _done(root: Path) -> list[Path]:
    return sorted(root.glob("*/fold_*/seed_*/DONE.json"))


def test_run_writes_every_unit(smoke_runs):
    runs, proc, _ = smoke_runs
    assert "9 unit(s) trained, 0 already done, 0 failed" in proc.stderr
    assert len(_done(runs / "smoke")) == 9
    for unit in (runs / "smoke").glob("*/fold_*/seed_*"):
        expected = {"spec.json", "history.csv", "per_case.parquet", "predictions.npz", "model.pt", "DONE.json"}
        assert expected <= {p.name for p in unit.iterdir()}
        spec, done = json.loads((unit / "spec.json").read_text()), json.loads((unit / "DONE.json").read_text())
        assert spec["spec_hash"] == done["spec_hash"]
        assert len(pd.read_csv(unit / "history.csv")) == 2  # the smoke profile's epochs


def test_per_case_rows_come_from_test_folds_only(smoke_runs):
    runs, _, _ = smoke_runs
    splits = json.loads((runs / "smoke" / "splits.json").read_text())
    rows = pd.concat([pd.read_parquet(p.parent / "per_case.parquet") for p in _done(runs / "smoke")])
    assert PER_CASE_COLUMNS <= set(rows.columns)
    assert rows["split_hash"].nunique() == 1 and rows["split_hash"].iloc[0] == splits["hash"]
    for (arm, fold), part in rows.groupby(["arm", "fold"]):
        assert set(part["case_id"]) == set(splits["test"][fold]), (arm, fold)
    for _, part in rows.groupby("arm"):
        assert sorted(part["case_id"]) == sorted(s for fold in splits["test"] for s in fold)  # each case once
    seg, cls = rows[rows["arm"].str.startswith("unet3d")], rows[rows["arm"] == "resnet34"]
    assert seg["dsc"].between(0, 1).all() and seg["prob_nmosd"].isna().all()
    assert cls["prob_nmosd"].between(0, 1).all() and cls["dsc"].isna().all()


def test_second_run_trains_nothing(smoke_runs, bench_cli):
    runs, _, _ = smoke_runs
    before = {p: p.stat().st_mtime_ns for p in _done(runs / "smoke")}
    result = bench_cli("run", "--study", "smoke", "--profile", "smoke", "--runs-dir", runs)
    assert result.code == 0, result
    assert "nothing to train" in result.err and "0 unit(s) trained, 9 already done" in result.err
    assert {p: p.stat().st_mtime_ns for p in _done(runs / "smoke")} == before


def test_mlflow_has_one_child_run_per_unit(smoke_runs):
    from mlflow.tracking import MlflowClient

    runs, _, _ = smoke_runs
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    units = client.search_runs([experiment.experiment_id], filter_string="tags.`bench.kind` = 'unit'")
    hashes = {json.loads(p.read_text())["spec_hash"] for p in _done(runs / "smoke")}
    assert len(units) == 9 and {r.data.tags["bench.spec_hash"] for r in units} == hashes
    machines = {json.loads(p.read_text())["hardware"] for p in _done(runs / "smoke")}
    assert {r.data.tags["bench.hardware"] for r in units} == machines
    parents = {r.info.run_id for r in client.search_runs([experiment.experiment_id], filter_string="tags.`bench.kind` = 'invocation'")}
    for run in units:
        assert run.data.tags["mlflow.parentRunId"] in parents and run.info.status == "FINISHED"
        assert run.data.params["profile.size"] == "32" and run.data.params["study"] == "smoke"
        assert run.data.params["method"] in ("unet3d", "resnet34")
        key = "test/dsc" if run.data.params["method"] == "unet3d" else "test/auc"
        assert key in run.data.metrics
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
        assert "per_case.parquet" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_sync_is_idempotent(smoke_runs, bench_cli):
    runs, _, _ = smoke_runs
    result = bench_cli("sync", "smoke", "--runs-dir", runs)
    assert result.code == 0 and "0 unit(s) added to MLflow, 9 already there" in result.out


def test_report_from_run_directories(smoke_runs, bench_cli, tmp_path):
    runs, _, _ = smoke_runs
    result = bench_cli("report", "smoke", "--runs-dir", runs, "--out", tmp_path)
    assert result.code == 0, result
    out = tmp_path / "smoke"
    for name in ("table.md", "table.tex", "table.csv", "folds.csv", "roc.png", "roc.pdf", "report.md", "report.html",
                 "significance.md", "significance.csv", "provenance.json"):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "table.csv")
    assert list(table["arm"]) == ["unet3d", "unet3d_dice", "resnet34"] and (table["n_folds"] == 3).all()
    assert "| 3D UNet |" in (out / "table.md").read_text() and (tmp_path / "README.md").exists()
    pairs = pd.read_csv(out / "significance.csv")  # the two UNet arms share the segmentation metrics
    assert set(pairs["metric"]) == {"dsc", "ppv", "tpr", "vd", "hd95", "lesion_f1"}
    assert set(pairs["test"]) == {"Wilcoxon signed-rank"} and pairs["p_adj"].between(0, 1).all()
    # the provenance names the machine the units trained on (as their DONE.json says), not the reporting one
    import torch

    from bench.machine import cpu_model

    trained_on = {json.loads(p.read_text())["hardware"] for p in _done(runs / "smoke")}
    assert len(trained_on) == 1
    line = trained_on.pop()
    assert line.startswith(cpu_model()) and f"torch {torch.__version__}" in line
    assert re.search(r", cpu, \d+ threads?, ", line), line
    assert json.loads((out / "provenance.json").read_text())["hardware (training)"] == line


def _kill_after_first_unit(runs: Path) -> int:
    marker = runs.parent / "held"  # units run in order; the second one blocks at its start until killed
    proc = subprocess.Popen([BENCH, "run", "--study", "smoke", "--profile", "smoke", "--arms", "unet3d",
                             "--runs-dir", str(runs), "--no-mlflow"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env=held_env("unit unet3d/fold_1/seed_0", marker))
    wait_for(marker.exists, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(_done(runs / "smoke"))


def test_killed_run_resumes_only_missing_units_and_changed_specs_rerun(tmp_path, bench_cli):
    runs = tmp_path / "runs"
    finished = _kill_after_first_unit(runs)
    assert 1 <= finished < 3
    kept = {p: p.read_text() for p in _done(runs / "smoke")}
    result = bench_cli("run", "--study", "smoke", "--profile", "smoke", "--arms", "unet3d", "--runs-dir", runs, "--no-mlflow")
    assert result.code == 0, result
    assert f"{3 - finished} unit(s) trained, {finished} already done" in result.err
    assert all(p.read_text() == text for p, text in kept.items())  # finished units untouched
    # a changed spec (other loss weights) archives the old results and reruns, never mixes
    study = tmp_path / "studies" / "smoke.yaml"
    study.parent.mkdir()
    text = (REPO / "studies" / "smoke.yaml").read_text().replace("include: _base.yaml", f"include: {REPO / 'studies' / '_base.yaml'}")
    study.write_text(text.replace("    method: unet3d\n", "    method: unet3d\n    weights: {dice: 2.0}\n"))
    result = bench_cli("run", "--study", study, "--profile", "smoke", "--arms", "unet3d", "--runs-dir", runs, "--no-mlflow")
    assert result.code == 0 and "3 unit(s) trained, 0 already done" in result.err and "spec changed" in result.err
    assert len(list((runs / "smoke" / ".stale").glob("*/unet3d/fold_*/seed_0/DONE.json"))) == 3


def test_a_failing_unit_is_recorded_and_the_others_finish(tmp_path, bench_cli):
    from bench.losses import SegmentationLoss
    from bench.registry import METHODS, MethodSpec

    def broken(in_channels, num_classes, spatial_size, width):
        raise RuntimeError("deliberately broken builder")

    METHODS.register("test_broken", MethodSpec("test_broken", "seg", broken, SegmentationLoss, {"dice": 1.0, "bce": 1.0}))
    try:
        study = tmp_path / "failing.yaml"
        study.write_text(f"include: {REPO / 'studies' / '_base.yaml'}\ntitle: F\nfolds: 2\n"
                         "arms:\n  broken: {method: test_broken}\n  unet: {method: unet3d}\n")
        result = bench_cli("run", "--study", study, "--profile", "smoke", "--runs-dir", tmp_path / "runs", "--no-mlflow")
    finally:
        METHODS._items.pop("test_broken")
    assert result.code == 1, result
    assert "2 unit(s) trained, 0 already done, 2 failed" in result.err
    failure = json.loads((tmp_path / "runs" / "failing" / "broken" / "fold_0" / "seed_0" / "FAILED.json").read_text())
    assert "deliberately broken builder" in failure["error"] and "Traceback" in failure["traceback"]


def _assert_one_line_error(result, *fragments):
    assert result.code == 2, result
    lines = [line for line in result.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.err, result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_unknown_study_console_script():
    proc = subprocess.run([BENCH, "run", "--study", "smok"], cwd=REPO, capture_output=True, text=True, timeout=600)
    _assert_one_line_error(type("R", (), {"code": proc.returncode, "err": proc.stderr})(), "unknown study 'smok'", "did you mean 'smoke'")


def test_error_unknown_method_in_study(tmp_path, bench_cli):
    (tmp_path / "s.yaml").write_text("title: T\narms:\n  a: {method: resnet43}\n")
    _assert_one_line_error(bench_cli("run", "--study", tmp_path / "s.yaml"), "s.yaml: arms.a.method", "did you mean 'resnet34'")


def test_error_unknown_study_key(tmp_path, bench_cli):
    (tmp_path / "s.yaml").write_text("title: T\nepochs: 3\narms:\n  a: {method: unet3d}\n")
    _assert_one_line_error(bench_cli("check", tmp_path / "s.yaml"), "s.yaml: epochs: unknown key")


def _manifest_study(tmp_path: Path) -> Path:
    manifest = write_dataset(tmp_path / "data", n_per_class=2)
    study = tmp_path / "s.yaml"
    study.write_text(f"title: T\nfolds: 2\ndataset: {{name: manifest, options: {{path: '{manifest}'}}}}\n"
                     "arms:\n  a: {method: unet3d}\n")
    return study


def test_error_missing_image_file(tmp_path, bench_cli):
    study = _manifest_study(tmp_path)
    (tmp_path / "data" / "img_2.nii.gz").unlink()
    _assert_one_line_error(bench_cli("run", "--study", study, "--profile", "smoke", "--runs-dir", tmp_path / "r"),
                           "manifest.csv:4: image_path", "img_2.nii.gz' does not exist")


def test_error_mask_shape_mismatch(tmp_path, bench_cli):
    import numpy as np
    from conftest import save_nifti

    study = _manifest_study(tmp_path)
    save_nifti(tmp_path / "data" / "mask_1.nii.gz", np.zeros((4, 4, 4), np.uint8))
    _assert_one_line_error(bench_cli("run", "--study", study, "--profile", "smoke", "--runs-dir", tmp_path / "r"),
                           "mask_1.nii.gz: mask shape (4, 4, 4) does not match its image img_1.nii.gz")


def test_check_and_ls(bench_cli):
    result = bench_cli("check", "smoke", "--profile", "smoke")
    assert result.code == 0 and result.err.count(" ok ") == 3, result
    result = bench_cli("ls", "methods", "--profile", "smoke")
    assert result.code == 0 and "unet3d" in result.out and "resnet34" in result.out and "0.30 M" in result.out
    result = bench_cli("ls", "studies")
    assert result.code == 0 and "smoke" in result.out


def test_report_warns_when_rows_come_from_several_or_uncommitted_code_versions_or_machines(smoke_runs, bench_cli, tmp_path):
    import shutil

    runs, _, _ = smoke_runs
    copy = tmp_path / "runs"
    shutil.copytree(runs / "smoke", copy / "smoke")
    per_case = next(copy.glob("smoke/unet3d/fold_0/seed_0/per_case.parquet"))
    frame = pd.read_parquet(per_case)
    frame["code_version"] = "0.0.0+0ther00-dirty"  # a unit trained from a working tree with uncommitted changes
    frame.to_parquet(per_case, index=False)
    from bench.store import DONE, file_digests, read_json, write_json_atomic

    done = read_json(per_case.parent / DONE)  # a unit really made by other code: its DONE.json vouches for the file
    write_json_atomic(per_case.parent / DONE, {**done, "files": file_digests(per_case.parent), "hardware": "Other CPU"})
    result = bench_cli("report", "smoke", "--runs-dir", copy, "--out", tmp_path / "reports")
    assert result.code == 0, result
    text = (tmp_path / "reports" / "smoke" / "report.md").read_text()
    assert "come from 2 code versions" in text
    assert "**Warning:** 0.0.0+0ther00-dirty" in text and "uncommitted changes" in text  # named, not just counted
    assert "trained on 2 different machines" in text  # and that unit trained on another machine
    machines = json.loads((tmp_path / "reports" / "smoke" / "provenance.json").read_text())["hardware (training)"]
    assert set(machines.split("; ")) == {"Other CPU (1 unit)", f"{done['hardware']} (8 units)"}


def test_ctrl_c_on_a_pool_run_keeps_finished_units(tmp_path, bench_cli):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([BENCH, "run", "--study", "smoke", "--profile", "smoke", "--jobs", "2", "--runs-dir", str(runs),
                             "--no-mlflow"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            env=held_env("unit resnet34/fold_2/seed_0", tmp_path / "held"))
    # one worker holds at the start of the last ResNet34 unit; Ctrl-C comes once the other has finished a unit
    wait_for(lambda: (tmp_path / "held").exists() and _done(runs / "smoke"), proc)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the whole process group
    _, err = proc.communicate(timeout=1800)
    finished = len(_done(runs / "smoke"))
    assert proc.returncode == 130 and "rerun the same command to resume" in err, err[-2000:]
    assert 1 <= finished < 9
    result = bench_cli("run", "--study", "smoke", "--profile", "smoke", "--runs-dir", runs, "--no-mlflow")
    assert result.code == 0 and f"{9 - finished} unit(s) trained, {finished} already done" in result.err, result


def test_report_all_rebuilds_every_study_with_runs(smoke_runs, bench_cli, tmp_path):
    runs, _, _ = smoke_runs
    result = bench_cli("report", "--all", "--runs-dir", runs, "--out", tmp_path)
    assert result.code == 0 and "smoke: wrote" in result.out, result
    assert (tmp_path / "smoke" / "report.html").exists() and "smoke" in (tmp_path / "README.md").read_text()
    assert bench_cli("report", "--runs-dir", runs).code == 2  # neither a study nor --all
