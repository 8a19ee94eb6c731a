"""Classification metrics over a set of cases (NMOSD = 1 is the positive class), docs/statistics.md.

ACC, SN (sensitivity, NMOSD), SP (specificity, MS), AUC, F1 (NMOSD), balanced accuracy, ECE and
Brier score. AUC is NaN when only one class is present. ECE uses 10 equal-width bins of the
predicted class's confidence, weighted by bin size; Brier is the mean squared error of the
NMOSD probability.
"""

from __future__ import annotations

import numpy as np

__all__ = ["classification_metrics", "expected_calibration_error", "batch_metrics", "BATCH_METRICS"]

#: the metrics :func:`batch_metrics` computes (every one of :func:`classification_metrics` but the AUC)
BATCH_METRICS = ("acc", "sn", "sp", "f1", "bacc", "ece", "brier")


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


def batch_metrics(labels, prob_pos, weights=None, bins: int = 10, ece: bool = True) -> dict[str, np.ndarray]:
    """:data:`BATCH_METRICS` of many prediction sets at once: ``prob_pos`` [B, n] (or [n]) against the same
    ``labels`` [n], each case weighted by ``weights`` [B, n] (a bootstrap's counts; default 1).

    Row b equals :func:`classification_metrics` on the cases of row b, each repeated ``weights[b, i]`` times
    (tests/test_stats.py): the arithmetic of permutation and bootstrap tests without a Python loop per draw.
    ``ece=False`` leaves out the ECE (its binning is most of the cost).
    """
    y = np.asarray(labels, dtype=int)
    p = np.atleast_2d(np.asarray(prob_pos, dtype=float))
    if weights is not None:
        p, w = np.broadcast_arrays(p, np.atleast_2d(np.asarray(weights, float)))
        total = w.sum(1)
    else:
        w, total = 1.0, np.full(len(p), float(p.shape[1]))
    pred = p >= 0.5
    pos, neg = (y == 1)[None, :], (y == 0)[None, :]
    tp, fn = (w * (pred & pos)).sum(1), (w * (~pred & pos)).sum(1)
    tn, fp = (w * (~pred & neg)).sum(1), (w * (pred & neg)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sn, sp = np.where(tp + fn > 0, tp / (tp + fn), np.nan), np.where(tn + fp > 0, tn / (tn + fp), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        out = {"acc": (tp + tn) / total, "sn": sn, "sp": sp, "f1": f1, "bacc": (sn + sp) / 2,
               "brier": (w * (p - y[None, :]) ** 2).sum(1) / total}
        if not ece:
            return out
        # ECE = Σ_bins |Σ_{i in bin} w_i (correct_i − confidence_i)| / Σ w, the bins as expected_calibration_error
        confidence = np.where(pred, p, 1 - p)
        which = np.clip(np.digitize(confidence, np.linspace(0.0, 1.0, bins + 1)[1:-1], right=True), 0, bins - 1)
        gap = np.bincount((which + bins * np.arange(len(p))[:, None]).ravel(),
                          weights=(w * ((pred == pos) - confidence)).ravel(), minlength=bins * len(p))
        return {**out, "ece": np.abs(gap.reshape(len(p), bins)).sum(1) / total}
