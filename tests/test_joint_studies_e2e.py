"""The joint-model paper's Tables 5–9 as studies: all four run end to end through the CLI on the `smoke` profile and
their reports have the tables' rows and columns, the CAM maps and the segmentation overlays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import STUDY_TEST_FOLDS, bench_in_process, study_with_folds

pytestmark = pytest.mark.slow

# study → (arm labels in the paper table's row order, metric columns)
STUDIES = {
    "joint_vs_single": (["Only Seg Model", "Only Cls Model", "Joint Model"],
                        ["dsc", "ppv", "tpr", "vd", "dsc_lesion", "acc", "sn", "sp", "auc"]),
    "ablation_share": (["w/o share", "Only local", "Only global", "Joint Model"],
                       ["dsc", "ppv", "tpr", "vd", "dsc_lesion", "acc", "sn", "sp", "auc"]),
    "ablation_lgm": (["w/o LGM", "dot product", "concat", "dot add", "Joint Model"], ["acc", "sn", "sp", "auc"]),
    "ablation_cross_loss": (["w/o cross loss", "Joint Model", "cross loss into seg", "paper gradients",
                             "paper gradients, InstanceNorm"], ["dsc", "ppv", "tpr", "vd", "dsc_lesion", "acc", "sn", "sp", "auc"]),
}
FOLDS = STUDY_TEST_FOLDS


@pytest.fixture(scope="module")
def joint_runs(tmp_path_factory):
    """Every arm × fold of the four studies (on FOLDS folds) on `smoke`, then their reports."""
    root = tmp_path_factory.mktemp("joint")
    runs, reports = root / "runs", root / "reports"
    for name in STUDIES:
        study = study_with_folds(root, name, FOLDS)
        bench_in_process("run", "--study", study, "--profile", "smoke", "--jobs", "2", "--runs-dir", runs, "--no-mlflow")
        bench_in_process("report", study, "--runs-dir", runs, "--out", reports)
    return runs, reports


@pytest.mark.parametrize("study", list(STUDIES))
def test_study_report_has_the_paper_table_layout(joint_runs, study):
    _, reports = joint_runs
    labels, metrics = STUDIES[study]
    table = pd.read_csv(reports / study / "table.csv")
    assert list(table["label"]) == labels
    assert (table["n_folds"] == FOLDS).all()
    header = (reports / study / "table.md").read_text().splitlines()[0]
    assert header.count("|") == len(metrics) + 2  # Method + one column per metric
    for metric in metrics:
        assert f"{metric}_mean" in table.columns
    assert (reports / study / "roc.png").stat().st_size > 0


def test_single_task_arms_have_only_their_task(joint_runs):
    runs, reports = joint_runs
    rows = pd.concat(pd.read_parquet(p) for p in (runs / "joint_vs_single").glob("*/fold_*/seed_*/per_case.parquet"))
    only_seg, only_cls, joint = (rows[rows["arm"] == a] for a in ("only_seg", "only_cls", "joint"))
    assert only_seg["dsc"].notna().all() and only_seg["prob_nmosd"].isna().all()
    assert only_cls["prob_nmosd"].notna().all() and only_cls["dsc"].isna().all()
    assert joint["dsc"].notna().all() and joint["prob_nmosd"].notna().all()
    table = pd.read_csv(reports / "joint_vs_single" / "table.csv").set_index("arm")
    assert np.isnan(table.loc["only_seg", "auc_mean"]) and np.isnan(table.loc["only_cls", "dsc_mean"])


def test_cam_maps_are_saved_for_every_evaluated_case(joint_runs):
    runs, _ = joint_runs
    for unit in (runs / "ablation_lgm").glob("*/fold_*/seed_*"):
        cases = set(pd.read_parquet(unit / "per_case.parquet")["case_id"])
        with np.load(unit / "cams.npz") as cams:
            assert set(cams.files) == cases
            cam = cams[sorted(cases)[0]]
            assert cam.shape == (32, 32, 32) and cam.dtype == np.uint8 and cam.max() > cam.min()
    # a model without a classifier has no class activation maps
    assert not list((runs / "joint_vs_single" / "only_seg").glob("fold_*/seed_*/cams.npz"))


def test_report_draws_cam_maps_and_overlays(joint_runs):
    _, reports = joint_runs
    out = reports / "ablation_lgm"
    for name in ("cams.png", "cams.pdf", "overlays.png", "overlays.pdf"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "![CAM maps](cams.png)" in report and "![Overlays](overlays.png)" in report
    assert "<img src=\"cams.png\"" in (out / "report.html").read_text()
    # the single-task study: overlays for the segmenting arms, CAM maps for the classifying ones
    assert (reports / "joint_vs_single" / "overlays.png").exists() and (reports / "joint_vs_single" / "cams.png").exists()
