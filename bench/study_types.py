"""What a study is, once read: frozen dataclasses and the keys a study file may use.

:mod:`bench.study` reads and validates the YAML into these; the training loop, units and tuning trials
import them from here (without the YAML parser).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, did_you_mean
from bench.metrics import METRICS
from bench.noise import DEFAULT_NOISE_UNITS
from bench.profiles import Profile, get_profile

__all__ = ["Arm", "DatasetSpec", "Training", "TuneSpec", "Study", "PRUNERS", "TUNED", "STUDY_KEYS", "ARM_KEYS",
           "DATASET_KEYS", "TUNE_KEYS"]


STUDY_KEYS = {
    "include": "a base file to inherit from",
    "title": "a one-line title",
    "reproduces": "the paper table this study reproduces",
    "description": "free text for the report",
    "dataset": "the dataset (name + options)",
    "folds": "number of cross-validation folds",
    "repeats": "repeated cross-validation: r partitions of k folds, each with its own split seed (default 1)",
    "split_seed": "seed of the fold assignment (shared by every arm and training seed)",
    "seeds": "list of training seeds",
    "profile": "default profile",
    "overrides": "profile fields this study overrides",
    "training": "optimiser / schedule / augmentation settings",
    "noise": "Gaussian-noise σ grid for evaluation",
    "noise_units": "what σ is measured in: range (of the normalised volume, the [0, 1] scale of UML) or zscore",
    "metrics": "metric columns of the table",
    "reference": "the arm every other arm is compared with",
    "correction": "multiplicity correction: holm (default) or fdr_bh",
    "analysis_unit": "what the paired tests count as independent: patient (default) or scan",
    "alpha": "significance level (default 0.05)",
    "arms": "the arms (name → method, model_args, weights, label)",
    "tune": "the loss-weight search of `bench tune` (arm, weights, objective, trials, inner_folds, pruner, ...)",
    "pass_criteria": "metric → the value each arm must reach (learnability; the report says pass / fail per arm)",
}
ARM_KEYS = ("method", "label", "model_args", "weights", "seed_offset")
DATASET_KEYS = ("name", "options")
TUNED = "tuned"  # `weights: tuned`: the arm trains with the best weights `bench tune` found for each outer fold
PRUNERS = ("median", "halving", "none")
TUNE_KEYS = {
    "arm": "the arm whose loss weights are searched (it says `weights: tuned`)",
    "weights": "weight name → [low, high] (default: the method's registered search space)",
    "log": "sample log-uniformly (default true) or uniformly",
    "objective": "inner-validation metrics whose mean is optimised (default [dsc, auc])",
    "trials": "finished (complete or pruned) trials per outer fold",
    "inner_folds": "inner cross-validation folds of each outer training set (default 3)",
    "pruner": "median | halving | none (default median)",
    "sampler_seed": "seed of the TPE sampler (trial n of outer fold k samples with a seed of (seed, k, n))",
    "startup_trials": "trials sampled at random before TPE models them and before the pruner prunes",
    "warmup_epochs": "steps (epochs, counted over the inner folds) in which no trial is pruned (default 1)",
    "enqueue_defaults": "make the method's fixed (paper) weights the first trial of every search (default true)",
}


@dataclass(frozen=True)
class Arm:
    """One row of a study's table: a method with its keyword arguments and loss weights."""

    name: str
    method: str
    label: str
    model_args: Mapping[str, Any] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)
    tuned: bool = False  # ``weights: tuned``: per outer fold, the best weights of the study's search
    #: added to the study's training seeds for this arm only: the same method as another arm, trained with
    #: other seeds, is a null control (no difference should be found); results still pair by the study's seed
    seed_offset: int = 0


@dataclass(frozen=True)
class TuneSpec:
    """The loss-weight search of a study (``tune:``), run by ``bench tune`` (:mod:`bench.tuning`)."""

    arm: str
    weights: Mapping[str, tuple[float, float]]
    objective: tuple[str, ...] = ("dsc", "auc")
    trials: int = 20
    inner_folds: int = 3
    pruner: str = "median"
    log: bool = True
    sampler_seed: int = 0
    startup_trials: int = 5
    warmup_epochs: int = 1
    enqueue_defaults: bool = True

    @property
    def direction(self) -> str:
        """``maximize`` when the objective's metrics are higher-is-better, else ``minimize``."""
        return "maximize" if METRICS[self.objective[0]].direction == "max" else "minimize"


@dataclass(frozen=True)
class DatasetSpec:
    """Which dataset (registry name) and its options."""

    name: str = "synthetic"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Training:
    """One training budget and one augmentation pipeline per study (docs/methods.md, joint-model paper §4.1)."""

    optimizer: str = "adam"
    weight_decay: float = 0.0
    plateau_patience: int = 10
    plateau_factor: float = 0.5
    augment: bool = True
    flip_prob: float = 0.5
    rotate_prob: float = 0.5
    rotate_degrees: float = 15.0
    checkpoint: bool = True
    validate: int = 0  # k ≥ 2: hold out one of k inner folds of the training fold and evaluate it every epoch


@dataclass(frozen=True)
class Study:
    """A validated study. ``profile`` is only the default; :meth:`resolve_profile` applies overrides."""

    name: str
    path: Path
    title: str
    reproduces: str
    description: str
    dataset: DatasetSpec
    folds: int
    split_seed: int
    seeds: tuple[int, ...]
    profile: str
    overrides: Mapping[str, Any]
    training: Training
    noise: tuple[float, ...]
    metrics: tuple[str, ...]
    reference: str
    arms: tuple[Arm, ...]
    correction: str = "holm"
    alpha: float = 0.05
    noise_units: str = DEFAULT_NOISE_UNITS
    repeats: int = 1
    analysis_unit: str = "patient"
    tune: TuneSpec | None = None
    pass_criteria: Mapping[str, float] = field(default_factory=dict)

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        names = [a.name for a in self.arms]
        raise ConfigError(f"study '{self.name}' has no arm '{name}'{did_you_mean(name, names)}; arms: {names}")

    def resolve_profile(self, name: str | None = None) -> Profile:
        """The profile named on the command line (or the study's default) with the study's overrides."""
        return get_profile(name or self.profile).with_overrides(self.overrides, source=str(self.path))
