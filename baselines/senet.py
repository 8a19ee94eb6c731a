"""3D SE-ResNet50 — "Squeeze-and-Excitation Networks" (Hu et al., CVPR 2018,
https://arxiv.org/abs/1709.01507), the joint-model paper's Table 4 "SENet" baseline.

Built on MONAI's ``SENet`` with ``SEResNet50``'s settings (bottleneck blocks 3, 4, 6, 3, SE reduction
16, 7×7×7 stride-2 stem and max-pool, BatchNorm). MONAI fixes the stages' widths at 64, 128, 256,
512; :class:`SEResNet50` scales them (and the stem) by ``width``. No pretrained weights.
"""

from __future__ import annotations

from monai.networks.nets.senet import SENet, SEResNetBottleneck
from torch import nn

from baselines.resnet import CLASSIFICATION
from bench.nn.widths import scaled_channels
from bench.outputs import ClassificationNet
from bench.registry import register_method

__all__ = ["SEResNet50", "senet50"]


class SEResNet50(SENet):
    """MONAI's 3D SE-ResNet50 with every stage's width multiplied by ``width``.

    Args:
        in_channels: input channels.
        num_classes: output logits.
        width: channel multiplier (1 = the paper's 64-128-256-512 bottleneck widths).
    """

    def __init__(self, in_channels: int, num_classes: int, *, width: float = 1.0) -> None:
        if width <= 0:
            raise ValueError(f"SEResNet50: width must be > 0, got {width}")
        object.__setattr__(self, "_width", width)  # read by _make_layer, which SENet.__init__ calls
        super().__init__(spatial_dims=3, in_channels=in_channels, block=SEResNetBottleneck, layers=(3, 4, 6, 3),
                         groups=1, reduction=16, dropout_prob=None, inplanes=scaled_channels((64,), width)[0],
                         downsample_kernel_size=1, input_3x3=False, num_classes=num_classes)
        self.last_linear = nn.Linear(self.inplanes, num_classes)  # SENet sizes it for width 1
        nn.init.zeros_(self.last_linear.bias)

    def _make_layer(self, block, planes, blocks, groups, reduction, stride=1, downsample_kernel_size=1):
        planes = scaled_channels((planes,), self._width)[0]
        return super()._make_layer(block, planes, blocks, groups, reduction, stride, downsample_kernel_size)


@register_method("senet50", **CLASSIFICATION)
def senet50(in_channels: int, num_classes: int, spatial_size: int, width: float):
    """3D SE-ResNet50 (MONAI SENet), width-scaled stages, softmax over {MS, NMOSD}."""
    return ClassificationNet(SEResNet50(in_channels, num_classes, width=width))
