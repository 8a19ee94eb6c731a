"""The MS/NMOSD joint model (joint-model paper §3.2–3.4): shapes, the crossover unit, each Lesion Guidance mode's
structure, the cross-task CAM loss against hand-computed values, the β weights, and the switches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from bench.loop import make_optimizer, train_step
from bench.registry import METHODS, load_plugins
from bench.study import Training
from methods.joint import JointModel, JointModelLoss, LesionGuidance, class_activation_maps, cross_task_loss, minmax

load_plugins()
WIDTH = 0.25


def _batch(size: int, n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(n, 1, size, size, size, generator=g)
    mask = (torch.rand(n, 1, size, size, size, generator=g) > 0.97).float()
    return {"image": image, "mask": mask, "label": torch.arange(n) % 2}


@pytest.mark.parametrize("size", [32, 48, 64])
def test_output_shapes_at_several_sizes(size):
    torch.manual_seed(0)
    model = JointModel(1, 2, WIDTH)
    out = model(torch.randn(2, 1, size, size, size))
    assert out.seg_logits.shape == (2, 1, size, size, size)
    assert out.cls_logits.shape == (2, 2)
    assert [tuple(s.shape[2:]) for s in out.aux["seg_maps"]] == [(size // 8,) * 3, (size // 4,) * 3, (size // 2,) * 3]
    # the CAMs paired with S/8, S/4, S/2 maps come from blocks 3, 2, 1 at S/16, S/8, S/4
    assert [tuple(f.shape[2:]) for f in out.aux["cls_features"]] == [(size // 16,) * 3, (size // 8,) * 3, (size // 4,) * 3]
    model.eval()
    with torch.no_grad():
        cam = model(torch.randn(1, 1, size, size, size)).aux["cam"]
    assert cam.shape == (1, 1, size, size, size)
    assert 0.0 <= float(cam.min()) and float(cam.max()) <= 1.0 + 1e-6


def test_paper_size_parameter_count_is_reported():
    spec = METHODS.get("joint_model")
    n = sum(p.numel() for p in spec.build(in_channels=1, num_classes=2, spatial_size=160, width=1.0).parameters())
    assert 3.5e6 < n < 4.5e6  # 4.02 M: `bench ls methods --profile paper`


def test_crossover_weights_are_trained_parameters():
    torch.manual_seed(0)
    model = JointModel(1, 2, WIDTH)
    sharing = model.sharing
    names = {name for name, _ in model.named_parameters()}
    assert {"sharing.w_seg", "sharing.w_cls"} <= names
    before = (sharing.w_seg.detach().clone(), sharing.w_cls.detach().clone())
    assert torch.equal(before[0], torch.tensor([0.5, 0.5]))
    optimizer = make_optimizer(model.parameters(), Training(), 1e-2)
    train_step(model, JointModelLoss(), optimizer, _batch(32), progress=0.0)
    assert sharing.w_seg.grad is not None and sharing.w_seg.grad.abs().sum() > 0
    assert sharing.w_cls.grad is not None and sharing.w_cls.grad.abs().sum() > 0
    assert not torch.equal(sharing.w_seg.detach(), before[0])
    assert not torch.equal(sharing.w_cls.detach(), before[1])


def test_crossover_mixes_the_branches_as_eq4():
    torch.manual_seed(0)
    model = JointModel(1, 2, WIDTH)
    sharing = model.sharing
    with torch.no_grad():
        sharing.w_seg.copy_(torch.tensor([2.0, -1.0]))
        sharing.w_cls.copy_(torch.tensor([0.0, 3.0]))
    image = torch.randn(1, 1, 32, 32, 32)
    local, global_ = sharing.local(image), sharing.global_(image)
    f_seg, f_cls = sharing(image)
    torch.testing.assert_close(f_seg, 2.0 * local - global_)
    torch.testing.assert_close(f_cls, 3.0 * global_)


@pytest.mark.parametrize("share", ["local", "global", "none"])
def test_share_switch_builds_the_named_branches(share):
    model = JointModel(1, 2, WIDTH, share=share)
    sharing = model.sharing
    present = {n for n in ("local", "global_", "seg_stem", "cls_stem", "w_seg", "w_cls") if getattr(sharing, n, None) is not None}
    assert present == {"local": {"local"}, "global": {"global_"}, "none": {"seg_stem", "cls_stem"}}[share]
    out = model(torch.randn(2, 1, 32, 32, 32))
    assert out.seg_logits.shape == (2, 1, 32, 32, 32) and out.cls_logits.shape == (2, 2)


def _seg_to_cls_dependence(lgm: str, guide_grad: bool = True) -> tuple[float, bool]:
    """How much the class logits move when only the segmentation output changes, and whether the
    segmentation subnetwork receives gradient from the class logits (``guide_grad``: the paper's graph)."""
    torch.manual_seed(0)
    model = JointModel(1, 2, WIDTH, lgm=lgm, guide_grad=guide_grad).eval()
    image = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        before = model(image).cls_logits.clone()
        model.segmentation.offset.add_(5.0)  # shifts every segmentation logit, nothing else
        after = model(image).cls_logits
    model.train()
    model.zero_grad()
    model(image).cls_logits.sum().backward()
    grads = [p.grad for p in model.segmentation.parameters()]
    reached = any(g is not None and g.abs().sum() > 0 for g in grads)
    return float((after - before).abs().max()), reached


def test_lgm_none_has_no_path_from_segmentation_into_the_classifier():
    change, reached = _seg_to_cls_dependence("none")
    assert change == 0.0
    assert not reached
    assert not hasattr(JointModel(1, 2, WIDTH, lgm="none").guidance, "f_p")


@pytest.mark.parametrize("lgm", ["full", "dot", "concat", "add"])
def test_other_lgm_modes_pass_the_segmentation_output_to_the_classifier(lgm):
    change, reached = _seg_to_cls_dependence(lgm)
    assert change > 1e-6
    assert reached
    # the suite's default detaches P: the same forward path, no gradient into the segmentation
    change_detached, reached_detached = _seg_to_cls_dependence(lgm, guide_grad=False)
    assert change_detached == pytest.approx(change) and not reached_detached


@pytest.mark.parametrize("mode", ["full", "dot", "concat", "add", "none"])
def test_each_lgm_mode_computes_the_structure_it_names(mode):
    """Recompute J from the module's own layers by the formula of each mode (paper Eqs. 7–9, Table 8)."""
    torch.manual_seed(0)
    lgm = LesionGuidance(channels=4, prob_channels=2, out_channels=4, mode=mode).eval()
    f_cls = torch.randn(1, 4, 8, 8, 8)
    prob = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        j = lgm(f_cls, prob)
        if mode == "none":
            expected = lgm.fuse(lgm.f_d(f_cls))
        else:
            p_small = lgm.f_p(prob)
            alpha = torch.sigmoid(p_small)
            expected = {
                "full": lambda: lgm.fuse(torch.cat([lgm.f_pp(p_small), lgm.f_d(alpha * f_cls)], 1)),
                "dot": lambda: lgm.fuse(lgm.f_d(alpha * f_cls)),
                "concat": lambda: lgm.fuse(torch.cat([lgm.f_pp(p_small), lgm.f_d(f_cls)], 1)),
                "add": lambda: lgm.fuse(lgm.f_d(f_cls + p_small)),
            }[mode]()
    assert j.shape == (1, 4, 4, 4, 4)  # J at S/4 for f_cls at S/2
    torch.testing.assert_close(j, expected)
    assert hasattr(lgm, "f_pp") == (mode in ("full", "concat"))


def test_class_activation_maps_hand_computed():
    features = [torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 1, 2)]  # channel 0: (1, 2), channel 1: (3, 4)
    weights = [torch.tensor([[1.0, 2.0], [3.0, 4.0]])]  # class 0: (1, 2), class 1: (3, 4)
    v0 = class_activation_maps(features, weights, torch.tensor([0]))[0]
    v1 = class_activation_maps(features, weights, torch.tensor([1]))[0]
    assert v0.flatten().tolist() == [1 * 1 + 2 * 3, 1 * 2 + 2 * 4]  # [7, 10]
    assert v1.flatten().tolist() == [3 * 1 + 4 * 3, 3 * 2 + 4 * 4]  # [15, 22]


