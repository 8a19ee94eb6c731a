"""The Gaussian-noise protocol (docs/statistics.md, UML Table 2): identical noisy inputs for every method and rerun,
different noise per σ, the clean row equal to the ordinary evaluation, and the maps the report draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.data.manifest import Case
from bench.data.preprocess import Volume
from bench.errors import ConfigError
from bench.evaluate import evaluate
from bench.evidential import EvidentialSegmentationLoss
from bench.losses import JointLoss
from bench.noise import gaussian_noise, input_noise, noise_scale, noisy_key
from bench.outputs import ModelOutput
from bench.registry import METHODS, load_plugins

load_plugins()
SIZE = 32
SIGMAS = (0.0, 0.03, 0.05)


def _cases(n: int = 3) -> tuple[list[Case], list[Volume]]:
    rng = np.random.default_rng(0)
    cases, volumes = [], []
    for i in range(n):
        image = np.zeros((1, SIZE, SIZE, SIZE), dtype=np.float32)
        image[0, 2:30, 2:30, 2:30] = rng.standard_normal((28, 28, 28))
        mask = np.zeros((1, SIZE, SIZE, SIZE), dtype=np.uint8)
        mask[0, 12:18, 12:18, 12:18] = 1
        cases.append(Case(f"c{i}", f"p{i}", "t0", i % 2, "A", Path(f"c{i}.nii.gz"), Path(f"c{i}_mask.nii.gz")))
        volumes.append(Volume(f"c{i}", image, mask, (1.0, 1.0, 1.0)))
    return cases, volumes


class Recorder(nn.Module):
    """A tiny joint network that remembers every input volume it saw."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.seg = nn.Conv3d(1, 2, 3, padding=1)
        self.cls = nn.Linear(1, 2)
        self.seen: list[np.ndarray] = []

    def forward(self, x):
        self.seen.extend(v.clone().numpy() for v in x)
        return ModelOutput(seg_logits=self.seg(x), cls_logits=self.cls(x.mean(dim=(1, 2, 3, 4))[:, None]))


def _inputs(model: Recorder, cases, sigmas) -> dict[tuple[str, float], np.ndarray]:
    """(case, σ) → the input the model saw, in evaluate's σ-major, batch-of-two order (padding dropped)."""
    order = [(c.scan_id, s) for s in sigmas for start in range(0, len(cases), 2)
             for c in (cases[start:start + 2] + cases[start:start + 2][-1:] * (2 - len(cases[start:start + 2])))]
    seen = {}
    for key, volume in zip(order, model.seen):
        seen.setdefault(key, volume)
    return seen


def test_input_noise_units():
    image = np.array([[-1.5, 0.0], [2.5, 0.5]], dtype=np.float32)
    assert noise_scale(image, "range") == 4.0 and noise_scale(image, "zscore") == 1.0
    assert np.allclose(input_noise("c", 0.05, image, "range"), 4.0 * gaussian_noise("c", 0.05, image.shape))
    assert np.array_equal(input_noise("c", 0.05, image, "zscore"), gaussian_noise("c", 0.05, image.shape))
    assert not input_noise("c", 0.0, image, "range").any()
    with pytest.raises(ValueError, match="unknown noise units"):
        noise_scale(image, "percent")


def test_every_method_and_rerun_sees_the_same_noisy_input_per_case_and_sigma():
    cases, volumes = _cases()
    a, b, a_again = Recorder(0), Recorder(1), Recorder(0)
    for model in (a, b, a_again):
        evaluate(model, JointLoss(), cases, volumes, sigmas=SIGMAS, device=torch.device("cpu"))
    seen_a, seen_b, seen_again = (_inputs(m, cases, SIGMAS) for m in (a, b, a_again))
    assert len(seen_a) == len(cases) * len(SIGMAS)
    for key in seen_a:
        assert np.array_equal(seen_a[key], seen_b[key]), key  # two methods
        assert np.array_equal(seen_a[key], seen_again[key]), key  # a rerun
    for case, vol in zip(cases, volumes):
        clean, low, high = (seen_a[(case.scan_id, s)] for s in SIGMAS)
        assert np.array_equal(clean, vol.image)
        assert not np.array_equal(low, high)  # different noise per σ
        scale = float(vol.image.max() - vol.image.min())
        assert np.std(high - clean) == pytest.approx(0.05 * scale, rel=0.05)  # σ of the [0, 1]-scaled volume
        # the noise is the noise of (case, σ), not of the position in the batch
        assert np.allclose(high - clean, input_noise(case.scan_id, 0.05, vol.image, "range"), atol=1e-6)


