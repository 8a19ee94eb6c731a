"""Registry-wide conformance: every registered method builds, runs forward and backward on a tiny
volume, gives finite outputs of the right shapes, and sends gradients into every parameter."""

import pytest
import torch

from bench.errors import ConfigError
from bench.registry import METHODS, TASK_KINDS, Registry, load_plugins
from bench.tasks import get_task

load_plugins()
SIZE = 32


@pytest.mark.parametrize("name", METHODS.names())
def test_conformance(name):
    spec = METHODS.get(name)
    assert spec.kind in TASK_KINDS and spec.summary
    torch.manual_seed(0)
    size = max(SIZE, spec.size_multiple)
    model = spec.build(in_channels=1, num_classes=2, spatial_size=size, width=0.25)
    image = torch.randn(2, 1, size, size, size)
    out = model(image)
    get_task(spec.kind).check_output(name, out, batch_size=2, size=size)
    for tensor in (out.seg_logits, out.cls_logits):
        assert tensor is None or torch.isfinite(tensor).all()
    mask = (torch.rand(2, 1, size, size, size) > 0.9).float()
    loss, terms = spec.make_loss()(out, {"image": image, "mask": mask, "label": torch.tensor([0, 1])}, progress=0.5)
    assert loss.ndim == 0 and torch.isfinite(loss) and set(terms) == set(spec.weights)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing, f"no finite gradient for {missing[:5]}"
    prediction = spec.make_loss().predict(out)
    if spec.kind != "seg":
        assert torch.allclose(prediction.cls_prob.sum(1), torch.ones(2), atol=1e-5)
    if spec.kind != "cls":
        assert prediction.seg_prob.shape == (2, size, size, size)
        assert 0 <= float(prediction.seg_prob.min().detach()) and float(prediction.seg_prob.max().detach()) <= 1


@pytest.mark.parametrize("name", METHODS.names())
def test_width_multiplier_shrinks_the_network(name):
    spec = METHODS.get(name)
    count = lambda w: sum(p.numel() for p in spec.build(in_channels=1, num_classes=2, spatial_size=SIZE, width=w).parameters())  # noqa: E731
    assert count(0.25) < count(0.5) < count(1.0)


def test_unknown_method_lists_close_matches():
    pattern = r"unknown method 'resnet43' \(did you mean 'resnet34'( or '[a-z0-9_]+')*\?\); available: .*unet3d"
    with pytest.raises(ConfigError, match=pattern):
        METHODS.get("resnet43")


def test_size_multiple_is_enforced():
    with pytest.raises(ConfigError, match="divisible by 16, got 40"):
        METHODS.get("unet3d").build(in_channels=1, num_classes=2, spatial_size=40, width=0.25)


def test_bad_model_args_name_the_method():
    with pytest.raises(ConfigError, match="method 'resnet34': bad model_args"):
        METHODS.get("resnet34").build(in_channels=1, num_classes=2, spatial_size=32, width=0.25, depth=9)


def test_registry_rejects_duplicates():
    registry = Registry("thing")
    registry.register("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a", 2)


def test_registering_the_methods_imports_no_monai():
    """Every `bench` command registers the methods to check a study; `import monai` (all of its submodules) costs
    several seconds a process, so a builder imports MONAI only when it builds a network."""
    from conftest import modules_loaded_by

    code = "from bench.registry import METHODS, load_plugins; load_plugins(); assert len(METHODS) >= 16, METHODS.names()"
    assert modules_loaded_by(code, "monai") == []
