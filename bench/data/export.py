"""``bench data preprocess``: write a preprocessed copy of a dataset (NIfTI + manifest) for inspection or reuse.

Each scan is N4-corrected (optional, SimpleITK), cropped to the brain, resized to ``size``³ and
z-scored inside the brain; masks follow the same crop and resize. The output is a manifest dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from bench.data.manifest import LABEL_NAMES, read_manifest, write_manifest
from bench.data.preprocess import preprocess_case

__all__ = ["preprocess_dataset"]


def preprocess_dataset(manifest: Path, out: Path, *, size: int, n4: bool,
                       progress: Callable[[int, int], None] | None = None) -> Path:
    """Preprocess every case of ``manifest`` into ``out``; returns the new ``manifest.csv``."""
    cases = read_manifest(manifest)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, case in enumerate(cases):
        vol = preprocess_case(case, size, n4=n4)
        affine = np.diag([*vol.spacing, 1.0])
        image_path = out / "images" / f"{case.scan_id}_FLAIR.nii.gz"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(vol.image[0], affine), str(image_path))
        mask_path = ""
        if vol.mask is not None:
            target = out / "masks" / f"{case.scan_id}_mask.nii.gz"
            target.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(vol.mask[0], affine), str(target))
            mask_path = str(target.relative_to(out))
        rows.append({"scan_id": case.scan_id, "patient_id": case.patient_id, "timepoint": case.timepoint,
                     "label": LABEL_NAMES.get(case.label, ""), "site": case.site,
                     "image_path": str(image_path.relative_to(out)), "mask_path": mask_path})
        if progress:
            progress(i + 1, len(cases))
    return write_manifest(out / "manifest.csv", rows)
