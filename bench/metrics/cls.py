"""Classification metrics over a set of cases (NMOSD = 1 is the positive class), docs/statistics.md.

ACC, SN (sensitivity, NMOSD), SP (specificity, MS), AUC, F1 (NMOSD), balanced accuracy, ECE and
Brier score. AUC is NaN when only one class is present. ECE uses 10 equal-width bins of the
predicted class's confidence, weighted by bin size; Brier is the mean squared error of the
NMOSD probability.
"""

from __future__ import annotations

import numpy as np

__all__ = ["classification_metrics", "expected_calibration_error"]


def expected_calibration_error(prob_pos: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE of the predicted class's confidence (binary), ``bins`` equal-width bins on [0.5, 1] ∪ edges."""
    pred = (prob_pos >= 0.5).astype(int)
    confidence = np.where(pred == 1, prob_pos, 1 - prob_pos)
    correct = (pred == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def classification_metrics(labels, prob_pos) -> dict[str, float]:
    """Metrics from true labels (0/1) and NMOSD probabilities; the prediction is ``prob >= 0.5``.

    >>> m = classification_metrics([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9])
    >>> m["acc"], m["sn"], m["sp"], m["auc"]
    (0.75, 1.0, 0.5, 1.0)
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=int)
    p = np.asarray(prob_pos, dtype=float)
    if y.shape != p.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} must be equal-length 1-D arrays")
    pred = (p >= 0.5).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    sn = tp / (tp + fn) if tp + fn else float("nan")
    sp = tn / (tn + fp) if tn + fp else float("nan")
    both = len(np.unique(y)) == 2
    return {
        "acc": (tp + tn) / len(y),
        "sn": sn,
        "sp": sp,
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "f1": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0,
        "bacc": (sn + sp) / 2 if both else float("nan"),
        "ece": expected_calibration_error(p, y),
        "brier": float(np.mean((p - y) ** 2)),
    }
