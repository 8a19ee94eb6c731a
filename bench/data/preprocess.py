"""The joint-model paper's preprocessing (§3.1.2) with MONAI transforms, and its on-disk cache.

Per scan: read the NIfTI image and mask (nibabel) and check they match; crop the empty background;
resize to the profile's cube; z-score inside the brain (non-zero voxels). The mask is resized
trilinearly and thresholded at 0.5, which keeps small lesions that nearest-neighbour resizing drops.
The result is cached as ``.npz`` so that an epoch never re-reads NIfTI files. N4 bias correction is
for raw scans only (``bench data preprocess``, data issue); the synthetic cohort does not need it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from bench.data.manifest import Case
from bench.errors import DataError

__all__ = ["PREPROCESS_VERSION", "Volume", "load_nifti", "checked_mask", "preprocess_arrays", "n4_correct", "preprocess_case",
           "preprocess_cases", "load_volume"]

log = logging.getLogger(__name__)
PREPROCESS_VERSION = "1"


@dataclass(frozen=True)
class Volume:
    """A preprocessed scan. image: float32 [1, S, S, S]; mask: uint8 [1, S, S, S] or None; spacing in mm."""

    scan_id: str
    image: np.ndarray
    mask: np.ndarray | None
    spacing: tuple[float, float, float]


def load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Data [D, H, W] float32, affine and voxel spacing; a clear error naming the file otherwise."""
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"{path}: cannot read as NIfTI ({type(exc).__name__}: {exc})") from None
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3D volume, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: contains NaN or infinite values")
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    return data, img.affine, spacing


def checked_mask(case: Case, image_shape, image_affine) -> np.ndarray:
    """The case's mask, refused unless it matches its image (shape, affine) and is binary."""
    mask, affine, _ = load_nifti(case.mask_path)
    if mask.shape != image_shape:
        raise DataError(
            f"{case.mask_path}: mask shape {mask.shape} does not match its image {case.image_path.name} {image_shape}"
        )
    if not np.allclose(affine, image_affine, atol=1e-3):
        raise DataError(f"{case.mask_path}: mask affine differs from its image {case.image_path.name}")
    values = np.unique(mask)
    if not np.isin(values, (0.0, 1.0)).all():
        shown = ", ".join(f"{v:g}" for v in values[:6])
        raise DataError(f"{case.mask_path}: mask is not binary (values {shown}{'…' if len(values) > 6 else ''}); expected 0 and 1")
    return mask


def preprocess_arrays(image: np.ndarray, mask: np.ndarray | None, spacing, size: int):
    """Crop background, resize to ``size``³, z-score inside the brain (MONAI transforms).

    Returns (image float32 [1, S, S, S], mask uint8 [1, S, S, S] or None, output spacing in mm).
    """
    from monai.data import set_track_meta
    from monai.transforms import CropForegroundd, NormalizeIntensityd, Resized

    set_track_meta(False)
    sample = {"image": image[None], "mask": (mask if mask is not None else np.zeros_like(image))[None]}
    sample = CropForegroundd(keys=("image", "mask"), source_key="image", select_fn=lambda x: x > 0, margin=1)(sample)
    cropped = np.asarray(sample["image"].shape[1:], dtype=float)
    sample = Resized(keys=("image", "mask"), spatial_size=(size, size, size), mode=("trilinear", "trilinear"))(sample)
    sample = NormalizeIntensityd(keys="image", nonzero=True)(sample)
    out_spacing = tuple(float(s) for s in np.asarray(spacing) * cropped / size)
    out_mask = (np.asarray(sample["mask"]) >= 0.5).astype(np.uint8) if mask is not None else None
    return np.asarray(sample["image"], dtype=np.float32), out_mask, out_spacing


def n4_correct(image: np.ndarray, spacing, *, shrink: int = 2, iterations: int = 50) -> np.ndarray:
    """N4 bias-field correction (Tustison et al. 2010) through SimpleITK, inside the non-zero (brain) voxels.

    The field is fitted on a ``shrink``-times downsampled image and applied at full resolution.
    """
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(image.transpose(2, 1, 0)).astype(np.float32))
    img.SetSpacing([float(s) for s in spacing])
    mask = sitk.Cast(img > 0, sitk.sitkUInt8)
    small_img, small_mask = (sitk.Shrink(x, [shrink] * 3) for x in (img, mask))
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([iterations] * 4)
    n4.Execute(small_img, small_mask)
    log_field = n4.GetLogBiasFieldAsImage(img)
    corrected = img / sitk.Exp(log_field)
    out = sitk.GetArrayFromImage(corrected).transpose(2, 1, 0)
    return np.where(image > 0, out, 0).astype(np.float32)


def preprocess_case(case: Case, size: int, *, n4: bool = False) -> Volume:
    """Read and check a case, then (optionally N4) crop, resize and z-score it."""
    image, affine, spacing = load_nifti(case.image_path)
    mask = checked_mask(case, image.shape, affine) if case.mask_path is not None else None
    if not (image > 0).any():
        raise DataError(f"{case.image_path}: image is empty (no voxel > 0)")
    if n4:
        image = n4_correct(image, spacing)
    out_image, out_mask, out_spacing = preprocess_arrays(image, mask, spacing, size)
    return Volume(case.scan_id, out_image, out_mask, out_spacing)


def _cache_file(cache_dir: Path, scan_id: str) -> Path:
    return cache_dir / f"{scan_id}.npz"


def load_volume(cache_dir: Path, scan_id: str) -> Volume:
    with np.load(_cache_file(cache_dir, scan_id)) as z:
        mask = z["mask"] if z["has_mask"] else None
        return Volume(scan_id, z["image"], mask, tuple(float(s) for s in z["spacing"]))


def preprocess_cases(
    cases: list[Case], size: int, cache_dir: Path, *, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Preprocess every case into ``cache_dir`` (skipping those already there); returns ``cache_dir``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    done_marker = cache_dir / "COMPLETE.json"
    if done_marker.exists():
        return cache_dir
    for i, case in enumerate(cases):
        target = _cache_file(cache_dir, case.scan_id)
        if not target.exists():
            vol = preprocess_case(case, size)
            tmp = target.with_name(target.stem + ".tmp.npz")
            np.savez(tmp, image=vol.image, mask=vol.mask if vol.mask is not None else np.zeros(0, np.uint8),
                     has_mask=vol.mask is not None, spacing=np.asarray(vol.spacing))
            tmp.replace(target)
        if progress:
            progress(i + 1, len(cases))
    done_marker.write_text(json.dumps({"cases": len(cases), "size": size, "version": PREPROCESS_VERSION}))
    return cache_dir
