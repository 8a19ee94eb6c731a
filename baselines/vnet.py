"""3D VNet — "V-Net: Fully Convolutional Neural Networks for Volumetric Medical Image Segmentation"
(Milletari et al., 3DV 2016, https://arxiv.org/abs/1606.04797), the joint-model paper's Table 3 baseline.

Built from MONAI's VNet blocks (input transition, four down and four up transitions with 5×5×5
residual convolutions, BatchNorm, ELU, dropout 0.5 in the two deepest levels): 16, 32, 64, 128, 256
channels at width 1 (45.6 M parameters). MONAI's ``VNet`` fixes those channel counts;
:class:`baselines.monai_nets.VNet3D` rebuilds the same blocks with the base count scaled by ``width`` and reuses MONAI's forward.
"""

from __future__ import annotations

from baselines.unet import SEGMENTATION
from bench.nn.widths import scaled_channels
from bench.outputs import SegmentationNet
from bench.registry import register_method

__all__ = ["vnet"]


@register_method("vnet", **SEGMENTATION)
def vnet(in_channels: int, num_classes: int, spatial_size: int, width: float):
    """3D VNet (MONAI blocks, width-scaled), 1-channel sigmoid lesion output."""
    from baselines.monai_nets import VNet3D

    return SegmentationNet(VNet3D(in_channels, 1, base=scaled_channels((16,), width)[0]))
