"""3D ResNet — "Deep Residual Learning for Image Recognition" (He et al., CVPR 2016,
https://arxiv.org/abs/1512.03385) in the 3D form of Hara et al. (CVPR 2018), the joint-model paper's Table 4 baselines.

Built on MONAI's ``ResNet`` (basic blocks for ResNet34, bottlenecks for 50/101/152) with a stride-2
first convolution (``conv1_t_stride=2``): the default stride-1 stem is about 6× slower at the same
size. ``width`` maps to MONAI's ``widen_factor``. ``CLASSIFICATION`` holds the registration settings
every cross-entropy classification baseline shares. No pretrained weights: everything is trained from
scratch.
"""

from __future__ import annotations

from bench.losses import ClassificationLoss
from bench.outputs import ClassificationNet
from bench.registry import register_method

__all__ = ["CLASSIFICATION", "resnet3d", "resnet34", "resnet50", "resnet101", "resnet152"]

CLASSIFICATION = {"kind": "cls", "loss": ClassificationLoss}  # every CE classifier


def resnet3d(depth: str, in_channels: int, num_classes: int, width: float) -> ClassificationNet:
    """MONAI's 3D ResNet ``depth`` (``"resnet34"``, ``"resnet50"``, …) with the stride-2 stem, widened by ``width``."""
    from monai.networks import nets

    factory = getattr(nets, depth)
    net = factory(spatial_dims=3, n_input_channels=in_channels, num_classes=num_classes, conv1_t_stride=2,
                  widen_factor=width)
    return ClassificationNet(net)


@register_method("resnet34", **CLASSIFICATION)
def resnet34(in_channels: int, num_classes: int, spatial_size: int, width: float):
    """3D ResNet34 (MONAI), stride-2 stem, softmax over {MS, NMOSD}."""
    return resnet3d("resnet34", in_channels, num_classes, width)


@register_method("resnet50", **CLASSIFICATION)
def resnet50(in_channels: int, num_classes: int, spatial_size: int, width: float):
    """3D ResNet50 (MONAI, bottleneck blocks), stride-2 stem, softmax over {MS, NMOSD}."""
    return resnet3d("resnet50", in_channels, num_classes, width)


@register_method("resnet101", **CLASSIFICATION)
def resnet101(in_channels: int, num_classes: int, spatial_size: int, width: float):
    """3D ResNet101 (MONAI, bottleneck blocks), stride-2 stem, softmax over {MS, NMOSD}."""
    return resnet3d("resnet101", in_channels, num_classes, width)


@register_method("resnet152", **CLASSIFICATION)
def resnet152(in_channels: int, num_classes: int, spatial_size: int, width: float):
    """3D ResNet152 (MONAI, bottleneck blocks), stride-2 stem, softmax over {MS, NMOSD}."""
    return resnet3d("resnet152", in_channels, num_classes, width)
