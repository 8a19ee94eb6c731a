"""The baseline zoo: width-1 networks are the published (MONAI) ones, width scaling, argument errors."""

import pytest
import torch
from monai.networks.nets import UNETR, VNet
from monai.networks.nets.senet import SEResNet50 as MonaiSEResNet50

from baselines.bcs import BCS
from baselines.monai_nets import SEResNet50, VNet3D
from bench.errors import ConfigError
from bench.registry import METHODS, load_plugins

load_plugins()


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_vnet_at_width_one_is_monais_vnet():
    ours, monai = VNet3D(1, 1), VNet(spatial_dims=3, in_channels=1, out_channels=1)
    assert n_params(ours) == n_params(monai) == 45_593_892  # docs/methods.md: 45.6 M
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in monai.named_parameters()]


def test_seresnet50_at_width_one_is_monais():
    ours = SEResNet50(1, 2)
    monai = MonaiSEResNet50(spatial_dims=3, in_channels=1, num_classes=2)
    assert n_params(ours) == n_params(monai)
    assert ours(torch.randn(2, 1, 32, 32, 32)).shape == (2, 2)


def test_unetr_at_width_one_is_vit_b_without_the_unused_cross_attention_norms():
    ours = METHODS.get("unetr").build(in_channels=1, num_classes=2, spatial_size=32, width=1.0).net
    monai = UNETR(in_channels=1, out_channels=1, img_size=32)
    unused = sum(n_params(b.norm_cross_attn) for b in monai.vit.blocks)
    assert n_params(ours) == n_params(monai) - unused
    assert (ours.vit.blocks[0].attn.num_heads, ours.vit.blocks[0].mlp.linear1.out_features) == (12, 3072)


@pytest.mark.parametrize("name", ["resnet34", "resnet50", "resnet101", "resnet152"])
def test_resnets_use_the_stride_two_stem(name):
    model = METHODS.get(name).build(in_channels=1, num_classes=2, spatial_size=32, width=0.25)
    assert model.net.conv1.stride == (2, 2, 2)


def test_bcs_shares_one_encoder_between_the_tasks():
    torch.manual_seed(0)
    model = BCS(1, 2, (4, 8, 16))
    out = model(torch.randn(2, 1, 16, 16, 16))
    assert out.seg_logits.shape == (2, 1, 16, 16, 16) and out.cls_logits.shape == (2, 2)
    out.cls_logits.sum().backward()  # the classification loss alone trains the shared encoder
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.decoder.parameters())
    assert METHODS.get("bcs").weights == {"dice": 1.0, "bce": 0.0, "ce": 1.0}  # L = CE + Dice (docs/methods.md)


def test_evidential_methods_predict_dirichlet_probabilities():
    for name, shape in (("ec", (2,)), ("tbrats", (2, 32, 32, 32))):
        spec = METHODS.get(name)
        out = spec.build(in_channels=1, num_classes=2, spatial_size=32, width=0.25)(torch.randn(2, 1, 32, 32, 32))
        pred = spec.make_loss().predict(out)
        uncertainty = pred.cls_uncertainty if name == "ec" else pred.seg_uncertainty
        assert uncertainty.shape == shape and ((0 < uncertainty) & (uncertainty <= 1)).all()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: VNet3D(2, 1, base=5), ValueError, "base channels must be a multiple of in_channels"),
        (lambda: SEResNet50(1, 2, width=0), ValueError, "width must be > 0"),
        (lambda: BCS(1, 2, (8,)), ValueError, "at least two levels"),
        (lambda: METHODS.get("ec").build(in_channels=1, num_classes=2, spatial_size=32, width=0.25, backbone="vgg"),
         ConfigError, "backbone must be one of"),
        (lambda: METHODS.get("vnet").build(in_channels=1, num_classes=2, spatial_size=40, width=0.25),
         ConfigError, "divisible by 16, got 40"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