def test_cross_task_loss_hand_computed():
    s = torch.full((1, 1, 2, 2, 2), 0.5)
    v = torch.arange(8.0).view(1, 1, 2, 2, 2)  # min-max → i / 7
    # Σ_i (i/7 − 1/2)² = Σ (i − 3.5)² / 49 = 42 / 49 over 8 voxels; η = 0.5
    expected = 0.5 * (42 / 49) / 8
    assert math.isclose(float(cross_task_loss([s], [v], eta=(0.5,))), expected, rel_tol=1e-6)
    # V at a coarser grid is trilinearly resized to S_i first: a constant CAM normalises to 0
    s2 = torch.full((1, 1, 4, 4, 4), 0.25)
    assert math.isclose(float(cross_task_loss([s2], [torch.ones(1, 1, 2, 2, 2)], eta=(1.0,))), 0.0625, rel_tol=1e-6)
    # two terms add with their η
    both = cross_task_loss([s, s2], [v, torch.ones(1, 1, 2, 2, 2)], eta=(0.5, 2.0))
    assert math.isclose(float(both), expected + 2.0 * 0.0625, rel_tol=1e-6)


def test_minmax_is_per_sample():
    x = torch.tensor([[0.0, 2.0, 4.0], [10.0, 10.5, 11.0]])
    torch.testing.assert_close(minmax(x), torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]]))


