"""Calibration and uncertainty tables (bench.report.reliability) on hand-made per-case rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.aggregate import fold_metrics, with_derived_columns
from bench.report.reliability import error_detection_auc, uncertainty_table


def _rows() -> pd.DataFrame:
    rows = []
    # fold 0: labels 0 0 1 1, predictions 0 1 1 1 (case c1 wrong); fold 1: all right
    spec = [(0, "c0", 0, 0.2, 0.1), (0, "c1", 0, 0.7, 0.6), (0, "c2", 1, 0.8, 0.2), (0, "c3", 1, 0.9, 0.1),
            (1, "c4", 0, 0.1, 0.3), (1, "c5", 0, 0.3, 0.2), (1, "c6", 1, 0.6, 0.4), (1, "c7", 1, 0.7, 0.3)]
    for fold, case, label, prob, u in spec:
        for sigma, shift in ((0.0, 0.0), (0.05, 0.1)):
            rows.append({"arm": "evid", "method": "m", "study": "s", "fold": fold, "seed": 0, "sigma": sigma,
                         "case_id": case, "label": label, "prob_nmosd": prob, "pred": int(prob >= 0.5),
                         "uncertainty": u + shift, "voxel_unc_wrong": 0.5 + shift, "voxel_unc_right": 0.1})
    return pd.DataFrame(rows)


def test_error_detection_auc():
    assert error_detection_auc(np.array([0.9, 0.1, 0.2, 0.3]), np.array([1, 0, 0, 0])) == 1.0
    assert error_detection_auc(np.array([0.1, 0.9, 0.2]), np.array([1, 0, 0])) == 0.0
    assert math.isnan(error_detection_auc(np.array([0.1, 0.2]), np.array([0, 0])))


def test_uncertainty_table_hand_values():
    per_case = _rows()
    markdown, table = uncertainty_table(per_case, fold_metrics(per_case), ["evid"], {"evid": "Evidential"})
    row = table.iloc[0]
    # seven correct cases: (0.1 + 0.2 + 0.1 + 0.3 + 0.2 + 0.4 + 0.3) / 7; one wrong: 0.6
    assert row["u_correct"] == pytest.approx(1.6 / 7) and row["u_wrong"] == pytest.approx(0.6)
    assert row["u_error_auc"] == pytest.approx(1.0)  # the wrong case is the most uncertain
    assert row["u_sigma_0.05"] == pytest.approx((1.6 + 0.6) / 8 + 0.1)
    assert row["voxel_u_wrong"] == pytest.approx(0.5) and row["voxel_u_wrong_sigma_0.05"] == pytest.approx(0.6)
    # Brier of fold 0: ((0.2)² + (0.7)² + (0.2)² + (0.1)²) / 4 = 0.145; fold 1: (0.01 + 0.09 + 0.16 + 0.09) / 4 = 0.0875
    assert row["brier_mean"] == pytest.approx((0.145 + 0.0875) / 2)
    assert "| Evidential |" in markdown and "U (σ = 0.05)" in markdown


def test_fold_metrics_carry_the_uncertainties_per_sigma():
    folds = fold_metrics(_rows()).set_index(["fold", "sigma"])
    assert folds.loc[(0, 0.0), "uncertainty_correct"] == pytest.approx((0.1 + 0.2 + 0.1) / 3)
    assert folds.loc[(0, 0.0), "uncertainty_wrong"] == pytest.approx(0.6)
    assert folds.loc[(1, 0.05), "uncertainty_mean"] == pytest.approx((0.3 + 0.2 + 0.4 + 0.3) / 4 + 0.1)
    assert np.isnan(folds.loc[(1, 0.0), "uncertainty_wrong"])  # fold 1 has no wrong case
    assert folds.loc[(1, 0.05), "voxel_unc_wrong"] == pytest.approx(0.6)


def test_dsc_over_lesion_scans_leaves_out_empty_references_and_their_tests_pair_only_those():
    from bench.report.significance import compare

    # case c0 has no lesion: arm "empty" predicts nothing everywhere (DSC 1 there, 0 on lesion scans)
    rows = []
    for arm, dscs in (("empty", [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]), ("seg", [0.0, 0.5, 0.6, 0.4, 0.7, 0.3])):
        for i, dsc in enumerate(dscs):
            rows.append({"arm": arm, "method": "m", "study": "s", "fold": i % 2, "seed": 0, "sigma": 0.0,
                         "case_id": f"c{i}", "label": 0, "dsc": dsc, "ref_empty": i == 0, "imputed": i == 0,
                         "split_hash": "h"})
    per_case = pd.DataFrame(rows)
    folds = fold_metrics(per_case).set_index(["arm", "fold"])
    assert folds.loc[("empty", 0), "dsc"] == pytest.approx(1 / 3)  # c0, c2, c4
    assert folds.loc[("empty", 0), "dsc_lesion"] == 0.0  # c2, c4 only
    assert folds.loc[("seg", 0), "dsc_lesion"] == pytest.approx((0.6 + 0.7) / 2)
    test = compare(with_derived_columns(per_case), "seg", "empty", "dsc_lesion")
    assert test.n == 5 and test.effect == pytest.approx(0.5)  # five lesion scans, mean difference 2.5 / 5
