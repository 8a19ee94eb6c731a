"""``bench data check``: validate a dataset and summarise it (cases, patients, labels, sites, shapes,
spacings, lesion volumes). Every problem names the file; nothing is written next to the data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.data.manifest import LABEL_NAMES, read_manifest
from bench.data.preprocess import checked_mask, load_nifti
from bench.errors import DataError

__all__ = ["DatasetSummary", "summarise"]


@dataclass
class DatasetSummary:
    manifest: Path
    cases: int = 0
    patients: int = 0
    labels: Counter = field(default_factory=Counter)
    sites: Counter = field(default_factory=Counter)
    shapes: Counter = field(default_factory=Counter)
    spacings: Counter = field(default_factory=Counter)
    lesion_ml: dict[str, list[float]] = field(default_factory=dict)  # per label
    scan_lesion_ml: dict[str, float] = field(default_factory=dict)  # per scan id (0 without a mask)
    without_mask: int = 0


def _fold_column(manifest: Path) -> dict[str, str]:
    import csv

    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {r["scan_id"]: r["fold"] for r in rows if "fold" in r and (r["fold"] or "").strip()}


def summarise(manifest: Path, *, progress: Callable[[int, int], None] | None = None) -> DatasetSummary:
    """Read every image and mask of a manifest, validating them; raise :class:`DataError` on the first problem.

    Also refuses a fixed ``fold`` column that puts one patient in two folds.
    """
    cases = read_manifest(manifest)
    summary = DatasetSummary(Path(manifest), cases=len(cases), patients=len({c.patient_id for c in cases}))
    folds = _fold_column(Path(manifest))
    folds_by_patient: dict[str, set] = {}
    for i, case in enumerate(cases):
        image, affine, spacing = load_nifti(case.image_path)
        label = LABEL_NAMES.get(case.label, "unlabelled")
        summary.labels[label] += 1
        summary.sites[case.site or "unknown"] += 1
        summary.shapes["×".join(map(str, image.shape))] += 1
        summary.spacings["×".join(f"{s:g}" for s in spacing)] += 1
        if case.scan_id in folds:
            folds_by_patient.setdefault(case.patient_id, set()).add(folds[case.scan_id])
        if case.mask_path is None:
            summary.without_mask += 1
            summary.scan_lesion_ml[case.scan_id] = 0.0
        else:
            mask = checked_mask(case, image.shape, affine)
            volume = float(mask.sum() * np.prod(spacing) / 1000.0)
            summary.lesion_ml.setdefault(label, []).append(volume)
            summary.scan_lesion_ml[case.scan_id] = volume
        if progress:
            progress(i + 1, len(cases))
    split = sorted(p for p, f in folds_by_patient.items() if len(f) > 1)
    if split:
        raise DataError(f"{manifest}: fold column puts patient(s) {', '.join(split[:5])} in two folds")
    return summary
