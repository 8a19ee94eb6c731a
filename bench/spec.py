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
from typing import Any, ClassVar

from bench.noise import DEFAULT_NOISE_UNITS

__all__ = ["UnitSpec", "PlannedUnit", "ContentHashed", "code_version", "describe_checkout"]


class ContentHashed:
    """A frozen dataclass that is its own JSON record and is identified by a hash of its content.

    Subclasses name the fields that are *where* rather than *what* (``LOCATIONS``: paths, labels, budgets —
    not part of the identity), the hash's length (``HASH_LENGTH``; persisted hashes fix it per class) and
    the fields read back from JSON lists as tuples (``TUPLES``; ``TUPLE_VALUES`` for mappings of tuples).
    The profile's ``workers`` (data-loader processes) never changes a result and is left out too.
    """

    LOCATIONS: ClassVar[tuple[str, ...]] = ()
    HASH_LENGTH: ClassVar[int] = 16
    TUPLES: ClassVar[tuple[str, ...]] = ()
    TUPLE_VALUES: ClassVar[tuple[str, ...]] = ()

    def identity(self) -> dict[str, Any]:
        data = asdict(self)
        for location in self.LOCATIONS:
            data.pop(location)
        data["profile"] = {k: v for k, v in data["profile"].items() if k != "workers"}
        return data

    @property
    def hash(self) -> str:
        payload = json.dumps(self.identity(), sort_keys=True, default=str)  # tuples and lists serialise alike
        return hashlib.sha256(payload.encode()).hexdigest()[: self.HASH_LENGTH]

    def _json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in self.TUPLES:
            data[name] = list(data[name])
        for name in self.TUPLE_VALUES:
            data[name] = {k: list(v) for k, v in data[name].items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]):
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in cls.TUPLES:
            values[name] = tuple(values[name])
        for name in cls.TUPLE_VALUES:
            values[name] = {k: tuple(v) for k, v in values[name].items()}
        return cls(**values)


@dataclass(frozen=True)
class UnitSpec(ContentHashed):
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

    LOCATIONS = ("manifest", "cache_dir", "splits_path", "label")
    HASH_LENGTH = 16
    TUPLES = ("noise",)

    @property
    def key(self) -> str:
        return f"{self.arm}/fold_{self.fold}/seed_{self.seed}"

    def to_json(self) -> dict[str, Any]:
        return {**self._json(), "spec_hash": self.hash, "code_version": code_version()}


#: committed outputs and prose: a change to them cannot change a result, so it does not make a checkout "dirty"
#: (writing one study's report must not mark the next study's units as trained from uncommitted code)
NOT_CODE = (":(exclude)reports", ":(exclude)docs", ":(exclude,glob)**/*.md")  # git pathspecs


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+<git short hash>[-dirty]`` when run from a git checkout, else the package version.

    ``-dirty``: a tracked file outside :data:`NOT_CODE` differs from the commit."""
    return describe_checkout(Path(__file__).resolve().parent.parent)


def describe_checkout(root: Path) -> str:
    """:func:`code_version` of the git checkout at ``root``."""
    from bench import __version__

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return __version__
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *NOT_CODE],
                               cwd=root, capture_output=True, text=True, timeout=5)
        return f"{__version__}+{sha.stdout.strip()}{'-dirty' if dirty.stdout.strip() else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


@dataclass(frozen=True)
class PlannedUnit:
    """A unit of a plan: its spec, its run directory and what the directory holds."""

    spec: UnitSpec
    directory: Path
    status: str  # done | stale | failed | partial | missing
