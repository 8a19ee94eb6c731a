"""Profiles: how big a run is — volume size, cohort size, epochs, batch, width, learning rate.

| profile | target | size | cohort (MS+NMOSD) | epochs | width |
|---|---|---|---|---|---|
| ``smoke`` | a whole study in < 60 s (tests) | 32³ | 10 + 10 | 2 | 0.25 |
| ``cpu`` | a 5-arm × 5-fold study in ≤ 20 min on 2 cores | 48³ | 69 + 62 | 8 | 0.5 |
| ``paper`` | the seed's protocol (§4.1), GPU | 160³ | 69 + 62 | 200 | 1.0 |

Decision: the short CPU schedules use lr 1e-3 instead of the seed's 1e-4, which needs its 200 epochs;
the ``paper`` profile keeps 1e-4. A study may override any field (``overrides:``), for every profile or
for one (``overrides: {cpu: {width: 0.25}}``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.errors import ConfigError, did_you_mean

__all__ = ["Profile", "PROFILES", "get_profile"]


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

    def __post_init__(self) -> None:
        for key in ("size", "n_ms", "n_nmosd", "epochs", "batch"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"profile '{self.name}': {key} must be >= 1, got {getattr(self, key)}")
        if not 0 < self.width <= 4:
            raise ConfigError(f"profile '{self.name}': width must be in (0, 4], got {self.width}")
        if not 0 < self.lr < 1:
            raise ConfigError(f"profile '{self.name}': lr must be in (0, 1), got {self.lr}")

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


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", size=32, n_ms=10, n_nmosd=10, epochs=2, batch=2, width=0.25, lr=1e-3),
    "cpu": Profile("cpu", size=48, n_ms=69, n_nmosd=62, epochs=8, batch=2, width=0.5, lr=1e-3),
    "paper": Profile("paper", size=160, n_ms=69, n_nmosd=62, epochs=200, batch=2, width=1.0, lr=1e-4, workers=4),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"unknown profile '{name}'{did_you_mean(name, PROFILES)}; available: {', '.join(PROFILES)}"
        ) from None
