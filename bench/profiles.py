"""Profiles: how big a run is — volume size, cohort size, epochs, batch, width, and the training recipe.

| profile | target | size | cohort (MS+NMOSD) | epochs | width | lr | schedule |
|---|---|---|---|---|---|---|---|
| ``smoke`` | a whole study in < 60 s (tests) | 32³ | 10 + 10 | 2 | 0.25 | 3e-3 | cosine, 10 % warm-up |
| ``cpu`` | a 5-arm × 5-fold joint-model study in ≈ 16–24 min on 2 cores | 48³ | 69 + 62 | 12 | 0.25 | 3e-3 | cosine, 10 % warm-up |
| ``paper`` | the paper's protocol (§4.1), GPU | 160³ | 69 + 62 | 200 | 1.0 | 1e-4 | plateau (patience 10, ×0.5) |

``paper`` keeps the joint-model paper's recipe exactly (Adam 1e-4, ReduceLROnPlateau). The short CPU budgets
change four things, all measured on the easy cohort (difficulty 0, a validation split of fold 0's training
set, 8 epochs; ``docs`` of the learnability study): the learning rate is 3e-3 (the joint model's validation
AUC 0.42 at 1e-3 with the cosine schedule, 0.70 at 3e-3; ResNet34 0.59 at 1e-3 constant, 0.70 at 3e-3) and the
schedule is a linear warm-up over the first 10 % of the steps, then a cosine decay to zero (the plateau rule,
patience 10, never fires in 8 epochs, so the noisy full-rate weights of the last step were evaluated). At
``cpu`` the networks are a quarter of the paper's width and train 12 epochs (about 640 steps at batch 2): on
the default cohort the segmentation of every network measured stays in a slow start (mostly false positives)
for about 300 steps and the joint model's classifier only leaves chance once its lesion map has
(docs/profiles.md has the curves); at width 0.25 the joint model learns as at 0.5 but steps 1.45× faster, which buys the epochs.
``precision`` (``fp32`` | ``bf16``: autocast, :func:`bench.loop.forward`) is fp32 everywhere by default
(``bench/levers.py`` measures what bf16 buys per method). A study may override any field (``overrides:``),
for every profile or for one (``overrides: {cpu: {width: 0.25}}``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.errors import ConfigError, did_you_mean

__all__ = ["Profile", "PROFILES", "get_profile", "SCHEDULES", "PRECISIONS"]

SCHEDULES = ("plateau", "cosine")  # bench.loop implements them; defined here so the CLI needs no torch
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Profile:
    """Resolved run size. Every field can be overridden by a study's ``overrides:`` mapping."""

    name: str
    size: int
    n_ms: int
    n_nmosd: int
    epochs: int
    batch: int
    width: float
    lr: float
    workers: int = 0
    schedule: str = "plateau"
    warmup: float = 0.0
    decay: float = 1.0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        for key in ("size", "n_ms", "n_nmosd", "epochs", "batch"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"profile '{self.name}': {key} must be >= 1, got {getattr(self, key)}")
        if not 0 < self.width <= 4:
            raise ConfigError(f"profile '{self.name}': width must be in (0, 4], got {self.width}")
        if not 0 < self.lr < 1:
            raise ConfigError(f"profile '{self.name}': lr must be in (0, 1), got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"profile '{self.name}': schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"profile '{self.name}': precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0 < self.decay <= 1:
            raise ConfigError(f"profile '{self.name}': decay must be a fraction of the steps in (0, 1], got {self.decay}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"profile '{self.name}': warmup must be a fraction of the steps in [0, 1), got {self.warmup}")

    def with_overrides(self, overrides: Mapping[str, Any], *, source: str) -> Profile:
        """A copy with ``overrides`` applied; unknown fields are errors naming ``source``.

        A key naming a profile holds overrides for that profile only (``cpu: {width: 0.25}``); they are
        applied after the unscoped ones. Every scope is validated, whichever profile is resolved.
        """
        scoped = {key: value for key, value in overrides.items() if key in PROFILES}
        for key, value in scoped.items():
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: overrides.{key}: expected a mapping of {key}-profile fields, got {value!r}")
            self._changes(value, source=source, prefix=f"overrides.{key}.")
        unscoped = {key: value for key, value in overrides.items() if key not in PROFILES}
        changes = {**self._changes(unscoped, source=source, prefix="overrides."),
                   **self._changes(scoped.get(self.name, {}), source=source, prefix=f"overrides.{self.name}.")}
        return dataclasses.replace(self, **changes)

    def _changes(self, overrides: Mapping[str, Any], *, source: str, prefix: str) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(self)} - {"name"}
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in names:
                raise ConfigError(
                    f"{source}: {prefix}{key}: unknown profile field{did_you_mean(key, names)}; "
                    f"expected one of {', '.join(sorted(names))} (or a profile name: {', '.join(PROFILES)})"
                )
            kind = type(getattr(self, key))
            try:
                changes[key] = kind(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{source}: {prefix}{key}: expected {kind.__name__}, got {value!r}") from None
        return changes

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """The profile a unit's or search's spec recorded (:meth:`as_dict`); fields added since take their defaults."""
        return cls(**data)

    def recipe(self) -> dict[str, Any]:
        """The keyword arguments of :func:`bench.loop.train` this profile sets (a unit and a trial train alike)."""
        return {"epochs": self.epochs, "lr": self.lr, "schedule": self.schedule, "warmup": self.warmup,
                "decay": self.decay, "precision": self.precision}


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", size=32, n_ms=10, n_nmosd=10, epochs=2, batch=2, width=0.25, lr=3e-3,
                     schedule="cosine", warmup=0.1),
    "cpu": Profile("cpu", size=48, n_ms=69, n_nmosd=62, epochs=12, batch=2, width=0.25, lr=3e-3,
                   schedule="cosine", warmup=0.1),
    "paper": Profile("paper", size=160, n_ms=69, n_nmosd=62, epochs=200, batch=2, width=1.0, lr=1e-4, workers=4),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"unknown profile '{name}'{did_you_mean(name, PROFILES)}; available: {', '.join(PROFILES)}"
        ) from None
