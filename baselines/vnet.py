"""3D VNet — "V-Net: Fully Convolutional Neural Networks for Volumetric Medical Image Segmentation"
(Milletari et al., 3DV 2016, https://arxiv.org/abs/1606.04797), the joint-model paper's Table 3 baseline.

Built from MONAI's VNet blocks (input transition, four down and four up transitions with 5×5×5
residual convolutions, BatchNorm, ELU, dropout 0.5 in the two deepest levels): 16, 32, 64, 128, 256
channels at width 1 (45.6 M parameters). MONAI's ``VNet`` fixes those channel counts; :class:`VNet3D`
rebuilds the same blocks with the base count scaled by ``width`` and reuses MONAI's forward.
"""

from __future__ import annotations

from monai.networks.nets import VNet
from monai.networks.nets.vnet import DownTransition, InputTransition, OutputTransition, UpTransition
from torch import nn

from baselines.unet import SEGMENTATION
from bench.nn.widths import scaled_channels
from bench.outputs import SegmentationNet
from bench.registry import register_method

__all__ = ["VNet3D", "vnet"]

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


@register_method("vnet", **SEGMENTATION)
def vnet(in_channels: int, num_classes: int, spatial_size: int, width: float):
    """3D VNet (MONAI blocks, width-scaled), 1-channel sigmoid lesion output."""
    return SegmentationNet(VNet3D(in_channels, 1, base=scaled_channels((16,), width)[0]))
