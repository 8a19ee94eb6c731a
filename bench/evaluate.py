"""Evaluation of a trained fold model on its own test cases, at every noise σ of the study.

One row per (case, σ) with the columns DESIGN.md lists; metrics come from :mod:`bench.metrics`,
identical for every method. Binarised predictions at σ = 0 are kept (bit-packed) for overlays, and
localisation maps (``aux["cam"]``) at σ = 0 as uint8 for the CAM figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.data.manifest import Case
from bench.data.preprocess import Volume
from bench.loop import to_device
from bench.metrics.seg import segmentation_metrics
from bench.noise import gaussian_noise

__all__ = ["evaluate", "Evaluation", "SEG_COLUMNS", "EVAL_BATCH"]

SEG_COLUMNS = ("dsc", "ppv", "tpr", "vd", "hd95", "assd", "lesion_f1")
# Volumes per forward pass. Two, not one: PyTorch sends batch-1 CPU 3D convolutions over small inputs
# (N·C·D·H < 20480) to its slow reference kernel instead of oneDNN — the joint model took 0.22 s per
# 48³ volume at batch 1 and 0.03 s at batch 2. Every network here is per-sample in eval mode
# (instance/group norm, or batch norm with running statistics), so the grouping changes no output.
EVAL_BATCH = 2


@dataclass
class Evaluation:
    """What :func:`evaluate` returns.

    Attributes:
        rows: one dict per (case, σ) with the per-case columns.
        masks: scan id → bit-packed binarised prediction at σ = 0 (segmenting methods).
        maps: scan id → lesion-localisation map at σ = 0, uint8 (value / 255 in [0, 1]), for methods whose
            output carries ``aux["cam"]`` (the joint model's CAM map, seed 000 Fig. 12).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def _row(case: Case, vol: Volume, sigma: float, pred, i: int) -> tuple[dict[str, Any], np.ndarray | None]:
    row: dict[str, Any] = {"case_id": case.scan_id, "patient_id": case.patient_id, "site": case.site,
                           "label": -1 if case.label is None else case.label, "sigma": float(sigma)}
    if pred.cls_prob is not None:
        prob = pred.cls_prob[i].float().cpu().numpy()
        row.update(prob_nmosd=float(prob[1]), pred=int(prob.argmax()))
    if pred.cls_uncertainty is not None:
        row["uncertainty"] = float(pred.cls_uncertainty[i])
    binary = None
    if pred.seg_prob is not None and vol.mask is not None:
        binary = (pred.seg_prob[i] >= 0.5).cpu().numpy()
        row.update(segmentation_metrics(binary, vol.mask[0], vol.spacing))
    return row, binary


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: nn.Module,
    cases: list[Case],
    volumes: list[Volume],
    *,
    sigmas: tuple[float, ...],
    device: torch.device,
    batch_size: int = EVAL_BATCH,
) -> Evaluation:
    """Per-case rows at every σ, and the σ = 0 binarised predictions and localisation maps."""
    model.eval()
    result = Evaluation()
    items = [(case, vol, sigma) for case, vol in zip(cases, volumes) for sigma in sigmas]
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        images = np.stack([vol.image + gaussian_noise(case.scan_id, sigma, vol.image.shape) for case, vol, sigma in chunk])
        if len(chunk) < batch_size:  # pad the last batch with a copy; its outputs are dropped
            images = np.concatenate([images, np.repeat(images[-1:], batch_size - len(chunk), axis=0)])
        out = model(to_device(torch.from_numpy(images), device))
        pred = loss_fn.predict(out)
        cam = out.aux.get("cam")
        for i, (case, vol, sigma) in enumerate(chunk):
            row, binary = _row(case, vol, sigma, pred, i)
            result.rows.append(row)
            if sigma == 0:
                if binary is not None:
                    result.masks[case.scan_id] = np.packbits(binary)
                if cam is not None:
                    result.maps[case.scan_id] = quantise(cam[i, 0])
    return result


def quantise(prob: torch.Tensor) -> np.ndarray:
    """A [0, 1] map as uint8 (×255, rounded)."""
    return (prob.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
