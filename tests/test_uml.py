"""UML (UML paper): hand-computed pieces, the Table 3 switches changing what they name, the loss (Eqs. 7–10)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from bench.evidential import digamma_loss, dirichlet_alpha, kl_to_uniform, subjective_opinion
from bench.registry import METHODS, load_plugins
from methods.uml import UML, PolarizedSelfAttention, Res2NetBlock, UMLLoss, channel_shuffle, log_dice_loss, reliable_mask

load_plugins()
SIZE = 32


def _model(**flags) -> UML:
    torch.manual_seed(0)
    return UML(1, 2, width=0.25, **flags).eval()


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(2, 1, SIZE, SIZE, SIZE, dtype=torch.long)
    mask[0, 0, 10:14, 10:14, 10:14] = 1
    return {"image": torch.randn(2, 1, SIZE, SIZE, SIZE, generator=g), "mask": mask, "label": torch.tensor([0, 1])}


def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(8.0).view(1, 8, 1, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    with pytest.raises(ValueError, match="divisible"):
        channel_shuffle(torch.zeros(1, 6, 1, 1, 1), 4)


def test_reliable_mask_is_eq_4():
    seg, mask = torch.full((1, 2, 1, 1, 1), 1.0), torch.full((1, 2, 1, 1, 1), 2.0)
    u = torch.full((1, 1, 1, 1), math.log(2.0))
    assert reliable_mask(seg, mask, u).flatten().tolist() == pytest.approx([1.5, 1.5])  # (1 + 2) · e^{−ln 2}


def test_polarized_self_attention_with_zero_weights_scales_by_three_quarters():
    psa = PolarizedSelfAttention(4)
    for conv in (psa.ch_v, psa.ch_q, psa.ch_z, psa.sp_v, psa.sp_q):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    x = torch.randn(2, 4, 3, 3, 3)
    # channel weight σ(LN(0)) = ½, spatial weight σ(0) = ½: ½·(½x) + ½x = ¾x
    assert torch.allclose(psa(x), 0.75 * x, atol=1e-6)


def _input_of_second_group(block: Res2NetBlock, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = block.convs[1].register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        block(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("first", [False, True])
def test_res2net_block_is_hierarchical_except_in_the_first_block_of_a_stage(first):
    torch.manual_seed(0)
    block = (Res2NetBlock(8, 32, stride=2) if first else Res2NetBlock(32, 32)).eval()
    x = torch.randn(1, 8 if first else 32, 8, 8, 8)
    assert block(x).shape == (1, 32, 4 if first else 8, 4 if first else 8, 4 if first else 8)
    before = _input_of_second_group(block, x)
    with torch.no_grad():
        block.convs[0][0].weight.add_(1.0)  # K₂
    after = _input_of_second_group(block, x)
    # a normal block feeds x₃ + y₂ to K₃, so K₂ changes K₃'s input; a stage block feeds x₃ alone
    assert torch.equal(before, after) == first


def test_log_dice_loss_hand_values():
    target = torch.tensor([[[[1, 0]]]])  # [1, 1, 1, 2]: one lesion voxel, one background voxel
    perfect = torch.tensor([[[[[-20.0, 20.0]]], [[[20.0, -20.0]]]]]).view(1, 2, 1, 1, 2)
    assert float(log_dice_loss(perfect, target)) == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(1, 2, 1, 1, 2)  # p = ½ everywhere: Dice_c = 2·½ / (1 + 1) = ½ for both classes
    assert float(log_dice_loss(uniform, target)) == pytest.approx(math.log(2.0), rel=1e-4)


def test_outputs_shapes_and_opinions_sum_to_one():
    model = _model()
    out = model(_batch()["image"])
    assert out.seg_logits.shape == (2, 2, SIZE, SIZE, SIZE) and out.cls_logits.shape == (2, 2)
    assert [tuple(s.shape[2:]) for s in out.aux["deep"]] == [(8,) * 3, (4,) * 3, (2,) * 3]  # S/4, S/8, S/16
    assert out.aux["mutual_logits"].shape == (2, 2, SIZE, SIZE, SIZE)
    pred = UMLLoss().predict(out)
    cls = subjective_opinion(dirichlet_alpha(out.cls_logits))
    assert torch.allclose(cls.belief.sum(1) + cls.uncertainty, torch.ones(2))
    assert torch.allclose(pred.cls_prob.sum(1), torch.ones(2)) and torch.equal(pred.cls_uncertainty, cls.uncertainty)
    seg = subjective_opinion(dirichlet_alpha(out.aux["mutual_logits"]))
    assert torch.allclose(seg.belief.sum(1) + seg.uncertainty, torch.ones(2, SIZE, SIZE, SIZE), atol=1e-6)
    assert pred.seg_uncertainty.shape == (2, SIZE, SIZE, SIZE) and 0 < float(pred.seg_uncertainty.detach().min())
    assert float(pred.seg_uncertainty.detach().max()) <= 1.0
    assert torch.allclose(pred.seg_prob, torch.softmax(out.seg_logits, 1)[:, 1])


def test_full_resolution_layout():
    model = UML(1, 2, width=0.25, first_stride=1).eval()
    out = model(torch.randn(1, 1, 16, 16, 16))
    assert [tuple(s.shape[2:]) for s in out.aux["deep"]] == [(8,) * 3, (4,) * 3, (2,) * 3]  # S/2, S/4, S/8


def _perturbed(model: UML, module: torch.nn.Module, image: torch.Tensor):
    with torch.no_grad():
        before = model(image)
        for p in module.parameters():
            p.add_(0.5)
        return before, model(image)


def test_uncertainty_navigator_switch_routes_the_mutual_decoder_into_segmentation():
    image = _batch()["image"]
    on = _model(un=True)
    before, after = _perturbed(on, on.mutual_head, image)
    assert not torch.allclose(before.seg_logits, after.seg_logits)  # M and U^s navigate the decoder
    off = _model(un=False)
    before, after = _perturbed(off, off.mutual_head, image)
    assert torch.equal(before.seg_logits, after.seg_logits)  # no path from the mutual decoder
    assert not torch.equal(before.aux["mutual_logits"], after.aux["mutual_logits"])
    assert on.navigator.fuse_top is not None and off.navigator.fuse_top is None


def test_uncertainty_instructor_switch_routes_segmentation_into_classification():
    image = _batch()["image"]
    on = _model(ui=True)
    before, after = _perturbed(on, on.navigator.up1, image)
    assert not torch.allclose(before.cls_logits, after.cls_logits)  # r^s instructs the classifier (Eq. 6)
    off = _model(ui=False)
    before, after = _perturbed(off, off.navigator.up1, image)
    assert torch.equal(before.cls_logits, after.cls_logits)
    assert not torch.equal(before.seg_logits, after.seg_logits)


def test_without_mutual_decoder_there_is_no_mutual_loss_nor_pixel_uncertainty():
    model = _model(mutual_decoder=False, un=False)
    assert model.mutual_head is None
    out = model(_batch()["image"])
    assert "mutual_logits" not in out.aux
    _, terms = UMLLoss()(out, _batch(), progress=0.5)
    assert terms["mutual"] == 0.0
    assert UMLLoss().predict(out).seg_uncertainty is None
    with pytest.raises(ValueError, match="mutual decoder"):
        UML(1, 2, width=0.25, mutual_decoder=False, un=True)
    with pytest.raises(ConfigError, match="un: true needs mutual_decoder"):
        METHODS.get("uml").build(in_channels=1, num_classes=2, spatial_size=32, width=0.25, mutual_decoder=False)
    with pytest.raises(ConfigError, match="true or false"):
        METHODS.get("uml").build(in_channels=1, num_classes=2, spatial_size=32, width=0.25, ui="yes")


def test_loss_terms_match_eqs_7_to_10():
    batch = _batch()
    with torch.no_grad():
        out = _model()(batch["image"])
    loss = METHODS.get("uml").make_loss()
    assert loss.weights == {"mutual": 0.1, "cls": 0.5, "seg": 0.4}
    for progress in (0.0, 0.25, 1.0):
        lam = min(1.0, progress / 0.5)
        total, terms = loss(out, batch, progress=progress)
        alpha = dirichlet_alpha(out.cls_logits)
        onehot = F.one_hot(batch["label"], 2).float()
        cls = (digamma_loss(alpha, onehot) + lam * kl_to_uniform(onehot + (1 - onehot) * alpha)).mean()
        assert terms["cls"] == pytest.approx(float(cls.detach()), rel=1e-5)
        target = batch["mask"][:, 0]
        seg = [log_dice_loss(out.seg_logits, target)] + [
            log_dice_loss(F.interpolate(s, size=target.shape[1:], mode="trilinear"), target) for s in out.aux["deep"]]
        assert terms["seg"] == pytest.approx(float(sum(seg) / 4), rel=1e-5)
        m_alpha = dirichlet_alpha(out.aux["mutual_logits"])
        m_onehot = F.one_hot(target, 2).movedim(-1, 1).float()
        mutual = (digamma_loss(m_alpha, m_onehot) + lam * kl_to_uniform(m_onehot + (1 - m_onehot) * m_alpha)).mean() \
            + log_dice_loss(F.softplus(out.aux["mutual_logits"]), target)
        assert terms["mutual"] == pytest.approx(float(mutual), rel=1e-5)
        assert float(total) == pytest.approx(0.1 * terms["mutual"] + 0.5 * terms["cls"] + 0.4 * terms["seg"], rel=1e-5)
    # Table S1's rows switch terms off through their weights
    only_cls = METHODS.get("uml").make_loss({"seg": 0.0, "mutual": 0.0})
    total, terms = only_cls(out, batch, progress=1.0)
    assert float(total) == pytest.approx(0.5 * terms["cls"], rel=1e-6)


def test_the_classification_loss_alone_reaches_the_segmentation_encoder():
    model = UML(1, 2, width=0.25).train()
    batch = _batch()
    total, _ = UMLLoss(mutual=0.0, cls=1.0, seg=0.0)(model(batch["image"]), batch, progress=0.5)
    grads = torch.autograd.grad(total, list(model.seg_encoder.parameters()), allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)  # through the mixer and the UI
