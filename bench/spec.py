"""The resolved specification of one unit (arm × fold × seed) and its content hash.

The hash covers everything that changes what a unit computes — method, model_args, loss weights,
profile, training settings, noise grid, data fingerprint, split hash, fold and seed — and not where
files live, so moving the cache does not rerun anything. A unit whose hash changed is rerun.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.noise import DEFAULT_NOISE_UNITS

__all__ = ["UnitSpec", "PlannedUnit", "code_version"]


@dataclass(frozen=True)
class UnitSpec:
    """Everything a worker needs to train and evaluate one unit, and nothing it must look up elsewhere."""

    study: str
    arm: str
    label: str
    method: str
    kind: str
    model_args: Mapping[str, Any]
    weights: Mapping[str, float]
    fold: int
    seed: int
    profile: Mapping[str, Any]
    training: Mapping[str, Any]
    noise: tuple[float, ...]
    data_fingerprint: str
    split_hash: str
    manifest: str
    cache_dir: str
    splits_path: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    noise_units: str = DEFAULT_NOISE_UNITS

    @property
    def key(self) -> str:
        return f"{self.arm}/fold_{self.fold}/seed_{self.seed}"

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        for location in ("manifest", "cache_dir", "splits_path", "label"):
            d.pop(location)
        d["profile"] = {k: v for k, v in d["profile"].items() if k != "workers"}
        return d

    @property
    def hash(self) -> str:
        payload = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "noise": list(self.noise), "spec_hash": self.hash, "code_version": code_version()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UnitSpec:
        fields_ = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields_["noise"] = tuple(fields_["noise"])
        return cls(**fields_)


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+<git short hash>[-dirty]`` when run from a git checkout, else the package version."""
    from bench import __version__

    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return __version__
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True,
                               timeout=5)
        return f"{__version__}+{sha.stdout.strip()}{'-dirty' if dirty.stdout.strip() else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


@dataclass(frozen=True)
class PlannedUnit:
    """A unit of a plan: its spec, its run directory and what the directory holds."""

    spec: UnitSpec
    directory: Path
    status: str  # done | stale | failed | partial | missing
