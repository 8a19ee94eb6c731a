"""The joint-model paper's Tables 3–4 as studies: both run end to end through the CLI on the `smoke` profile; their
reports have the tables' rows (the joint model last) and columns and the ROC panel (paper Fig. 9); the
`cpu` profile runs them at width 0.25 and `paper` at full width."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import STUDY_TEST_FOLDS, bench_in_process, study_with_folds

from bench.study import load_study

# study → (arm labels in the paper table's row order, metric columns)
STUDIES = {
    "comparison_seg": (["3D UNet", "VNet", "AttentionUNet", "Joint Model"], ["dsc", "ppv", "tpr", "vd", "dsc_lesion"]),
    "comparison_cls": (["ResNet34", "ResNet50", "ResNet101", "ResNet152", "DenseNet121", "SENet50", "Joint Model"],
                       ["acc", "sn", "sp", "auc"]),
}
FOLDS = STUDY_TEST_FOLDS


@pytest.mark.parametrize("study", list(STUDIES))
def test_profiles_of_the_comparison_studies(study):
    loaded = load_study(study)
    assert loaded.resolve_profile("cpu").width == 0.25 and loaded.resolve_profile("paper").width == 1.0
    assert loaded.reference == "joint" and loaded.arms[-1].method == "joint_model"


def test_every_segmenter_of_table_3_trains_with_the_joint_models_dice_loss():
    # §4.3 keeps the methods' primary parameters consistent: the baselines' L_seg is the joint model's 1 − batch Dice.
    import torch

    from bench.outputs import ModelOutput
    from bench.registry import METHODS, load_plugins

    load_plugins()
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, 8, generator=g)
    batch = {"mask": (torch.rand(2, 1, 8, 8, 8, generator=g) > 0.8).float(), "label": torch.tensor([0, 1])}
    joint_terms = METHODS.get("joint_model").make_loss({}).terms(ModelOutput(seg_logits=logits), batch, progress=0.5)
    for arm in load_study("comparison_seg").arms[:-1]:
        loss = METHODS.get(arm.method).make_loss(arm.weights)
        total, terms = loss(ModelOutput(seg_logits=logits), batch, progress=0.5)
        assert terms["bce"] > 0  # the term is computed, and weighted 0
        assert torch.allclose(total, joint_terms["seg"]), arm.name


@pytest.mark.slow
@pytest.mark.parametrize("study", list(STUDIES))
def test_comparison_study_runs_on_smoke_with_the_paper_table_layout(tmp_path, study):
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    path = study_with_folds(tmp_path, study, FOLDS)
    bench_in_process("run", "--study", path, "--profile", "smoke", "--jobs", "2", "--runs-dir", runs, "--no-mlflow")
    bench_in_process("report", path, "--runs-dir", runs, "--out", reports)
    labels, metrics = STUDIES[study]
    table = pd.read_csv(reports / study / "table.csv")
    assert list(table["label"]) == labels and (table["n_folds"] == FOLDS).all()
    for metric in metrics:
        assert table[f"{metric}_mean"].notna().all(), metric
    header = (reports / study / "table.md").read_text().splitlines()[0]
    assert header.count("|") == len(metrics) + 2
    versus = pd.read_csv(reports / study / "versus_reference.csv")  # every baseline against the joint model
    assert set(versus["arm_a"]) == set(table["arm"]) - {"joint"} and set(versus["arm_b"]) == {"joint"}
    assert set(versus["metric"]) == set(metrics)
    if "auc" in metrics:
        assert (reports / study / "roc.png").stat().st_size > 0
