"""Per-case segmentation metrics on binary masks (docs/statistics.md), with a defined value for empty masks.

Empty-mask policy (empty masks never vanish from an average; each imputed case is flagged):

| reference | prediction | DSC, PPV, TPR, lesion F1 | VD | HD95, ASSD |
|---|---|---|---|---|
| empty | empty | 1 | 0 | 0 |
| empty | not empty | 0 (PPV, TPR: 0) | 1 (100 %) | image diagonal (mm) |
| not empty | empty | 0 | 1 (= \\|0 − V\\| / V) | image diagonal (mm) |

Decision: VD with an empty reference and a non-empty prediction is undefined (division by zero);
we impute 1, the value of a complete miss, and flag the case.

HD95 follows MONAI's convention: the larger of the two directed 95th percentiles of surface
distances. ASSD is the mean over both surfaces' distances. Surfaces are the mask voxels with a
6-neighbour outside the mask; distances use the voxel spacing. Lesions are 26-connected components;
a reference lesion is detected if any of its voxels is predicted, a predicted lesion is true if any
of its voxels is in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["segmentation_metrics", "surface_distances", "lesion_f1"]

_STRUCT_26 = np.ones((3, 3, 3), dtype=bool)


def _surface(mask: np.ndarray) -> np.ndarray:
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return mask & ~eroded


def surface_distances(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``a`` to the surface of ``b``, and from ``b`` to ``a``."""
    sa, sb = _surface(a), _surface(b)
    dist_to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    dist_to_a = ndimage.distance_transform_edt(~sa, sampling=spacing)
    return dist_to_b[sa], dist_to_a[sb]


def lesion_f1(pred: np.ndarray, ref: np.ndarray) -> float:
    """Lesion-wise F1 from 26-connected components (1 if both are empty, 0 if exactly one is)."""
    ref_lab, n_ref = ndimage.label(ref, structure=_STRUCT_26)
    pred_lab, n_pred = ndimage.label(pred, structure=_STRUCT_26)
    if n_ref == 0 and n_pred == 0:
        return 1.0
    if n_ref == 0 or n_pred == 0:
        return 0.0
    detected = len(np.unique(ref_lab[pred & (ref_lab > 0)]))
    true_pred = len(np.unique(pred_lab[ref & (pred_lab > 0)]))
    recall, precision = detected / n_ref, true_pred / n_pred
    return 0.0 if recall + precision == 0 else 2 * precision * recall / (precision + recall)


def segmentation_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> dict[str, float | bool]:
    """All per-case segmentation metrics.

    Args:
        pred: bool/int [D, H, W], the binarised prediction.
        ref: bool/int [D, H, W], the reference mask.
        spacing: voxel size in mm along each axis.

    Returns:
        dict with dsc, ppv, tpr, vd, hd95, assd, lesion_f1 (fractions, mm), ref_empty, pred_empty,
        and imputed (True when a value came from the empty-mask policy).
    """
    pred = np.asarray(pred).astype(bool)
    ref = np.asarray(ref).astype(bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    tp = int((pred & ref).sum())
    ref_empty, pred_empty = n_ref == 0, n_pred == 0
    out: dict[str, float | bool] = {"ref_empty": ref_empty, "pred_empty": pred_empty, "imputed": ref_empty or pred_empty}
    out["lesion_f1"] = lesion_f1(pred, ref)
    if ref_empty and pred_empty:
        out.update(dsc=1.0, ppv=1.0, tpr=1.0, vd=0.0, hd95=0.0, assd=0.0)
        return out
    if ref_empty or pred_empty:
        diagonal = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(ref.shape, spacing))))
        out.update(dsc=0.0, ppv=0.0, tpr=0.0, vd=1.0, hd95=diagonal, assd=diagonal)
        return out
    d_pr, d_rp = surface_distances(pred, ref, spacing)
    out.update(
        dsc=2.0 * tp / (n_pred + n_ref),
        ppv=tp / n_pred,
        tpr=tp / n_ref,
        vd=abs(n_pred - n_ref) / n_ref,
        hd95=float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))),
        assd=float((d_pr.sum() + d_rp.sum()) / (len(d_pr) + len(d_rp))),
    )
    return out
