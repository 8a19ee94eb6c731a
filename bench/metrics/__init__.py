"""Metrics: one implementation for every method (docs/statistics.md). This module only names them.

Each metric has a task (``seg``: per case; ``cls``: over a set of cases), a direction
(``max``: higher is better) and a table header. Segmentation metrics are computed in
:mod:`bench.metrics.seg`, classification metrics in :mod:`bench.metrics.cls`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MetricInfo", "METRICS", "SEG_METRICS", "CLS_METRICS"]


@dataclass(frozen=True)
class MetricInfo:
    name: str
    task: str  # "seg" | "cls"
    direction: str  # "max" | "min"
    header: str
    percent: bool  # shown ×100 in tables, as the seeds do


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("dsc", "seg", "max", "DSC (%)", True),
        # DSC over the scans whose reference has lesions only (bench.aggregate.with_derived_columns)
        MetricInfo("dsc_lesion", "seg", "max", "DSC lesion scans (%)", True),
        MetricInfo("ppv", "seg", "max", "PPV (%)", True),
        MetricInfo("tpr", "seg", "max", "TPR (%)", True),
        MetricInfo("vd", "seg", "min", "VD (%)", True),
        MetricInfo("hd95", "seg", "min", "HD95 (mm)", False),
        MetricInfo("assd", "seg", "min", "ASSD (mm)", False),
        MetricInfo("lesion_f1", "seg", "max", "Lesion F1 (%)", True),
        MetricInfo("acc", "cls", "max", "ACC (%)", True),
        MetricInfo("sn", "cls", "max", "SN (%)", True),
        MetricInfo("sp", "cls", "max", "SP (%)", True),
        MetricInfo("auc", "cls", "max", "AUC (%)", True),
        MetricInfo("f1", "cls", "max", "F1 (%)", True),
        MetricInfo("bacc", "cls", "max", "BACC (%)", True),
        MetricInfo("ece", "cls", "min", "ECE", False),
        MetricInfo("brier", "cls", "min", "Brier", False),
    )
}
SEG_METRICS = tuple(n for n, m in METRICS.items() if m.task == "seg")
CLS_METRICS = tuple(n for n, m in METRICS.items() if m.task == "cls")
