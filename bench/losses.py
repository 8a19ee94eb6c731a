"""Method losses: named, weighted terms plus the method's reading of its own outputs.

A method's loss is where everything method-specific about training lives (loss terms, deep
supervision, annealing); the one training loop only calls it. The total is always
``sum(weight[name] * term[name])`` over the named weights, so tuning and ablations can scale
each term by name.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from bench.outputs import ModelOutput, Prediction

__all__ = ["MethodLoss", "SegmentationLoss", "ClassificationLoss", "JointLoss", "soft_dice_loss", "foreground_prob"]


def foreground_prob(seg_logits: torch.Tensor) -> torch.Tensor:
    """Lesion probability [B, D, H, W] from 1-channel (sigmoid) or 2-channel (softmax) logits."""
    if seg_logits.shape[1] == 1:
        return torch.sigmoid(seg_logits[:, 0])
    return torch.softmax(seg_logits, dim=1)[:, 1]


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1e-5, *, batch: bool = False) -> torch.Tensor:
    """1 − soft Dice.

    Args:
        prob: float [B, D, H, W] in [0, 1].
        target: float [B, D, H, W] in {0, 1}.
        batch: pool the sums over the whole batch ("batch Dice", nnU-Net) instead of averaging
            per-sample Dice. Lesion-free samples (NMOSD brains can be normal) then do not push
            every voxel towards background on their own.
    A sample with an empty target and an empty prediction scores a loss of 0 (the eps terms).
    """
    dims = tuple(range(0 if batch else 1, prob.ndim))
    inter = (prob * target).sum(dims)
    denom = prob.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * inter + eps) / (denom + eps)).mean()


class MethodLoss(nn.Module):
    """Base class: subclasses implement :meth:`terms`; the weighted total is computed here.

    Args:
        **weights: one float per named term.
    """

    def __init__(self, **weights: float) -> None:
        super().__init__()
        self.weights = {k: float(v) for k, v in weights.items()}

    def terms(self, out: ModelOutput, batch: Mapping[str, torch.Tensor], *, progress: float) -> dict[str, torch.Tensor]:
        """Unweighted loss terms, one per weight name. ``progress`` = epoch / epochs, in [0, 1]."""
        raise NotImplementedError

    def forward(
        self, out: ModelOutput, batch: Mapping[str, torch.Tensor], *, progress: float = 1.0
    ) -> tuple[torch.Tensor, dict[str, float]]:
        terms = self.terms(out, batch, progress=progress)
        missing = set(self.weights) - set(terms)
        if missing:
            raise RuntimeError(f"{type(self).__name__}.terms() did not return {sorted(missing)}")
        total = sum(self.weights[name] * terms[name] for name in self.weights)
        return total, {name: float(value.detach()) for name, value in terms.items()}

    def predict(self, out: ModelOutput) -> Prediction:
        """Probabilities used by evaluation. Evidential methods override this (p = α / S)."""
        return Prediction(
            seg_prob=foreground_prob(out.seg_logits) if out.has_seg else None,
            cls_prob=torch.softmax(out.cls_logits, dim=1) if out.has_cls else None,
        )


def _seg_terms(out: ModelOutput, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    target = batch["mask"][:, 0].float()
    logits = out.seg_logits
    prob = foreground_prob(logits)
    if logits.shape[1] == 1:
        bce = F.binary_cross_entropy_with_logits(logits[:, 0], target)
    else:
        bce = F.cross_entropy(logits, target.long())
    return {"dice": soft_dice_loss(prob, target, batch=True), "bce": bce}


class SegmentationLoss(MethodLoss):
    """Soft Dice + voxel-wise cross-entropy, the usual loss of the UNet family of baselines.

    Decision (no paper gives the baselines' loss): Dice + CE with equal weights, as nnU-Net and
    MONAI's DiceCELoss; either weight can be set to 0 in a study. The Dice is a batch Dice (sums
    pooled over the batch, as nnU-Net), so lesion-free NMOSD scans do not dominate it.
    """

    def __init__(self, dice: float = 1.0, bce: float = 1.0) -> None:
        super().__init__(dice=dice, bce=bce)

    def terms(self, out, batch, *, progress):
        return _seg_terms(out, batch)


class ClassificationLoss(MethodLoss):
    """Cross-entropy over {MS, NMOSD}."""

    def __init__(self, ce: float = 1.0) -> None:
        super().__init__(ce=ce)

    def terms(self, out, batch, *, progress):
        return {"ce": F.cross_entropy(out.cls_logits, batch["label"].long())}


class JointLoss(MethodLoss):
    """Segmentation (Dice + CE) plus classification (CE), for simple joint baselines (e.g. BCS)."""

    def __init__(self, dice: float = 1.0, bce: float = 1.0, ce: float = 1.0) -> None:
        super().__init__(dice=dice, bce=bce, ce=ce)

    def terms(self, out, batch, *, progress):
        return {**_seg_terms(out, batch), "ce": F.cross_entropy(out.cls_logits, batch["label"].long())}