def test_the_clean_rows_equal_the_ordinary_evaluation():
    cases, volumes = _cases(3)  # odd: the last batch is padded
    spec = METHODS.get("tbrats")
    torch.manual_seed(0)
    model = spec.build(in_channels=1, num_classes=2, spatial_size=SIZE, width=0.25)
    loss = spec.make_loss()
    plain = evaluate(model, loss, cases, volumes, sigmas=(0.0,), device=torch.device("cpu"))
    noisy = evaluate(model, loss, cases, volumes, sigmas=SIGMAS, device=torch.device("cpu"))
    clean_rows = [r for r in noisy.rows if r["sigma"] == 0]
    assert len(noisy.rows) == 3 * len(SIGMAS)
    for r0, r1 in zip(plain.rows, clean_rows):
        assert r0.keys() == r1.keys()
        for key in r0:
            assert r0[key] == r1[key] or (r0[key] != r0[key] and r1[key] != r1[key]), key  # equal, or both NaN
    for key, packed in plain.masks.items():
        assert np.array_equal(packed, noisy.masks[key])
    noisy_rows = [r for r in noisy.rows if r["sigma"] == 0.05]
    assert all(r["noise_sd"] > 0 for r in noisy_rows) and all(r["noise_sd"] == 0 for r in clean_rows)


def test_uncertainty_maps_and_noisy_predictions_are_kept_at_zero_and_the_largest_sigma():
    cases, volumes = _cases(2)
    spec = METHODS.get("tbrats")
    model = spec.build(in_channels=1, num_classes=2, spatial_size=SIZE, width=0.25)
    result = evaluate(model, EvidentialSegmentationLoss(), cases, volumes, sigmas=SIGMAS, device=torch.device("cpu"))
    expected = {noisy_key(c.scan_id, s) for c in cases for s in (0.0, 0.05)}
    assert set(result.uncertainty) == expected and set(result.masks) == expected
    assert noisy_key("c0", 0.0) == "c0" and noisy_key("c0", 0.05) == "c0@sigma=0.05"
    u = result.uncertainty["c0"]
    assert u.dtype == np.uint8 and u.shape == (SIZE, SIZE, SIZE)
    for row in result.rows:  # mean pixel uncertainty of wrong and right voxels inside the brain, in (0, 1]
        assert 0 < row["voxel_unc_right"] <= 1
        assert np.isnan(row["voxel_unc_wrong"]) or 0 < row["voxel_unc_wrong"] <= 1


def test_study_noise_units_are_validated(tmp_path):
    from bench.study import load_study

    text = ("title: t\nnoise: [0.0, 0.05]\nnoise_units: {units}\narms:\n  a: {{method: unet3d}}\n")
    (tmp_path / "ok.yaml").write_text(text.format(units="zscore"))
    assert load_study(tmp_path / "ok.yaml").noise_units == "zscore"
    (tmp_path / "bad.yaml").write_text(text.format(units="ranges"))
    with pytest.raises(ConfigError, match=r"noise_units.*expected one of range, zscore.*did you mean 'range'"):
        load_study(tmp_path / "bad.yaml")


def test_a_tied_class_probability_is_predicted_nmosd_as_the_metrics_count_it():
    model = Recorder(0)
    with torch.no_grad():
        model.cls.weight.zero_()
        model.cls.bias.zero_()  # equal logits: P(NMOSD) = 0.5 exactly
    cases, volumes = _cases(2)
    rows = evaluate(model, JointLoss(), cases, volumes, sigmas=(0.0,), device=torch.device("cpu")).rows
    assert [r["prob_nmosd"] for r in rows] == [0.5, 0.5] and [r["pred"] for r in rows] == [1, 1]
