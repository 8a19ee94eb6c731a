"""EC — the evidential classifier of UML's Table 1 (seed ``004``): a classification backbone whose two
outputs are evidence, trained with the TMC loss (Han et al., "Trusted Multi-View Classification",
ICLR 2021, https://arxiv.org/abs/2102.02051, single view).

Evidence = softplus(logits), α = e + 1, class probability α / S, image-level uncertainty 2 / S; loss
:class:`bench.evidential.EvidentialClassificationLoss` (digamma loss + annealed KL to the uniform
Dirichlet).

Decision: the backbone is the 3D ResNet50 of :mod:`baselines.resnet` (stride-2 stem), the bottleneck
ResNet closest to the Res2Net-50 that UML uses as its classification encoder; ``backbone: resnet34``
selects the basic-block ResNet34.
"""

from __future__ import annotations

from baselines.resnet import resnet3d
from bench.errors import ConfigError
from bench.evidential import EvidentialClassificationLoss
from bench.registry import register_method

__all__ = ["ec"]

_BACKBONES = ("resnet34", "resnet50")


@register_method("ec", kind="cls", loss=EvidentialClassificationLoss)
def ec(in_channels: int, num_classes: int, spatial_size: int, width: float, *, backbone: str = "resnet50"):
    """EC: 3D ResNet50 with a softplus evidence head and the TMC loss (Dirichlet probability and uncertainty)."""
    if backbone not in _BACKBONES:
        raise ConfigError(f"method 'ec': model_args.backbone must be one of {sorted(_BACKBONES)}, got {backbone!r}")
    return resnet3d(backbone, in_channels, num_classes, width)
