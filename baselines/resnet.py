"""3D ResNet — "Deep Residual Learning for Image Recognition" (He et al., CVPR 2016,
https://arxiv.org/abs/1512.03385) in the 3D form of Hara et al. (CVPR 2018), the seed's Table 4 baselines.

Built on MONAI's ``ResNet`` with a stride-2 first convolution (``conv1_t_stride=2``): the default
stride-1 stem is about 6× slower at the same size. ``width`` maps to MONAI's ``widen_factor``.
No pretrained weights: everything is trained from scratch.
"""

from __future__ import annotations

from monai.networks.nets import resnet34 as monai_resnet34

from bench.losses import ClassificationLoss
from bench.outputs import ClassificationNet
from bench.registry import register_method

__all__ = ["resnet34"]


@register_method("resnet34", kind="cls", loss=ClassificationLoss, weights={"ce": 1.0})
def resnet34(in_channels: int, num_classes: int, spatial_size: int, width: float):
    """3D ResNet34 (MONAI), stride-2 stem, softmax over {MS, NMOSD}."""
    net = monai_resnet34(
        spatial_dims=3,
        n_input_channels=in_channels,
        num_classes=num_classes,
        conv1_t_stride=2,
        widen_factor=width,
    )
    return ClassificationNet(net)
