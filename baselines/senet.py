"""3D SE-ResNet50 — "Squeeze-and-Excitation Networks" (Hu et al., CVPR 2018,
https://arxiv.org/abs/1709.01507), the joint-model paper's Table 4 "SENet" baseline.

Built on MONAI's ``SENet`` with ``SEResNet50``'s settings (bottleneck blocks 3, 4, 6, 3, SE reduction
16, 7×7×7 stride-2 stem and max-pool, BatchNorm). MONAI fixes the stages' widths at 64, 128, 256,
512; :class:`baselines.monai_nets.SEResNet50` scales them (and the stem) by ``width``. No pretrained weights.
"""

from __future__ import annotations

from baselines.resnet import CLASSIFICATION
from bench.outputs import ClassificationNet
from bench.registry import register_method

__all__ = ["senet50"]


@register_method("senet50", **CLASSIFICATION)
def senet50(in_channels: int, num_classes: int, spatial_size: int, width: float):
    """3D SE-ResNet50 (MONAI SENet), width-scaled stages, softmax over {MS, NMOSD}."""
    from baselines.monai_nets import SEResNet50

    return ClassificationNet(SEResNet50(in_channels, num_classes, width=width))
