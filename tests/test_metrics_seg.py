"""Segmentation metrics against hand-computed values, including every empty-mask case."""

import math

import numpy as np
import pytest

from bench.metrics.seg import lesion_f1, segmentation_metrics


def _masks():
    ref = np.zeros((4, 4, 4), bool)
    ref[0:2, 0:2, 0:2] = True  # 8 voxels, one lesion
    pred = np.zeros((4, 4, 4), bool)
    pred[0:2, 0:2, 0:1] = True  # 4 voxels inside the reference
    pred[3, 3, 3] = True  # one false-positive lesion
    return pred, ref


def test_overlap_metrics_hand_computed():
    pred, ref = _masks()
    m = segmentation_metrics(pred, ref)
    assert m["dsc"] == pytest.approx(8 / 13)
    assert m["ppv"] == pytest.approx(4 / 5)
    assert m["tpr"] == pytest.approx(4 / 8)
    assert m["vd"] == pytest.approx(3 / 8)
    assert m["lesion_f1"] == pytest.approx(2 / 3)  # recall 1/1, precision 1/2
    assert not m["imputed"] and not m["ref_empty"] and not m["pred_empty"]


def test_surface_distances_hand_computed():
    pred, ref = _masks()
    m = segmentation_metrics(pred, ref)
    # pred→ref: four 0s and sqrt(12) from (3,3,3) to (1,1,1); ref→pred: four 0s and four 1s.
    assert m["hd95"] == pytest.approx(max(0.8 * math.sqrt(12), 1.0))
    assert m["assd"] == pytest.approx((math.sqrt(12) + 4) / 13)


def test_surface_distances_use_spacing():
    pred, ref = _masks()
    m = segmentation_metrics(pred, ref, spacing=(2.0, 1.0, 1.0))
    assert m["hd95"] == pytest.approx(0.8 * math.sqrt(16 + 4 + 4))


@pytest.mark.parametrize(
    "pred_empty, ref_empty, expected",
    [
        (True, True, dict(dsc=1.0, ppv=1.0, tpr=1.0, vd=0.0, hd95=0.0, assd=0.0, lesion_f1=1.0)),
        (False, True, dict(dsc=0.0, ppv=0.0, tpr=0.0, vd=1.0, hd95=math.sqrt(48), assd=math.sqrt(48), lesion_f1=0.0)),
        (True, False, dict(dsc=0.0, ppv=0.0, tpr=0.0, vd=1.0, hd95=math.sqrt(48), assd=math.sqrt(48), lesion_f1=0.0)),
    ],
)
def test_empty_mask_policy(pred_empty, ref_empty, expected):
    full = np.zeros((4, 4, 4), bool)
    full[1:3, 1:3, 1:3] = True
    empty = np.zeros((4, 4, 4), bool)
    m = segmentation_metrics(empty if pred_empty else full, empty if ref_empty else full)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key
    assert m["imputed"] and m["ref_empty"] == ref_empty and m["pred_empty"] == pred_empty


def test_diagonal_uses_spacing():
    full = np.zeros((4, 4, 4), bool)
    full[0, 0, 0] = True
    m = segmentation_metrics(np.zeros_like(full), full, spacing=(2.0, 1.0, 1.0))
    assert m["hd95"] == pytest.approx(math.sqrt(64 + 16 + 16))


def test_lesion_f1_counts_diagonal_neighbours_as_one_lesion():
    ref = np.zeros((5, 5, 5), bool)
    ref[1, 1, 1] = ref[2, 2, 2] = True  # 26-connected: one lesion
    pred = np.zeros_like(ref)
    pred[1, 1, 1] = True
    assert lesion_f1(pred, ref) == 1.0


def test_perfect_prediction():
    _, ref = _masks()
    m = segmentation_metrics(ref, ref)
    assert (m["dsc"], m["hd95"], m["assd"], m["vd"]) == (1.0, 0.0, 0.0, 0.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        segmentation_metrics(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))
