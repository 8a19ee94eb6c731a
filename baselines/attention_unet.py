"""3D Attention U-Net — "Attention U-Net: Learning Where to Look for the Pancreas" (Oktay et al.,
MIDL 2018, https://arxiv.org/abs/1804.03999), the joint-model paper's Table 3 baseline.

Built on MONAI's ``AttentionUnet``: additive attention gates on every skip connection, the same five
levels as the 3D UNet baseline (16, 32, 64, 128, 256 channels at width 1, four stride-2
downsamplings) so that Table 3 compares the two at matched width.
"""

from __future__ import annotations

from baselines.unet import SEGMENTATION, UNET_CHANNELS
from bench.nn.widths import scaled_channels
from bench.outputs import SegmentationNet
from bench.registry import register_method

__all__ = ["attention_unet"]


@register_method("attention_unet", **SEGMENTATION)
def attention_unet(in_channels: int, num_classes: int, spatial_size: int, width: float):
    """3D Attention U-Net (MONAI), attention-gated skips, 1-channel sigmoid lesion output."""
    from monai.networks.nets import AttentionUnet

    net = AttentionUnet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=1,
        channels=scaled_channels(UNET_CHANNELS, width),
        strides=(2, 2, 2, 2),
    )
    return SegmentationNet(net)