def test_cross_task_loss_sends_gradients_into_both_subnetworks():
    torch.manual_seed(0)
    model = JointModel(1, 2, WIDTH, cross_grad="both")  # Eq. 11 as written (the default stops it at S_i)
    batch = _batch(32)
    loss, terms = JointModelLoss(seg=0.0, cls=0.0, cross=1.0)(model(batch["image"]), batch, progress=0.0)
    assert terms["cross"] > 0 and float(loss.detach()) == pytest.approx(terms["cross"], rel=1e-5)
    loss.backward()

    def has_grad(module):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    assert has_grad(model.segmentation.side)  # through S_i
    assert has_grad(model.classification.blocks)  # through the CAM features F_i
    assert model.classification.fc.weight.grad.abs().sum() > 0  # through the CAM weights w^c


def test_cross_loss_switch_off_gives_a_zero_term():
    torch.manual_seed(0)
    model = JointModel(1, 2, WIDTH, cross_loss=False)
    batch = _batch(32)
    _, terms = JointModelLoss()(model(batch["image"]), batch, progress=0.0)
    assert terms["cross"] == 0.0 and terms["seg"] > 0 and terms["cls"] > 0


def test_beta_weights_scale_their_terms():
    torch.manual_seed(0)
    model = JointModel(1, 2, WIDTH)
    batch = _batch(32)
    out = model(batch["image"])
    base, terms = JointModelLoss()(out, batch, progress=0.0)
    assert float(base) == pytest.approx(1.0 * terms["seg"] + 0.8 * terms["cls"] + 1.0 * terms["cross"], rel=1e-5)
    for name, beta in (("seg", 3.0), ("cls", 2.5), ("cross", 0.1)):
        weights = {"seg": 1.0, "cls": 0.8, "cross": 1.0, name: beta}
        scaled, _ = JointModelLoss(**weights)(out, batch, progress=0.0)
        default = {"seg": 1.0, "cls": 0.8, "cross": 1.0}[name]
        assert float(scaled - base) == pytest.approx((beta - default) * terms[name], rel=1e-4, abs=1e-6)
    # the registry's default weights are the paper's β = (1, 0.8, 1)
    assert dict(METHODS.get("joint_model").weights) == {"seg": 1.0, "cls": 0.8, "cross": 1.0}


