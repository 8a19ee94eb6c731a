"""BCS-style joint baseline — after Yang et al., "A Novel Multi-task Deep Learning Model for Skin Lesion
Segmentation and Classification" (arXiv 1703.01025, 2017), UML's Table 1 "BCS" (seed ``004`` ref. 25).

No public code exists; this is the simplest hard-sharing joint network, in 3D: one U-Net encoder
shared by both tasks (five levels, 16–256 channels at width 1, the 3D UNet baseline's widths), a
U-Net decoder with skip connections for the lesion mask, and global average pooling of the deepest
feature + one fully connected layer for MS vs NMOSD. Loss: CE (classification) + soft Dice
(segmentation), docs/methods.md.

Decision: UML's text describes BCS as "two different encoders and decoders"; the paper it cites shares
the encoder, and docs/methods.md takes the shared encoder (a model with two disjoint networks would be two
single-task baselines). It is reported as "BCS-style (Yang 2017)".
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.unet import UNET_CHANNELS
from bench.losses import JointLoss
from bench.nn.blocks import check_norm, conv_block, double_conv
from bench.nn.widths import scaled_channels
from bench.outputs import ModelOutput, prior_logit
from bench.registry import register_method

__all__ = ["BCS", "bcs"]


class BCS(nn.Module):
    """Shared 3D U-Net encoder, U-Net segmentation decoder, pooled classification head.

    Args:
        in_channels: input channels.
        num_classes: classification logits.
        channels: encoder channels per level, full resolution first (each later level halves the size).
        prior: initial lesion probability of every voxel (the suite's prior initialisation,
            :class:`bench.outputs.SegmentationNet`).
        cls_norm: the norm of the deepest encoder level, whose average pool the classifier reads: ``batch``
            (default) or ``instance`` (the suite's first version, whose pooled features are the same for every
            scan, :mod:`bench.nn.blocks`).
    """

    def __init__(self, in_channels: int, num_classes: int, channels=UNET_CHANNELS, *, prior: float = 0.01,
                 cls_norm: str = "batch") -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"BCS: channels needs at least two levels, got {tuple(channels)}")
        last = len(channels) - 2
        self.encoder = nn.ModuleList(
            [double_conv(in_channels, channels[0])]
            + [nn.Sequential(conv_block(a, b, stride=2, norm=cls_norm if i == last else "instance"),
                             conv_block(b, b, norm=cls_norm if i == last else "instance"))
               for i, (a, b) in enumerate(zip(channels, channels[1:]))]
        )
        self.up = nn.ModuleList(nn.ConvTranspose3d(b, a, 2, stride=2) for a, b in zip(channels, channels[1:]))
        self.decoder = nn.ModuleList(double_conv(2 * a, a) for a in channels[:-1])
        self.seg_head = nn.Conv3d(channels[0], 1, 1)
        nn.init.constant_(self.seg_head.bias, prior_logit(prior))
        self.cls_head = nn.Linear(channels[-1], num_classes)

    def forward(self, image: torch.Tensor) -> ModelOutput:
        skips, x = [], image
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        cls_logits = self.cls_head(x.mean(dim=(2, 3, 4)))
        for up, dec, skip in zip(reversed(self.up), reversed(self.decoder), reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], 1))
        return ModelOutput(seg_logits=self.seg_head(x), cls_logits=cls_logits)


class BCSLoss(JointLoss):
    """BCS's loss: soft Dice on the lesion map + cross-entropy on the class. The paper has no voxel-wise
    cross-entropy, so its weight ``bce`` starts at 0 (a study may turn it on)."""

    def __init__(self, dice: float = 1.0, bce: float = 0.0, ce: float = 1.0) -> None:
        super().__init__(dice=dice, bce=bce, ce=ce)


@register_method(
    "bcs",
    kind="joint",
    loss=BCSLoss,
    search_space={"dice": (0.1, 10.0), "ce": (0.1, 10.0)},
    size_multiple=16,
)
def bcs(in_channels: int, num_classes: int, spatial_size: int, width: float, *, cls_norm: str = "batch"):
    """BCS-style (Yang 2017): shared 3D U-Net encoder, U-Net decoder + GAP/FC classifier; CE + Dice."""
    check_norm("bcs", "cls_norm", cls_norm)
    return BCS(in_channels, num_classes, scaled_channels(UNET_CHANNELS, width), cls_norm=cls_norm)
