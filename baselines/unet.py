"""3D UNet — "3D U-Net: Learning Dense Volumetric Segmentation from Sparse Annotation"
(Çiçek et al., MICCAI 2016, https://arxiv.org/abs/1606.06650), the joint-model paper's Table 3 baseline.

Built on MONAI's residual ``UNet``: five levels (16, 32, 64, 128, 256 channels at width 1),
four stride-2 downsamplings, two residual units per level: 4.8 M parameters at width 1. Normalisation is
BatchNorm, as the paper's ("batch normalization before each ReLU"; ``norm: batch``); MONAI's default
InstanceNorm (``norm: instance``) was the suite's first version. Measured on the easy cohort at the ``cpu``
recipe (8 epochs, a validation split of fold 0's training set, two seeds): validation DSC on lesion scans
0.33 / 0.17 with BatchNorm, 0.06 / 0.05 with InstanceNorm.
``SEGMENTATION`` holds the registration settings every Dice + CE segmentation baseline shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.losses import SegmentationLoss
from bench.nn.blocks import check_norm
from bench.nn.widths import scaled_channels
from bench.outputs import SegmentationNet
from bench.registry import register_method

if TYPE_CHECKING:
    from monai.networks.nets import UNet

__all__ = ["UNET_CHANNELS", "SEGMENTATION", "unet_backbone", "unet3d"]

UNET_CHANNELS = (16, 32, 64, 128, 256)
SEGMENTATION = {  # register_method settings of the Dice + CE segmentation baselines
    "kind": "seg",
    "loss": SegmentationLoss,
    "search_space": {"dice": (0.1, 10.0), "bce": (0.1, 10.0)},
    "size_multiple": 16,
}


def unet_backbone(in_channels: int, out_channels: int, width: float, num_res_units: int = 2,
                  norm: str = "instance") -> UNet:
    """MONAI's residual 3D UNet with the baseline's channels scaled by ``width``; ``norm``: instance | batch."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                channels=scaled_channels(UNET_CHANNELS, width), strides=(2, 2, 2, 2), num_res_units=num_res_units,
                norm=norm.upper())


@register_method("unet3d", **SEGMENTATION)
def unet3d(in_channels: int, num_classes: int, spatial_size: int, width: float, *, num_res_units: int = 2,
           norm: str = "batch"):
    """3D UNet (MONAI residual UNet, BatchNorm as the paper), 1-channel sigmoid lesion output."""
    return SegmentationNet(unet_backbone(in_channels, 1, width, num_res_units, check_norm("unet3d", "norm", norm)))
