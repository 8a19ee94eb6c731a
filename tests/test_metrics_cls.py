"""Classification metrics against hand-computed values."""

import math

import numpy as np
import pytest

from bench.metrics.cls import classification_metrics, expected_calibration_error

LABELS = [0, 0, 1, 1, 1]
PROBS = [0.15, 0.65, 0.75, 0.35, 0.95]  # predictions 0, 1, 1, 0, 1: tp 2, tn 1, fp 1, fn 1


def test_hand_computed():
    m = classification_metrics(LABELS, PROBS)
    assert m["acc"] == pytest.approx(3 / 5)
    assert m["sn"] == pytest.approx(2 / 3)
    assert m["sp"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["bacc"] == pytest.approx(7 / 12)
    assert m["auc"] == pytest.approx(5 / 6)  # 5 of 6 positive-negative pairs ordered
    assert m["brier"] == pytest.approx((0.15**2 + 0.65**2 + 0.25**2 + 0.65**2 + 0.05**2) / 5)


def test_ece_hand_computed():
    # confidences .85 ✓, .65 ✗, .75 ✓, .65 ✗, .95 ✓ → bins (.6,.7]: 2 wrong at .65; others one right each
    expected = 0.4 * 0.65 + 0.2 * 0.15 + 0.2 * 0.25 + 0.2 * 0.05
    assert expected_calibration_error(np.array(PROBS), np.array(LABELS)) == pytest.approx(expected)


def test_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    p = rng.random(50)
    assert classification_metrics(y, p)["auc"] == pytest.approx(roc_auc_score(y, p))


def test_single_class_auc_is_nan():
    m = classification_metrics([1, 1], [0.9, 0.2])
    assert math.isnan(m["auc"]) and math.isnan(m["sp"]) and m["sn"] == 0.5


def test_bad_shapes():
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0.5])
