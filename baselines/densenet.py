"""3D DenseNet121 — "Densely Connected Convolutional Networks" (Huang et al., CVPR 2017,
https://arxiv.org/abs/1608.06993), the joint-model paper's Table 4 baseline.

Built on MONAI's ``DenseNet121`` (dense blocks of 6, 12, 24, 16 layers, 7×7×7 stride-2 stem and
max-pool, BatchNorm). ``width`` scales the stem's 64 features and the growth rate of 32; the
bottleneck factor stays 4. No pretrained weights.
"""

from __future__ import annotations

from baselines.resnet import CLASSIFICATION
from bench.nn.widths import scaled_channels
from bench.outputs import ClassificationNet
from bench.registry import register_method

__all__ = ["densenet121"]


@register_method("densenet121", **CLASSIFICATION)
def densenet121(in_channels: int, num_classes: int, spatial_size: int, width: float):
    """3D DenseNet121 (MONAI), width-scaled stem and growth rate, softmax over {MS, NMOSD}."""
    from monai.networks.nets import DenseNet121

    init_features, growth_rate = scaled_channels((64, 32), width)
    net = DenseNet121(spatial_dims=3, in_channels=in_channels, out_channels=num_classes,
                      init_features=init_features, growth_rate=growth_rate)
    return ClassificationNet(net)
