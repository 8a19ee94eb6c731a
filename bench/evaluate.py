"""Evaluation of a trained fold model on its own test cases, at every noise σ of the study.

One row per (case, σ) with the columns DESIGN.md lists; metrics come from :mod:`bench.metrics`,
identical for every method. Binarised predictions at σ = 0 are kept (bit-packed) for overlays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from bench.data.manifest import Case
from bench.data.preprocess import Volume
from bench.metrics.seg import segmentation_metrics
from bench.noise import gaussian_noise

__all__ = ["evaluate", "SEG_COLUMNS"]

SEG_COLUMNS = ("dsc", "ppv", "tpr", "vd", "hd95", "assd", "lesion_f1")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: nn.Module,
    cases: list[Case],
    volumes: list[Volume],
    *,
    sigmas: tuple[float, ...],
    device: torch.device,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Per-case rows and the σ = 0 binarised predictions (scan id → packed bits)."""
    model.eval()
    rows: list[dict[str, Any]] = []
    masks: dict[str, np.ndarray] = {}
    for case, vol in zip(cases, volumes):
        for sigma in sigmas:
            image = vol.image + gaussian_noise(case.scan_id, sigma, vol.image.shape)
            out = model(torch.from_numpy(image)[None].to(device))
            pred = loss_fn.predict(out)
            row: dict[str, Any] = {"case_id": case.scan_id, "patient_id": case.patient_id, "site": case.site,
                                   "label": -1 if case.label is None else case.label, "sigma": float(sigma)}
            if pred.cls_prob is not None:
                prob = pred.cls_prob[0].float().cpu().numpy()
                row.update(prob_nmosd=float(prob[1]), pred=int(prob.argmax()))
            if pred.cls_uncertainty is not None:
                row["uncertainty"] = float(pred.cls_uncertainty[0])
            if pred.seg_prob is not None and vol.mask is not None:
                binary = (pred.seg_prob[0] >= 0.5).cpu().numpy()
                metrics = segmentation_metrics(binary, vol.mask[0], vol.spacing)
                row.update(metrics)
                if sigma == 0:
                    masks[case.scan_id] = np.packbits(binary)
            rows.append(row)
    return rows, masks