@pytest.mark.parametrize("heads, kind", [("joint", "joint"), ("seg_only", "seg"), ("cls_only", "cls")])
def test_heads_switch_sets_the_task_kind(heads, kind):
    spec = METHODS.get("joint_model")
    assert spec.task_kind({"heads": heads}) == kind
    model = spec.build(in_channels=1, num_classes=2, spatial_size=32, width=WIDTH, heads=heads)
    out = model(torch.randn(2, 1, 32, 32, 32))
    assert out.has_seg == (kind in ("joint", "seg"))
    assert out.has_cls == (kind in ("joint", "cls"))
    assert hasattr(model, "guidance") == (kind != "seg")
    batch = _batch(32)
    loss, terms = JointModelLoss()(out, batch, progress=0.0)
    assert torch.isfinite(loss)
    assert (terms["seg"] > 0) == out.has_seg and (terms["cls"] > 0) == out.has_cls
    assert (terms["cross"] > 0) == (kind == "joint")  # no second task, no cross-task term


@pytest.mark.parametrize("args, needle", [
    ({"lgm": "gate"}, "model_args.lgm must be one of full, dot, concat, add, none"),
    ({"share": "half"}, "model_args.share must be one of both, local, global, none"),
    ({"heads": "both"}, "model_args.heads must be one of joint, seg_only, cls_only"),
    ({"heads": "seg_only", "lgm": "full"}, "heads=seg_only has no second task"),
    ({"heads": "cls_only", "cross_loss": True}, "heads=cls_only has no second task"),
    ({"cross_loss": "yes"}, "model_args.cross_loss must be true or false"),
])
def test_bad_switches_are_clear_errors(args, needle):
    with pytest.raises(ConfigError, match="joint_model") as info:
        METHODS.get("joint_model").build(in_channels=1, num_classes=2, spatial_size=32, width=WIDTH, **args)
    assert needle in str(info.value)


def test_localisation_map_follows_eq10_for_the_predicted_class():
    torch.manual_seed(0)
    model = JointModel(1, 2, WIDTH).eval()
    image = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        out = model(image)
        features = out.aux["cls_features"][::-1]  # blocks 1, 2, 3
        cams = class_activation_maps(features, model.classification.weight_slices(), out.cls_logits.argmax(1))
        maps = [minmax(F.interpolate(v, size=(32,) * 3, mode="trilinear", align_corners=False)) for v in cams]
        expected = (0.5 * maps[0] + 0.25 * maps[1] + 0.25 * maps[2]) / 1.0
    torch.testing.assert_close(out.aux["cam"], expected)


def test_report_maps_helpers():
    import numpy as np
    import pandas as pd

    from bench.report.maps import choose_cases, overlay_colours, unpack_prediction

    pred = np.array([True, True, False, False])
    ref = np.array([True, False, True, False])
    rgba = overlay_colours(pred, ref)
    assert rgba[0, 0] > 0.8 and rgba[0, 1] < 0.2  # TP red
    assert rgba[1, 1] > 0.7 and rgba[1, 0] < 0.2  # FP green
    assert rgba[2, 0] == 1.0 and rgba[2, 1] > 0.8  # FN yellow
    assert rgba[3, 3] == 0.0  # TN transparent
    volume = np.random.default_rng(0).random((3, 4, 5)) > 0.5
    assert np.array_equal(unpack_prediction(np.packbits(volume), (3, 4, 5)), volume)
    rows = pd.DataFrame({"case_id": ["a1", "a2", "b1", "c1", "d1", "e1"], "patient_id": ["a", "a", "b", "c", "d", "e"],
                         "label": [0, 0, 0, 1, 1, 1], "sigma": 0.0})
    lesion = {"a1": 10, "a2": 11, "b1": 30, "c1": 0, "d1": 5, "e1": 7}
    # class 0: median 11 → a2, then a1 (same patient, skipped), then b1; class 1: lesion-free c1 is never
    # shown, d1 and e1 tie at distance 1 from the median 6 and keep their order
    assert choose_cases(rows, lesion, per_class=2) == ["a2", "b1", "d1", "e1"]
