"""Seed 004's Tables 1–3 and S1 as studies: each runs end to end through the CLI on the `smoke` profile;
the reports have the tables' rows and columns, the noise study its Table 2 layout at every σ with paired
tests at each σ, the curves and the uncertainty figures (UML Fig. 3), and the calibration / uncertainty
section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import STUDY_TEST_FOLDS, bench_in_process, study_with_folds

from bench.study import load_study

METRICS = ["acc", "f1", "dsc", "dsc_lesion", "assd"]

# study → (arm labels in the paper table's row order, reference arm)
STUDIES = {
    "uml_comparison": (["EC", "TBraTS", "UNETR (for TransUNet)", "BCS", "DSI-Net", "Joint Model", "UML"], "uml"),
    "noise_robustness": (["BCS", "DSI-Net", "Joint Model", "UML"], "uml"),
    "uml_ablation": (["MD", "MD + UN", "MD + UI", "MD + UN + UI (UML)"], "full"),
    "uml_loss_terms": (["0.5 L_cls", "0.5 L_cls + 0.4 L_seg", "0.5 L_cls + 0.4 L_seg + 0.1 L_mut"], "all_terms"),
}
FOLDS = STUDY_TEST_FOLDS


@pytest.mark.parametrize("study", list(STUDIES))
def test_the_uml_studies_load_with_their_reference(study):
    loaded = load_study(study)
    assert [a.label for a in loaded.arms] == STUDIES[study][0] and loaded.reference == STUDIES[study][1]
    assert loaded.metrics == tuple(METRICS) and loaded.resolve_profile("cpu").width == 0.25
    if study == "noise_robustness":
        assert loaded.noise == (0.0, 0.03, 0.05) and loaded.noise_units == "range"


def _run(study: str, runs: Path, reports: Path) -> Path:
    path = study_with_folds(runs.parent, study, FOLDS)
    bench_in_process("run", "--study", path, "--profile", "smoke", "--jobs", "2", "--runs-dir", runs, "--no-mlflow")
    bench_in_process("report", path, "--runs-dir", runs, "--out", reports)
    return reports / study


def _table(out: Path, study: str) -> pd.DataFrame:
    table = pd.read_csv(out / "table.csv")
    assert list(table["label"]) == STUDIES[study][0] and (table["n_folds"] == FOLDS).all()
    return table


@pytest.mark.slow
@pytest.mark.parametrize("study", ["uml_comparison", "uml_ablation", "uml_loss_terms"])
def test_uml_table_study_runs_on_smoke(tmp_path, study):
    out = _run(study, tmp_path / "runs", tmp_path / "reports")
    table = _table(out, study)
    joint = table["arm"].isin(["bcs", "dsi_net", "joint", "uml", "md", "md_un", "md_ui", "full", "cls_only", "cls_seg",
                               "all_terms"])
    for metric in METRICS:  # every joint arm has every column; EC only ACC/F1, the segmenters only Dice/ASSD
        assert table.loc[joint, f"{metric}_mean"].notna().all(), metric
    if study == "uml_comparison":
        by_arm = table.set_index("arm")
        assert np.isnan(by_arm.loc["ec", "dsc_mean"]) and np.isnan(by_arm.loc["tbrats", "acc_mean"])
        uncertainty = pd.read_csv(out / "uncertainty.csv").set_index("arm")
        # image-level uncertainty for the evidential classifiers, pixel-wise for the evidential segmenters
        assert uncertainty.loc[["ec", "uml"], "u_correct"].notna().all()
        assert uncertainty.loc[["tbrats", "uml"], "voxel_u_right"].notna().all()
        assert np.isnan(uncertainty.loc["bcs", "u_correct"]) and uncertainty.loc["bcs", "ece_mean"] >= 0
        assert (out / "uncertainty_maps.png").stat().st_size > 0
        assert "## Calibration and uncertainty" in (out / "report.md").read_text()
    versus = pd.read_csv(out / "versus_reference.csv")
    assert set(versus["arm_b"]) == {STUDIES[study][1]}


@pytest.mark.slow
def test_noise_robustness_runs_on_smoke_with_the_table_2_layout(tmp_path):
    runs = tmp_path / "runs"
    out = _run("noise_robustness", runs, tmp_path / "reports")
    _table(out, "noise_robustness")
    per_case = pd.concat([pd.read_parquet(p) for p in runs.glob("noise_robustness/*/fold_*/seed_0/per_case.parquet")])
    assert sorted(per_case["sigma"].unique()) == [0.0, 0.03, 0.05]
    # identical noise for every arm: the noise standard deviation of a (case, σ) is the same in every arm
    spread = per_case.groupby(["case_id", "sigma"])["noise_sd"].agg(["min", "max", "count"])
    assert (spread["count"] == 4).all() and np.allclose(spread["min"], spread["max"])
    assert (per_case.loc[per_case["sigma"] == 0, "noise_sd"] == 0).all()
    noise = pd.read_csv(out / "noise_table.csv")
    assert sorted(noise["sigma"].unique()) == [0.03, 0.05]
    assert list(noise.loc[noise["sigma"] == 0.05, "label"]) == STUDIES["noise_robustness"][0]
    for metric in METRICS:
        assert noise[f"{metric}_mean"].notna().all(), metric
    markdown = (out / "noise_table.md").read_text()
    assert "**σ = 0.03**" in markdown and "**σ = 0.05**" in markdown
    report = (out / "report.md").read_text()
    assert "## Robustness to Gaussian noise" in report and "[0, 1]-scaled image" in report
    assert (out / "noise.png").stat().st_size > 0 and (out / "uncertainty_maps.png").stat().st_size > 0
    uncertainty = pd.read_csv(out / "uncertainty.csv").set_index("arm")
    assert {"u_sigma_0", "u_sigma_0.03", "u_sigma_0.05"} <= set(uncertainty.columns)
    assert uncertainty.loc["uml", ["u_sigma_0", "u_sigma_0.05", "voxel_u_wrong_sigma_0.05"]].notna().all()
