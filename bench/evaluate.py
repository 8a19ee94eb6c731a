"""Evaluation of a trained fold model on its own test cases, at every noise σ of the study.

One row per (case, σ) with the columns docs/design.md lists; metrics come from :mod:`bench.metrics`,
identical for every method. The grid is evaluated σ by σ, each σ's cases in the same batches, so the
σ = 0 rows are exactly the ordinary (noise-free) evaluation whatever the grid. Noise comes from
:func:`bench.noise.input_noise` (identical for every method and rerun).

Kept for the report's figures: binarised predictions at σ = 0 and at the largest σ (bit-packed),
localisation maps (``aux["cam"]``) at σ = 0, and — for evidential segmenters — the pixel-wise
uncertainty at σ = 0 and at the largest σ (uint8, value / 255; UML Fig. 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.data.manifest import Case
from bench.data.preprocess import Volume
from bench.loop import forward, to_device
from bench.metrics.seg import segmentation_metrics
from bench.noise import DEFAULT_NOISE_UNITS, input_noise, noisy_key

__all__ = ["evaluate", "Evaluation", "SEG_COLUMNS", "EVAL_BATCH", "quantise"]

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
        masks: binarised predictions (bit-packed) of segmenting methods at σ = 0 (key: scan id) and at the
            largest σ (key: :func:`noisy_key`).
        maps: scan id → lesion-localisation map at σ = 0, uint8 (value / 255 in [0, 1]), for methods whose
            output carries ``aux["cam"]`` (the joint model's CAM map, the joint-model paper Fig. 12).
        uncertainty: pixel-wise uncertainty (uint8, value / 255) of evidential segmenters at σ = 0 and at the
            largest σ, keyed as ``masks``.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    uncertainty: dict[str, np.ndarray] = field(default_factory=dict)


def _voxel_uncertainty(uncertainty: np.ndarray, binary: np.ndarray, reference: np.ndarray, brain: np.ndarray) -> dict:
    """Mean pixel-wise uncertainty inside the brain over wrongly and correctly labelled voxels."""
    wrong = (binary != reference) & brain
    right = (binary == reference) & brain
    return {"voxel_unc_wrong": float(uncertainty[wrong].mean()) if wrong.any() else float("nan"),
            "voxel_unc_right": float(uncertainty[right].mean()) if right.any() else float("nan")}


def _row(case: Case, vol: Volume, sigma: float, noise_sd: float, pred, i: int) -> tuple[dict[str, Any], np.ndarray | None]:
    row: dict[str, Any] = {"case_id": case.scan_id, "patient_id": case.patient_id, "site": case.site,
                           "label": -1 if case.label is None else case.label, "sigma": float(sigma),
                           "noise_sd": noise_sd}
    if pred.cls_prob is not None:
        prob = pred.cls_prob[i].float().cpu().numpy()
        row.update(prob_nmosd=float(prob[1]), pred=int(prob[1] >= 0.5))  # the rule the metrics use (NMOSD at 0.5)
    if pred.cls_uncertainty is not None:
        row["uncertainty"] = float(pred.cls_uncertainty[i])
    binary = None
    if pred.seg_prob is not None and vol.mask is not None:
        binary = (pred.seg_prob[i] >= 0.5).cpu().numpy()
        row.update(segmentation_metrics(binary, vol.mask[0], vol.spacing))
        if pred.seg_uncertainty is not None:
            row.update(_voxel_uncertainty(pred.seg_uncertainty[i].float().cpu().numpy(), binary,
                                          vol.mask[0].astype(bool), vol.image[0] != 0))
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
    noise_units: str = DEFAULT_NOISE_UNITS,
    batch_size: int = EVAL_BATCH,
    precision: str = "fp32",
) -> Evaluation:
    """Per-case rows at every σ (σ by σ), and the maps the report draws (see the module docstring)."""
    model.eval()
    result = Evaluation()
    kept = {0.0, max(sigmas)}
    for sigma in sigmas:
        for start in range(0, len(cases), batch_size):
            chunk = list(zip(cases[start:start + batch_size], volumes[start:start + batch_size]))
            noises = [input_noise(case.scan_id, sigma, vol.image, noise_units) for case, vol in chunk]
            images = np.stack([vol.image + noise for (_, vol), noise in zip(chunk, noises)])
            if len(chunk) < batch_size:  # pad the last batch with a copy; its outputs are dropped
                images = np.concatenate([images, np.repeat(images[-1:], batch_size - len(chunk), axis=0)])
            out = forward(model, to_device(torch.from_numpy(images), device), precision=precision)
            pred = loss_fn.predict(out)
            cam = out.aux.get("cam")
            for i, ((case, vol), noise) in enumerate(zip(chunk, noises)):
                row, binary = _row(case, vol, sigma, float(noise.std()), pred, i)
                result.rows.append(row)
                if sigma not in kept:
                    continue
                key = noisy_key(case.scan_id, sigma)
                if binary is not None:
                    result.masks[key] = np.packbits(binary)
                if pred.seg_uncertainty is not None:
                    result.uncertainty[key] = quantise(pred.seg_uncertainty[i])
                if cam is not None and sigma == 0:
                    result.maps[case.scan_id] = quantise(cam[i, 0])
    return result


def quantise(prob: torch.Tensor) -> np.ndarray:
    """A [0, 1] map as uint8 (×255, rounded)."""
    return (prob.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
