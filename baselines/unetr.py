"""UNETR — "UNETR: Transformers for 3D Medical Image Segmentation" (Hatamizadeh et al., WACV 2022,
https://arxiv.org/abs/2103.10504), the 3D transformer segmenter of the suite.

UML's Table 1 (seed ``004``) compares against TransUNet, a 2D network (ViT encoder on CNN features,
U-Net decoder). Its 3D stand-in here is MONAI's ``UNETR`` — a 12-layer ViT on 16³ patches whose
layers 3, 6, 9 and 12 feed a convolutional U-shaped decoder — and it is reported as "UNETR", not as
TransUNet. UNETR rather than SwinUNETR: SwinUNETR needs sizes divisible by 32, which the ``cpu``
profile's 48³ is not, and a plain-ViT encoder is the closer match to TransUNet.

Width: ViT-B at width 1 (hidden 768, 12 heads of 64, MLP 3072; 16 decoder feature channels,
92 M parameters); ``width`` scales the number of heads (head size fixed at 64) and the decoder
features. The depth stays 12 (UNETR reads layers 3/6/9/12). MONAI's transformer blocks carry an unused
cross-attention LayerNorm; it is removed so that the parameter count is the network's.
"""

from __future__ import annotations

from torch import nn

from baselines.unet import SEGMENTATION
from bench.nn.widths import scaled_channels
from bench.outputs import SegmentationNet
from bench.registry import register_method

__all__ = ["unetr"]

_HEAD_DIM = 64


@register_method("unetr", **SEGMENTATION)
def unetr(in_channels: int, num_classes: int, spatial_size: int, width: float):
    """UNETR (MONAI ViT encoder + CNN decoder), the 3D stand-in for TransUNet; sigmoid lesion output."""
    from monai.networks.nets import UNETR

    heads = max(1, round(12 * width))
    net = UNETR(
        in_channels=in_channels,
        out_channels=1,
        img_size=spatial_size,
        feature_size=scaled_channels((16,), width)[0],
        hidden_size=heads * _HEAD_DIM,
        mlp_dim=4 * heads * _HEAD_DIM,
        num_heads=heads,
    )
    for block in net.vit.blocks:  # MONAI builds this LayerNorm even without cross-attention; it is never used
        block.norm_cross_attn = nn.Identity()
    return SegmentationNet(net)
