"""The short-budget training recipe and the learning fixes: the warm-up + cosine schedule, bf16 autocast, the
norm before global pooling, the joint model's gradient switches (paper behaviour one flag away), profile
validation, the learnability table and the speed-lever benchmark."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from bench.errors import ConfigError
from bench.loop import forward, train, warmup_cosine
from bench.nn.blocks import ResidualBlock
from bench.profiles import PROFILES, Profile
from bench.registry import METHODS, load_plugins
from bench.study import Training
from bench.tasks import get_task
from methods.joint import JointModel, JointModelLoss, cross_task_loss

load_plugins()


def _batch(size: int = 32, n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(n, 1, size, size, size, generator=g)
    mask = (torch.rand(n, 1, size, size, size, generator=g) > 0.97).float()
    return {"image": image, "mask": mask, "label": torch.arange(n) % 2}


# --------------------------------------------------------------------------------------------- schedule

def test_warmup_cosine_by_hand():
    # 10 steps, warm-up 2: 1/2, 2/2, then ½(1 + cos(π t)) with t = 0, 1/8, ..., 7/8
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert [warmup_cosine(s, 10, 0.2) for s in range(10)] == pytest.approx(expected)
    # decay over the last 4 of 10 steps: constant 1 until step 6
    assert [warmup_cosine(s, 10, 0.2, decay=0.4) for s in range(10)] == pytest.approx(
        [0.5, 1.0, 1.0, 1.0, 1.0, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)])
    assert warmup_cosine(0, 10, 0.0) == 1.0  # no warm-up: full rate at the first step
    assert all(warmup_cosine(s, 10, 0.2) > 0 for s in range(10))  # the last step still learns


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, image):
        from bench.outputs import ModelOutput

        return ModelOutput(cls_logits=self.fc(image.flatten(1)[:, :4]))


def _loader(n: int = 8, batch: int = 2):
    data = [{"image": torch.randn(1, 2, 2, 2), "mask": torch.zeros(1, 2, 2, 2), "label": torch.tensor(i % 2)}
            for i in range(n)]
    return torch.utils.data.DataLoader(data, batch_size=batch)


def test_train_steps_the_cosine_schedule_per_batch_and_records_the_last_lr():
    torch.manual_seed(0)
    model, loss = _Tiny(), METHODS.get("resnet34").make_loss()
    seen = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    torch.optim.Adam.step = spy
    try:
        history = train(model, loss, _loader(), task=get_task("cls"), method="tiny", epochs=3, lr=0.01,
                        training=Training(), device=torch.device("cpu"), schedule="cosine", warmup=0.25)
    finally:
        torch.optim.Adam.step = original
    total = 3 * 4
    assert seen == pytest.approx([0.01 * warmup_cosine(s, total, 0.25) for s in range(total)])
    assert [row["lr"] for row in history] == pytest.approx([seen[3], seen[7], seen[11]])


def test_plateau_schedule_is_the_papers():
    model, loss = _Tiny(), METHODS.get("resnet34").make_loss()
    history = train(model, loss, _loader(), task=get_task("cls"), method="tiny", epochs=2, lr=1e-4,
                    training=Training(), device=torch.device("cpu"))
    assert [row["lr"] for row in history] == [1e-4, 1e-4]  # patience 10: no change in 2 epochs


def test_profiles_name_the_recipe_and_paper_keeps_the_papers():
    paper = PROFILES["paper"]
    assert (paper.schedule, paper.lr, paper.warmup, paper.epochs, paper.precision) == ("plateau", 1e-4, 0.0, 200, "fp32")
    assert PROFILES["cpu"].schedule == "cosine" and PROFILES["cpu"].warmup > 0
    for bad, message in [({"schedule": "step"}, "schedule"), ({"precision": "fp16"}, "precision"),
                         ({"warmup": 1.0}, "warmup"), ({"decay": 0.0}, "decay")]:
        with pytest.raises(ConfigError, match=message):
            Profile("x", size=32, n_ms=1, n_nmosd=1, epochs=1, batch=1, width=1.0, lr=1e-3, **bad)


def test_study_training_validate_rejects_one_fold(tmp_path):
    from bench.study import load_study

    path = tmp_path / "s.yaml"
    path.write_text("title: t\ntraining: {validate: 1}\narms: {a: {method: unet3d}}\n")
    with pytest.raises(ConfigError, match="training.validate"):
        load_study(str(path))


# --------------------------------------------------------------------------------------------- bf16

def test_bf16_forward_returns_float32_outputs_close_to_fp32():
    torch.manual_seed(0)
    model = JointModel(1, 2, 0.25).eval()
    image = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        ref, low = forward(model, image), forward(model, image, precision="bf16")
    assert low.seg_logits.dtype == torch.float32 and low.cls_logits.dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in low.aux["seg_maps"])
    assert (low.seg_logits - ref.seg_logits).abs().max() < 0.5  # bf16 keeps ~3 significant digits
    assert not torch.equal(low.seg_logits, ref.seg_logits)  # autocast did run in bf16
    with pytest.raises(ValueError, match="precision"):
        forward(model, image, precision="fp8")


# --------------------------------------------------------------------------------------------- norm before pooling

def test_instance_norm_before_pooling_erases_the_scan_to_scan_difference_batch_norm_keeps_it():
    torch.manual_seed(0)
    x = torch.randn(4, 4, 8, 8, 8)
    x[:2] *= 3.0  # two "scans" with much more signal
    pooled = {}
    for norm in ("instance", "batch"):
        block = ResidualBlock(4, 4, norm=norm).train()
        body = block.body(x)  # the block's last op is a norm; its pooled output is what the head sees
        pooled[norm] = body.mean(dim=(2, 3, 4))
    assert pooled["instance"].std(dim=0).max() < 1e-5  # the affine bias, the same for every scan
    assert pooled["batch"].std(dim=0).max() > 1e-2


@pytest.mark.parametrize("method", ["joint_model", "bcs", "dsi_net", "uml"])
def test_cls_norm_switch_of_every_pooled_classifier(method):
    spec = METHODS.get(method)
    bn = spec.build(in_channels=1, num_classes=2, spatial_size=32, width=0.25)
    inn = spec.build(in_channels=1, num_classes=2, spatial_size=32, width=0.25, cls_norm="instance")
    assert any(isinstance(m, nn.BatchNorm3d) for m in bn.modules())
    assert not any(isinstance(m, nn.BatchNorm3d) for m in inn.modules())
    with pytest.raises(ConfigError, match="cls_norm"):
        spec.build(in_channels=1, num_classes=2, spatial_size=32, width=0.25, cls_norm="group")


def test_dsi_net_segmentation_heads_drop_elements_like_the_official_code():
    model = METHODS.get("dsi_net").build(in_channels=1, num_classes=2, spatial_size=32, width=0.25)
    drops = [m for m in model.coarse_head.modules() if isinstance(m, (nn.Dropout, nn.Dropout3d))]
    assert [type(m) for m in drops] == [nn.Dropout, nn.Dropout] and [m.p for m in drops] == [0.5, 0.1]


# --------------------------------------------------------------------------------------------- gradient switches

def test_cross_task_loss_gradient_stop_by_hand():
    seg = [torch.full((1, 1, 2, 2, 2), 0.5, requires_grad=True)]
    cam = [torch.arange(8.0).view(1, 1, 2, 2, 2)]
    for detach in (False, True):
        seg[0].grad = None
        loss = cross_task_loss(seg, cam, eta=(1.0,), detach_seg=detach)
        target = torch.arange(8.0) / 7.0
        assert float(loss.detach()) == pytest.approx(float(((0.5 - target) ** 2).mean()))  # same value either way
        if detach:
            assert not loss.requires_grad
        else:
            loss.backward()
            torch.testing.assert_close(seg[0].grad.flatten(), 2 * (0.5 - target) / 8)


def _seg_grad(model: JointModel, term: str) -> float:
    torch.manual_seed(1)
    out = model(_batch()["image"])
    loss = JointModelLoss().terms(out, _batch(), progress=0.0)[term]
    model.zero_grad()
    if not loss.requires_grad:
        return 0.0
    loss.backward()
    return sum(float(p.grad.abs().sum()) for p in model.segmentation.parameters() if p.grad is not None)


def test_classification_loss_reaches_the_segmentation_only_with_guide_grad():
    torch.manual_seed(0)
    assert _seg_grad(JointModel(1, 2, 0.25), "cls") == 0.0  # default: P detached in the LGM
    torch.manual_seed(0)
    assert _seg_grad(JointModel(1, 2, 0.25, guide_grad=True), "cls") > 0.0  # the paper


def test_cross_loss_reaches_the_segmentation_only_with_cross_grad_both():
    torch.manual_seed(0)
    default = JointModel(1, 2, 0.25)
    torch.manual_seed(0)
    paper = JointModel(1, 2, 0.25, cross_grad="both")
    assert _seg_grad(default, "cross") == 0.0
    assert _seg_grad(paper, "cross") > 0.0
    # the CAM side is trained either way
    out = default(_batch()["image"])
    JointModelLoss().terms(out, _batch(), progress=0.0)["cross"].backward()
    assert sum(float(p.grad.abs().sum()) for p in default.classification.parameters() if p.grad is not None) > 0


def test_joint_switch_values_are_checked():
    spec = METHODS.get("joint_model")
    with pytest.raises(ConfigError, match="cross_grad"):
        spec.build(in_channels=1, num_classes=2, spatial_size=32, width=0.25, cross_grad="seg")
    with pytest.raises(ConfigError, match="guide_grad"):
        spec.build(in_channels=1, num_classes=2, spatial_size=32, width=0.25, guide_grad="yes")


# --------------------------------------------------------------------------------------------- learnability table

def test_learnability_table_by_hand():
    from bench.report.learning import learnability_table

    folds = pd.DataFrame({"arm": ["a", "a", "b", "b", "c", "c"], "sigma": 0.0,
                          "auc": [0.9, 0.86, 0.7, 0.8, float("nan"), float("nan")],
                          "dsc_lesion": [float("nan"), float("nan"), 0.5, 0.4, 0.2, 0.3]})
    md, frame = learnability_table(folds, ["a", "b", "c"], {"a": "A", "b": "B", "c": "C"}, {"auc": 0.85, "dsc_lesion": 0.4})
    got = frame.set_index("arm")
    assert got.loc["a", "auc_mean"] == pytest.approx(0.88) and bool(got.loc["a", "passes"])
    assert math.isnan(got.loc["a", "dsc_lesion_mean"])  # a classifier is not judged on DSC
    assert got.loc["b", "auc_mean"] == pytest.approx(0.75) and not got.loc["b", "auc_pass"]
    assert bool(got.loc["b", "dsc_lesion_pass"]) and not got.loc["b", "passes"]
    assert got.loc["c", "dsc_lesion_mean"] == pytest.approx(0.25) and not got.loc["c", "passes"]
    assert "| A | 88.0 ± 2.8 | — | yes |" in md
    assert "| B | 75.0 ± 7.1 ✗ | 45.0 ± 7.1 | **no** |" in md


# --------------------------------------------------------------------------------------------- speed levers

def test_levers_measure_every_lever_and_the_data_path():
    from bench.levers import levers_markdown, measure_data_path, measure_lever
    from bench.machine import cpu_model

    profile = PROFILES["smoke"]
    rows = [measure_lever("unet3d", lever, profile.as_dict(), steps=1, threads=1) for lever in ("fp32", "bf16")]
    assert all(r["train_step_s"] > 0 and r["steps"] == 3 for r in rows)
    data = measure_data_path(profile.as_dict(), steps=1, threads=1)
    assert set(data["batch_s"]) == {"augment", "no augment", "to_device"}
    text = levers_markdown(rows, data, profile, threads=1, steps=1)
    assert "| unet3d | bf16 |" in text and "1.00×" in text and "augmentation costs" in text
    assert f"on cpu ({cpu_model()}), 1 thread(s)" in text


def test_a_timed_step_does_the_optimizers_work_but_leaves_the_weights_unchanged():
    # Timing repeats one step on one random batch: at a real learning rate that is training on noise, with
    # every timed step on other weights. (fp32 here: bf16 on a CPU has its own, separately tested, NaN problem.)
    import torch

    from bench.loop import train_step
    from bench.perf import timing_setup

    model, loss_fn, optimizer, data = timing_setup("unet3d", {}, None, PROFILES["smoke"].as_dict(), torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    losses = [float(train_step(model, loss_fn, optimizer, data, progress=0.5)[0]) for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    state = [optimizer.state[p] for p in model.parameters()]
    assert all(int(s["step"]) == 3 and s["exp_avg"].abs().sum() > 0 for s in state if s)  # the update was computed
    assert sum(1 for s in state if s) == len(before)
    assert max(losses) - min(losses) <= 1e-5 * abs(losses[0])  # same weights, same batch


def test_a_step_with_a_non_finite_gradient_is_counted_and_its_weights_put_back():
    # torch 2.13's CPU bf16 conv3d weight gradient is non-finite now and then (docs/profiles.md): the lever
    # timing must survive it, say so, and not time a network that has turned into NaNs.
    import torch

    from bench.levers import _weight_guard, levers_markdown

    model = torch.nn.Conv3d(1, 2, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0)
    model(torch.randn(1, 1, 4, 4, 4)).sum().backward()
    optimizer.step()
    start = [p.detach().clone() for p in model.parameters()]
    check, count = _weight_guard(model, optimizer)
    check()
    assert count() == 0
    with torch.no_grad():
        model.weight[0, 0, 0, 0, 0] = float("nan")
    optimizer.state[model.weight]["exp_avg"].fill_(float("nan"))
    check()
    assert count() == 1
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters()))
    assert not optimizer.state[model.weight]["exp_avg"].isnan().any()
    rows = [{"method": "unet3d", "lever": "fp32", "train_step_s": 0.1, "compile_s": float("nan"), "device": "cpu",
             "nonfinite_steps": 0, "steps": 5},
            {"method": "unet3d", "lever": "bf16", "train_step_s": 0.2, "compile_s": float("nan"), "device": "cpu",
             "nonfinite_steps": 3, "steps": 5}]
    text = levers_markdown(rows, {}, PROFILES["smoke"], threads=1, steps=3)
    assert "| unet3d | bf16 | 0.200 | 0.50× | — |" in text
    assert "Non-finite gradients (the step was timed, the weights put back): unet3d bf16 in 3 of 5 steps." in text


def test_a_diverged_bf16_step_on_a_cpu_names_the_known_cause_and_fp32_does_not():
    from bench.loop import TrainingDiverged, make_optimizer, train_step

    spec = METHODS.get("unet3d")
    model = spec.build(in_channels=1, num_classes=2, spatial_size=32, width=0.25)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))  # what a non-finite gradient leaves behind
    loss_fn, optimizer = spec.make_loss(spec.weights), make_optimizer(model.parameters(), Training(), 1e-3)
    for precision, hint in (("bf16", True), ("fp32", False)):
        with pytest.raises(TrainingDiverged, match="loss is nan") as caught:
            train_step(model, loss_fn, optimizer, _batch(), progress=0.5, precision=precision)
        assert ("bf16 conv3d weight gradient" in str(caught.value) and "try precision fp32" in str(caught.value)) == hint


def test_a_lever_past_its_time_limit_is_stopped_and_reported():
    from bench.levers import _run_with_timeout, levers_markdown

    profile = PROFILES["smoke"]
    # A spawned worker must import torch before it can measure anything: it cannot answer within 10 ms.
    row = _run_with_timeout(("step", "unet3d", "compile", profile.as_dict(), 1, 1), 0.01)
    assert row == {"method": "unet3d", "lever": "compile", "error": "timed out after 0.01 s"}
    assert "| unet3d | compile | failed: timed out after 0.01 s |" in levers_markdown([row], {}, profile, threads=1, steps=1)


def test_lever_repeats_run_in_rounds_and_report_the_median_and_range(monkeypatch):
    # One process's step time moves by tens of per cent between runs: --repeats measures every lever in
    # several processes, round by round, and the table shows the median and the range (hand-computed here).
    import bench.levers as levers

    nan = float("nan")
    times = {("unet3d", "fp32"): [0.10, 0.14, 0.12], ("unet3d", "bf16"): [0.05, 0.04, 0.08]}
    calls = []

    def fake(job, timeout):
        kind, method, lever = job[:3]
        calls.append((method, lever))
        if kind == "data":
            return {"device": "cpu", "batch_s": {"augment": 0.02 * len(calls), "no augment": 0.001, "to_device": 0.0}}
        value = times[(method, lever)][sum(1 for c in calls if c == (method, lever)) - 1]
        if lever == "bf16" and len(calls) > 6:
            return {"method": method, "lever": lever, "error": "timed out after 9 s"}
        return {"method": method, "lever": lever, "train_step_s": value, "compile_s": nan, "device": "cpu",
                "nonfinite_steps": int(lever == "bf16"), "steps": 4}

    monkeypatch.setattr(levers, "_run_with_timeout", fake)
    profile = PROFILES["smoke"]
    rows, data = levers.measure_levers(["unet3d"], profile, levers=("fp32", "bf16"), steps=2, repeats=3)
    assert calls == [("unet3d", "fp32"), ("unet3d", "bf16"), ("", "")] * 3  # rounds, not one lever 3 times
    fp32, bf16 = rows
    assert (fp32["train_step_s"], fp32["step_min_s"], fp32["step_max_s"], fp32["repeats"]) == (0.12, 0.10, 0.14, 3)
    assert fp32["steps"] == 12 and fp32["nonfinite_steps"] == 0
    # the third bf16 process timed out: two remain, median of (0.05, 0.04)
    assert bf16["train_step_s"] == pytest.approx(0.045) and bf16["repeats"] == 2 and bf16["failed_repeats"] == 1
    assert bf16["nonfinite_steps"] == 2 and bf16["steps"] == 8
    assert data["batch_s"]["augment"] == pytest.approx(0.12)  # median of 0.06, 0.12, 0.18
    text = levers.levers_markdown(rows, data, profile, threads=1, steps=2, repeats=3)
    assert "in 3 fresh processes" in text
    assert "| unet3d | fp32 | 0.120 [0.100–0.140] | 1.00× | — |" in text
    # speed-up 0.12 / 0.045 = 2.67; range 0.10 / 0.05 = 2.00 to 0.14 / 0.04 = 3.50
    assert ("| unet3d | bf16 | 0.045 [0.040–0.050] (1 process(es) failed: timed out after 9 s) | 2.67× [2.00–3.50] | — |"
            in text)
    assert levers.combine_repeats([{"method": "m", "lever": "bf16", "error": "boom"}] * 2)["error"] == "boom"


def test_unet3d_uses_the_papers_batch_norm_with_instance_norm_one_flag_away():
    spec = METHODS.get("unet3d")
    norms = lambda m: {type(x).__name__ for x in m.modules() if "Norm" in type(x).__name__}  # noqa: E731
    assert norms(spec.build(in_channels=1, num_classes=2, spatial_size=32, width=0.25)) == {"BatchNorm3d"}
    assert norms(spec.build(in_channels=1, num_classes=2, spatial_size=32, width=0.25, norm="instance")) == {"InstanceNorm3d"}
    with pytest.raises(ConfigError, match="norm"):
        spec.build(in_channels=1, num_classes=2, spatial_size=32, width=0.25, norm="layer")


def test_a_recorded_profile_reads_back_and_sets_every_recipe_argument_of_train():
    import inspect

    cpu = PROFILES["cpu"]
    older = {k: v for k, v in cpu.as_dict().items() if k not in ("precision", "decay")}  # a spec from before them
    assert Profile.from_dict(older) == cpu
    assert Profile.from_dict(PROFILES["paper"].as_dict()) == PROFILES["paper"]
    recipe = PROFILES["smoke"].recipe()
    assert recipe == {"epochs": 2, "lr": 3e-3, "schedule": "cosine", "warmup": 0.1, "decay": 1.0, "precision": "fp32"}
    keyword_only = {name for name, p in inspect.signature(train).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert set(recipe) <= keyword_only
