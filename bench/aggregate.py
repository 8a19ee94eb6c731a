"""From per-case rows to per-fold metrics, the unit of every table (mean ± std over folds, as the papers).

Segmentation metrics of a fold are the mean over its test cases (imputed empty-mask cases included
and counted); classification metrics are computed over the fold's test cases. Pooled out-of-fold
values use every test case of every fold at once.

``dsc_lesion`` is derived from the stored rows (:func:`with_derived_columns`): the DSC of scans whose
reference mask has lesions, NaN for lesion-free scans. With many lesion-free scans (NMOSD brains can be
normal; small lesions vanish at coarse grids) the mean DSC rewards predicting nothing — an empty
prediction on an empty reference scores 1 (docs/statistics.md) — and this column shows what is left.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.metrics import CLS_METRICS, SEG_METRICS
from bench.metrics.cls import classification_metrics

__all__ = ["fold_metrics", "pooled_metrics", "case_metrics", "with_derived_columns"]

UNIT_KEYS = ["study", "arm", "method", "fold", "seed", "sigma"]


def with_derived_columns(per_case: pd.DataFrame) -> pd.DataFrame:
    """``per_case`` with ``dsc_lesion`` (DSC where the reference is not empty, else NaN) when it has DSCs."""
    if "dsc" not in per_case or "ref_empty" not in per_case or "dsc_lesion" in per_case:
        return per_case
    return per_case.assign(dsc_lesion=per_case["dsc"].where(per_case["ref_empty"].eq(False)))


def case_metrics(group: pd.DataFrame) -> dict[str, float]:
    """All metrics over one set of per-case rows (one fold, or pooled)."""
    group = with_derived_columns(group)
    out: dict[str, float] = {"n_cases": float(len(group))}
    if "dsc" in group and group["dsc"].notna().any():
        for name in SEG_METRICS:
            if name in group:
                out[name] = float(group[name].mean())
        out["n_imputed"] = float(group["imputed"].sum())
        out["n_ref_empty"] = float(group["ref_empty"].sum())
    if "prob_nmosd" in group and group["prob_nmosd"].notna().any():
        labelled = group[group["label"] >= 0]
        if len(labelled):
            out.update(classification_metrics(labelled["label"].to_numpy(), labelled["prob_nmosd"].to_numpy()))
    if "uncertainty" in group and group["uncertainty"].notna().any():
        correct = group["pred"] == group["label"]
        out["uncertainty_correct"] = float(group.loc[correct, "uncertainty"].mean())
        out["uncertainty_wrong"] = float(group.loc[~correct, "uncertainty"].mean()) if (~correct).any() else np.nan
        out["uncertainty_mean"] = float(group["uncertainty"].mean())
    for column in ("voxel_unc_wrong", "voxel_unc_right"):  # evidential segmenters' pixel-wise uncertainty
        if column in group and group[column].notna().any():
            out[column] = float(group[column].mean())
    return out


def fold_metrics(per_case: pd.DataFrame) -> pd.DataFrame:
    """One row per (study, arm, method, fold, seed, σ) with every metric the rows allow."""
    keys = [k for k in UNIT_KEYS if k in per_case]
    rows = [{**dict(zip(keys, key)), **case_metrics(group)} for key, group in per_case.groupby(keys, sort=True)]
    return pd.DataFrame(rows)


def pooled_metrics(per_case: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm, σ, seed[, repeat of repeated cross-validation]) over all out-of-fold predictions."""
    keys = [k for k in ("study", "arm", "method", "seed", "repeat", "sigma") if k in per_case]
    rows = [{**dict(zip(keys, key)), **case_metrics(group)} for key, group in per_case.groupby(keys, sort=True)]
    return pd.DataFrame(rows)


def metric_columns(frame: pd.DataFrame) -> list[str]:
    return [m for m in (*SEG_METRICS, *CLS_METRICS) if m in frame]
