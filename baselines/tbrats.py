"""TBraTS — "TBraTS: Trusted Brain Tumor Segmentation" (Zou et al., MICCAI 2022,
https://arxiv.org/abs/2206.09309; official code ``Cocofeat/TBraTS``), UML's Table 1 evidential
segmentation baseline.

The 3D UNet baseline of the suite (:mod:`baselines.unet`, same channels) with a 2-channel evidence
head: evidence = softplus(logits), α = e + 1, lesion probability α₁ / S, voxel-wise uncertainty 2 / S.
Loss (:class:`bench.evidential.EvidentialSegmentationLoss`): the digamma loss with the annealed KL per
voxel plus soft Dice on α₁ / S. No prior offset on the output: evidential heads start uniform (α = 1
everywhere when the evidence is 0), as in the official code.
"""

from __future__ import annotations

from baselines.unet import unet_backbone
from bench.evidential import EvidentialSegmentationLoss
from bench.outputs import SegmentationNet
from bench.registry import register_method

__all__ = ["tbrats"]


@register_method(
    "tbrats",
    kind="seg",
    loss=EvidentialSegmentationLoss,
    search_space={"edl": (0.1, 10.0), "dice": (0.1, 10.0)},
    size_multiple=16,
)
def tbrats(in_channels: int, num_classes: int, spatial_size: int, width: float, *, num_res_units: int = 2):
    """TBraTS: the 3D UNet with a softplus evidence head (2 channels), Dirichlet lesion probability."""
    return SegmentationNet(unet_backbone(in_channels, 2, width, num_res_units), prior=None)
