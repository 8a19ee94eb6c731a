"""Method losses: named weights scale their terms; soft Dice hand-computed."""

import pytest
import torch

from bench.losses import ClassificationLoss, JointLoss, SegmentationLoss, soft_dice_loss
from bench.outputs import ModelOutput


def _batch():
    mask = torch.zeros(2, 1, 4, 4, 4)
    mask[:, :, :2] = 1
    return {"mask": mask, "label": torch.tensor([0, 1])}


def test_soft_dice_hand_computed():
    prob = torch.full((1, 2, 2, 2), 0.5)
    target = torch.zeros(1, 2, 2, 2)
    target[0, 0] = 1  # 4 voxels
    # intersection 2, sums 4 + 4 → Dice (4 + eps) / (8 + eps)
    assert float(soft_dice_loss(prob, target)) == pytest.approx(0.5, abs=1e-5)


def test_weights_scale_their_terms():
    out = ModelOutput(seg_logits=torch.randn(2, 1, 4, 4, 4), cls_logits=torch.randn(2, 2))
    batch = _batch()
    _, terms = JointLoss()(out, batch)
    total, _ = JointLoss(dice=2.0, bce=0.0, ce=0.5)(out, batch)
    assert float(total) == pytest.approx(2 * terms["dice"] + 0.5 * terms["ce"], rel=1e-5)
    total, _ = SegmentationLoss(dice=0.0, bce=3.0)(out, batch)
    assert float(total) == pytest.approx(3 * terms["bce"], rel=1e-5)
    total, _ = ClassificationLoss(ce=0.8)(out, batch)
    assert float(total) == pytest.approx(0.8 * terms["ce"], rel=1e-5)


def test_two_channel_logits_use_softmax():
    logits = torch.zeros(1, 2, 2, 2, 2)
    logits[:, 1] = 2.0
    pred = SegmentationLoss().predict(ModelOutput(seg_logits=logits))
    assert torch.allclose(pred.seg_prob, torch.full((1, 2, 2, 2), torch.sigmoid(torch.tensor(2.0)).item()))
