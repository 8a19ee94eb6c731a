"""Study files: includes, validation errors naming file, key and close matches, profiles."""

from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.profiles import PROFILES, get_profile
from bench.study import load_study

BASE = """
dataset: {name: synthetic}
folds: 4
training: {rotate_degrees: 10}
"""


def _write(tmp_path: Path, text: str, name="study.yaml", base=BASE) -> Path:
    (tmp_path / "_base.yaml").write_text(base)
    path = tmp_path / name
    path.write_text(text)
    return path


def _study(body: str) -> str:
    return "include: _base.yaml\ntitle: T\n" + body


ARMS = "arms:\n  unet: {method: unet3d}\n  res: {method: resnet34, label: ResNet}\n"


def test_include_merges_and_the_study_wins(tmp_path):
    study = load_study(str(_write(tmp_path, _study("training: {flip_prob: 0.2}\n" + ARMS))))
    assert study.folds == 4
    assert study.training.rotate_degrees == 10 and study.training.flip_prob == 0.2
    assert [a.name for a in study.arms] == ["unet", "res"] and study.arms[1].label == "ResNet"
    assert study.reference == "res"  # default: the last arm


def test_repository_studies_load():
    study = load_study("smoke")
    assert {a.method for a in study.arms} == {"unet3d", "resnet34"}


@pytest.mark.parametrize(
    "body, match",
    [
        ("fold: 3\n" + ARMS, r"study.yaml: fold: unknown key \(did you mean 'folds'\?\)"),
        ("arms:\n  a: {method: unet3dd}\n", r"arms.a.method: unknown method 'unet3dd' \(did you mean 'unet3d'\?\)"),
        ("arms:\n  a: {method: unet3d, model_arg: {}}\n", r"arms.a.model_arg: unknown key \(did you mean 'model_args'\?\)"),
        ("arms:\n  a: {method: unet3d, weights: {dise: 1}}\n", r"no loss weight 'dise' \(did you mean 'dice'\?\)"),
        ("metrics: [dsc, acc, auroc]\n" + ARMS, r"metrics\[2\]: unknown metric 'auroc'"),
        ("reference: unet3d\n" + ARMS, r"reference: no arm named 'unet3d'"),
        ("folds: two\n" + ARMS, r"folds: expected int, got 'two'"),
        ("folds: 1\n" + ARMS, r"folds: expected a value >= 2"),
        ("noise: [0.05]\n" + ARMS, r"noise: the grid must contain 0.0"),
        ("profile: laptop\n" + ARMS, r"profile: unknown profile 'laptop'"),
        ("overrides: {epoch: 3}\n" + ARMS, r"overrides.epoch: unknown profile field \(did you mean 'epochs'\?\)"),
        ("overrides: {paper: {widht: 2}}\n" + ARMS, r"overrides.paper.widht: unknown profile field \(did you mean 'width'\?\)"),
        ("overrides: {cpu: 0.25}\n" + ARMS, r"overrides.cpu: expected a mapping of cpu-profile fields"),
        ("training: {augmnt: false}\n" + ARMS, r"training.augmnt: unknown key \(did you mean 'augment'\?\)"),
        ("training: {augment: 1}\n" + ARMS, r"training.augment: expected bool"),
        ("seeds: [0, 0]\n" + ARMS, r"seeds: seeds repeat"),
        ("arms: {}\n", r"arms: expected a non-empty mapping"),
        ("correction: bonferroni\n" + ARMS, r"correction: expected holm or fdr_bh, got 'bonferroni'"),
        ("alpha: 1.5\n" + ARMS, r"alpha: expected a value in \(0, 1\)"),
    ],
)
def test_validation_errors(tmp_path, body, match):
    with pytest.raises(ConfigError, match=match):
        load_study(str(_write(tmp_path, _study(body))))


def test_missing_title(tmp_path):
    with pytest.raises(ConfigError, match="title: missing"):
        load_study(str(_write(tmp_path, "include: _base.yaml\n" + ARMS)))


def test_include_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\ntitle: A\n" + ARMS)
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_study(str(tmp_path / "a.yaml"))


def test_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study(str(_write(tmp_path, "title: [unclosed\n")))


def test_unknown_study_has_close_matches():
    with pytest.raises(ConfigError, match=r"unknown study 'smok' \(did you mean 'smoke'\?\)"):
        load_study("smok")


def test_profile_overrides(tmp_path):
    study = load_study(str(_write(tmp_path, _study("overrides: {epochs: 3, width: 0.5}\n" + ARMS))))
    resolved = study.resolve_profile("smoke")
    assert (resolved.epochs, resolved.width, resolved.size) == (3, 0.5, PROFILES["smoke"].size)


def test_profile_scoped_overrides_apply_to_their_profile_only(tmp_path):
    study = load_study(str(_write(tmp_path, _study("overrides: {epochs: 3, cpu: {width: 0.25, epochs: 4}}\n" + ARMS))))
    cpu, paper = study.resolve_profile("cpu"), study.resolve_profile("paper")
    assert (cpu.width, cpu.epochs) == (0.25, 4)  # the scoped value wins over the unscoped one
    assert (paper.width, paper.epochs) == (PROFILES["paper"].width, 3)


def test_profiles_meet_their_roles():
    smoke, cpu, paper = (get_profile(n) for n in ("smoke", "cpu", "paper"))
    assert paper.size == 160 and paper.epochs == 200 and paper.batch == 2 and paper.width == 1.0 and paper.lr == 1e-4
    assert smoke.size < cpu.size < paper.size and smoke.epochs < cpu.epochs < paper.epochs
    with pytest.raises(ConfigError, match="did you mean 'paper'"):
        get_profile("papr")
