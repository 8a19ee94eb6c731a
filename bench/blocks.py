"""Small 3D building blocks shared by the suite's own networks (joint model, BCS, DSI-Net, UML).

Convolution blocks are conv → InstanceNorm (affine) → LeakyReLU: the profiles train with batch 2,
which rules out BatchNorm's batch statistics.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["conv_block", "pointwise_block", "double_conv", "separable_block", "ResidualBlock"]


def conv_block(cin: int, cout: int, *, stride: int = 1, kernel: int = 3, dilation: int = 1) -> nn.Sequential:
    """conv → InstanceNorm → LeakyReLU (padding keeps the size at stride 1)."""
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
        nn.InstanceNorm3d(cout, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
    )


def pointwise_block(cin: int, cout: int) -> nn.Sequential:
    """A 1×1×1 conv block (the official codes' 1×1 conv → BN → ReLU, here → InstanceNorm → LeakyReLU)."""
    return conv_block(cin, cout, kernel=1)


def double_conv(cin: int, cout: int) -> nn.Sequential:
    """An encoding / decoding module: two 3×3×3 conv blocks."""
    return nn.Sequential(conv_block(cin, cout), conv_block(cout, cout))


def separable_block(cin: int, cout: int, *, dilation: int = 2) -> nn.Sequential:
    """A dilated depthwise-separable conv block (the Xception-style classifier heads of DSI-Net and UML):
    depthwise 3×3×3 (dilated) → pointwise 1×1×1 → InstanceNorm → LeakyReLU."""
    return nn.Sequential(nn.Conv3d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
                         nn.Conv3d(cin, cout, 1, bias=False), nn.InstanceNorm3d(cout, affine=True),
                         nn.LeakyReLU(0.01, inplace=True))


class ResidualBlock(nn.Module):
    """A 3D residual coding block: two 3×3×3 convs with a (projected) identity shortcut.

    Args:
        cin, cout: channels in and out.
        stride: stride of the first convolution (and of the projection).
        dilation: dilation of both convolutions (DSI-Net's output-stride-8 exit block).
    """

    def __init__(self, cin: int, cout: int, *, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_block(cin, cout, stride=stride, dilation=dilation),
            nn.Conv3d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False),
            nn.InstanceNorm3d(cout, affine=True),
        )
        self.skip = (nn.Identity() if cin == cout and stride == 1 else
                     nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False), nn.InstanceNorm3d(cout, affine=True)))
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))
