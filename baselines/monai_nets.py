"""Subclasses of MONAI networks: the width-scaled VNet and SE-ResNet50 of :mod:`baselines.vnet` and
:mod:`baselines.senet`.

They live apart from the modules that register the methods because subclassing needs MONAI at class
definition, and ``import monai`` costs several seconds (it loads all of its submodules). Registering the
methods — what every ``bench`` command does to check a study — imports no MONAI; a builder imports this
module when it builds a network.
"""

from __future__ import annotations

from monai.networks.nets import VNet
from monai.networks.nets.senet import SENet, SEResNetBottleneck
from monai.networks.nets.vnet import DownTransition, InputTransition, OutputTransition, UpTransition
from torch import nn

from bench.nn.widths import scaled_channels

__all__ = ["VNet3D", "SEResNet50"]

_ACT = ("elu", {"inplace": True})


class VNet3D(VNet):
    """MONAI's VNet with ``base`` channels at full resolution instead of 16 (doubling at each level).

    Args:
        in_channels: input channels; ``base`` must be a multiple of it (the input transition repeats
            the input along the channel axis for its residual connection).
        out_channels: output channels.
        base: channels of the input transition.
    """

    def __init__(self, in_channels: int, out_channels: int, *, base: int = 16, dropout: float = 0.5) -> None:
        if base % in_channels:
            raise ValueError(f"VNet3D: base channels must be a multiple of in_channels, got base={base}, in_channels={in_channels}")
        nn.Module.__init__(self)
        c = base
        self.in_tr = InputTransition(3, in_channels, c, _ACT)
        self.down_tr32 = DownTransition(3, c, 1, _ACT)
        self.down_tr64 = DownTransition(3, 2 * c, 2, _ACT)
        self.down_tr128 = DownTransition(3, 4 * c, 3, _ACT, dropout_prob=dropout)
        self.down_tr256 = DownTransition(3, 8 * c, 2, _ACT, dropout_prob=dropout)
        self.up_tr256 = UpTransition(3, 16 * c, 16 * c, 2, _ACT, dropout_prob=(dropout, dropout))
        self.up_tr128 = UpTransition(3, 16 * c, 8 * c, 2, _ACT, dropout_prob=(dropout, dropout))
        self.up_tr64 = UpTransition(3, 8 * c, 4 * c, 1, _ACT)
        self.up_tr32 = UpTransition(3, 4 * c, 2 * c, 1, _ACT)
        self.out_tr = OutputTransition(3, 2 * c, out_channels, _ACT)


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
