"""Small 3D building blocks shared by the suite's own networks (joint model, BCS, DSI-Net, UML).

Convolution blocks are conv → norm → LeakyReLU. The norm is InstanceNorm (affine) by default: the
profiles train with batch 2, and segmentation paths are per-sample. Blocks whose output is globally
average-pooled into a classifier take ``norm="batch"``: an InstanceNorm output has the same per-channel
mean (its affine bias) for every scan, so the pooled feature of a block ending in InstanceNorm is a
constant and "how much lesion there is" is normalised away (measured on the joint model's classification
head: pooled pre-activations spread 3e-8 across scans). BatchNorm keeps the scan-to-scan differences
(its statistics are the batch's in training and running averages in evaluation), as every MONAI classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import ConfigError

__all__ = ["conv_block", "pointwise_block", "double_conv", "separable_block", "ResidualBlock", "norm3d", "NORMS",
           "check_norm"]

NORMS = ("instance", "batch")


def check_norm(method: str, key: str, value: str) -> str:
    """``value`` if it names a norm, else a :class:`~bench.errors.ConfigError` naming the method's ``model_args`` key."""
    if value not in NORMS:
        raise ConfigError(f"method '{method}': model_args.{key} must be one of {', '.join(NORMS)}; got {value!r}")
    return value


def norm3d(kind: str, channels: int) -> nn.Module:
    """``instance``: InstanceNorm3d (affine); ``batch``: BatchNorm3d."""
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    raise ValueError(f"unknown norm {kind!r}; expected one of {', '.join(NORMS)}")


def conv_block(cin: int, cout: int, *, stride: int = 1, kernel: int = 3, dilation: int = 1,
               norm: str = "instance") -> nn.Sequential:
    """conv → norm → LeakyReLU (padding keeps the size at stride 1)."""
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
        norm3d(norm, cout),
        nn.LeakyReLU(0.01, inplace=True),
    )


def pointwise_block(cin: int, cout: int) -> nn.Sequential:
    """A 1×1×1 conv block (the official codes' 1×1 conv → BN → ReLU, here → InstanceNorm → LeakyReLU)."""
    return conv_block(cin, cout, kernel=1)


def double_conv(cin: int, cout: int) -> nn.Sequential:
    """An encoding / decoding module: two 3×3×3 conv blocks."""
    return nn.Sequential(conv_block(cin, cout), conv_block(cout, cout))


def separable_block(cin: int, cout: int, *, dilation: int = 2, norm: str = "instance") -> nn.Sequential:
    """A dilated depthwise-separable conv block (the Xception-style classifier heads of DSI-Net and UML):
    depthwise 3×3×3 (dilated) → pointwise 1×1×1 → norm → LeakyReLU."""
    return nn.Sequential(nn.Conv3d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
                         nn.Conv3d(cin, cout, 1, bias=False), norm3d(norm, cout), nn.LeakyReLU(0.01, inplace=True))


class ResidualBlock(nn.Module):
    """A 3D residual coding block: two 3×3×3 convs with a (projected) identity shortcut.

    Args:
        cin, cout: channels in and out.
        stride: stride of the first convolution (and of the projection).
        dilation: dilation of both convolutions (DSI-Net's output-stride-8 exit block).
        norm: ``instance`` or ``batch`` (module docstring: ``batch`` where the output is pooled).
    """

    def __init__(self, cin: int, cout: int, *, stride: int = 1, dilation: int = 1, norm: str = "instance") -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_block(cin, cout, stride=stride, dilation=dilation, norm=norm),
            nn.Conv3d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False),
            norm3d(norm, cout),
        )
        self.skip = (nn.Identity() if cin == cout and stride == 1 else
                     nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False), norm3d(norm, cout)))
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))
