"""DSI-Net in 3D: component shapes, prototype mining, the two-disease global prototypes, the loss."""

import pytest
import torch

from baselines.dsi_net import (
    ASPP,
    BinaryGateUnit,
    DSINet,
    DSINetLoss,
    GlobalPrototypes,
    GumbelGate,
    LesionLocationMining,
    _cross_attention,
    interaction_loss,
)


@pytest.mark.parametrize(("size", "k", "rates"), [(32, 6, (1, 2, 2)), (48, 21, (1, 2, 3)), (160, 781, (4, 8, 11))])
def test_k_and_aspp_dilations_keep_the_official_ratios(size, k, rates):
    net = DSINet(1, 2, size, width=0.25)
    assert net.k == k
    assert tuple(b[0].dilation[0] for b in net.aspp.branches[1:]) == rates


def test_forward_shapes():
    torch.manual_seed(0)
    net = DSINet(1, 2, 32, width=0.25)
    out = net(torch.randn(2, 1, 32, 32, 32))
    assert out.seg_logits.shape == (2, 2, 32, 32, 32) and out.aux["seg_coarse"].shape == (2, 2, 32, 32, 32)
    assert out.cls_logits.shape == (2, 2)
    assert net.cls_predict.bias is None


def test_segmentation_heads_start_at_the_lesion_prior():
    net = DSINet(1, 2, 32, width=0.25).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 32, 32, 32))
    prob = torch.softmax(out.seg_logits, 1)[:, 1]
    assert 0.002 < prob.mean().item() < 0.05


def test_aspp_shape():
    assert ASPP(8, 4, (1, 2, 3))(torch.randn(2, 8, 6, 6, 6)).shape == (2, 4, 6, 6, 6)


def test_gumbel_gate_is_binary_with_a_straight_through_gradient():
    gate = GumbelGate()
    x = torch.randn(64, requires_grad=True)
    y = gate(x)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    y.sum().backward()
    assert x.grad.abs().sum() > 0
    gate.eval()
    assert torch.equal(gate(torch.tensor([-0.1, 0.0, 2.0])), torch.tensor([0.0, 1.0, 1.0]))


def test_gate_unit_gives_one_gate_per_prototype():
    assert BinaryGateUnit(8, 5)(torch.randn(3, 8, 5)).shape == (3, 1, 5)


def test_cross_attention_is_the_max_relu_cosine():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    prototypes = torch.stack([e1, 3 * e1], 1).unsqueeze(0)  # [1, C=2, K=2]
    feats = torch.stack([e1, e2, -e1, e1 + e2], 1).unsqueeze(0)  # [1, C=2, N=4]
    expected = torch.tensor([1.0, 0.0, 0.0, 5 ** -0.5])  # cos(e1, (1, 2)) = 1 / √5
    assert torch.allclose(_cross_attention(prototypes, feats)[0, 0], expected, atol=1e-6)


def test_lesion_location_mining_reads_the_top_k_lesion_positions():
    """With gates open, a map whose lesion positions are feature-identical to one background position
    lights that background position up (fore → back attention) and nothing else."""
    torch.manual_seed(0)
    llm = LesionLocationMining(channels=3, k=2).eval()
    for unit in (llm.gate_fore, llm.gate_back):  # gates open: fc2 bias large, weights zero
        torch.nn.init.zeros_(unit.fc2.weight)
        torch.nn.init.constant_(unit.fc2.bias, 5.0)
    feats = torch.zeros(1, 3, 2, 2, 2)
    lesion, mimic, other = torch.tensor([1.0, 0, 0]), torch.tensor([2.0, 0, 0]), torch.tensor([0, 1.0, 0])
    flat = feats.view(1, 3, 8)
    flat[0, :, 0], flat[0, :, 1] = lesion, lesion  # the two lesion positions
    flat[0, :, 5] = mimic  # background, but looks like a lesion
    flat[0, :, [2, 3, 4, 6, 7]] = other.unsqueeze(1)
    mask = torch.zeros(1, 2, 8)
    mask[0, 1, :2], mask[0, 0, 2:] = 0.9, 0.95
    mask[0, 0, :2], mask[0, 1, 2:] = 0.1, 0.05
    out = llm(feats, mask.view(1, 2, 2, 2, 2)).view(1, 3, 8)
    # position 5: f + f ⊙ (m_lesion − att_back + att_fore) = f (1 + 0.05 − 0 + 1)
    assert torch.allclose(out[0, :, 5], mimic * 2.05, atol=1e-5)
    # other background positions: orthogonal to the lesion prototypes, and the background prototypes
    # do not reach them (back → fore attention acts on lesion positions only)
    assert torch.allclose(out[0, :, 2], other * 1.05, atol=1e-5)
    with pytest.raises(ValueError, match="k=9 exceeds the 8 feature positions"):
        LesionLocationMining(3, 9)(feats, mask.view(1, 2, 2, 2, 2))


def test_global_prototypes_use_both_disease_classes_and_a_learned_background():
    torch.manual_seed(0)
    gpg = GlobalPrototypes(cin=6, channels=4)
    weights, logits = torch.randn(2, 6), torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    protos = gpg(weights, logits)
    assert protos.shape == (2, 3, 4)
    assert torch.equal(protos[0, 0], gpg.background) and torch.equal(protos[1, 0], gpg.background)
    base = gpg.mlp(weights)
    p = torch.softmax(logits, 1)
    assert torch.allclose(protos[:, 1:], p.unsqueeze(2) * base, atol=1e-6)


def test_loss_terms_and_the_interaction_switch():
    torch.manual_seed(0)
    net = DSINet(1, 2, 32, width=0.25)
    image = torch.randn(2, 1, 32, 32, 32)
    batch = {"image": image, "mask": (torch.rand(2, 1, 32, 32, 32) > 0.95).float(), "label": torch.tensor([0, 1])}
    out = net(image)
    total, terms = DSINetLoss()(out, batch, progress=0.5)
    assert terms["interaction"] == 0.0
    assert total.item() == pytest.approx(terms["ce"] + terms["fine"] + terms["coarse"], rel=1e-5)
    _, terms_on = DSINetLoss(interaction=0.05)(out, batch, progress=0.5)
    assert terms_on["interaction"] == pytest.approx(interaction_loss(out.cls_logits, out.seg_logits, batch["label"]).item())
    assert terms_on["interaction"] >= 0.0


def test_interaction_loss_hand_value():
    """One sample, class 0 right in both tasks: half of KL(cls ‖ seg) + KL(seg ‖ cls)."""
    cls = torch.tensor([[2.0, 0.0]])
    seg = torch.zeros(1, 2, 1, 1, 2)
    seg[0, 0] = 1.0  # log-sum-exp over 2 voxels / 2 = (1 + ln 2) / 2 and ln 2 / 2
    s = torch.tensor([(1 + torch.log(torch.tensor(2.0))) / 2, torch.log(torch.tensor(2.0)) / 2])
    pc, ps = torch.softmax(cls[0], 0), torch.softmax(s, 0)
    kl = lambda p, q: (p * (p.log() - q.log())).sum()  # noqa: E731
    expected = (kl(pc, ps) + kl(ps, pc)) / 2
    assert interaction_loss(cls, seg, torch.tensor([0])).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize(("kwargs", "match"), [({"spatial_size": 36}, "divisible by 8"), ({"k": 0}, "k must be in")])
def test_bad_arguments(kwargs, match):
    args = {"spatial_size": 32, **kwargs}
    with pytest.raises(ValueError, match=match):
        DSINet(1, 2, args.pop("spatial_size"), 0.25, **args)
