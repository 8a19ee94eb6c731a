"""Datasets: a registry of sources that each produce a manifest, then one cached preprocessing path.

Sources: ``synthetic`` (the embedded cohort, generated on first use and cached, keyed by its
parameters and the generator version), ``manifest`` (a CSV in the manifest format, docs/data.md) and the
real layouts ``isbi2015`` (option ``mask``: mask1 | mask2 | union | intersection), ``msseg2016`` and
``bids`` (see :mod:`bench.data.loaders`).
Study files name a source and its options::

    dataset:
      name: synthetic
      options: {difficulty: 0.3, seed: 0}
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from bench.data.cache import DEFAULT_DIFFICULTY, cache_root
from bench.data.manifest import Case, manifest_fingerprint, read_manifest
from bench.errors import ConfigError, did_you_mean
from bench.profiles import Profile
from bench.registry import Registry

__all__ = ["DEFAULT_DIFFICULTY", "DATASETS", "PreparedData", "prepare_dataset", "cache_root", "resolve_manifest"]

#: The synthetic cohort's default class overlap (a logistic regression on lesion count, volume and mean size
#: reaches about 0.78 accuracy; see bench.data.synthetic). Kept here so the CLI can show it without importing SciPy.
Progress = Callable[[int, int], None]
DATASETS: Registry[Callable[..., Path]] = Registry("dataset")


@dataclass(frozen=True)
class PreparedData:
    """A dataset ready for training: validated cases and their preprocessed cache."""

    source: str
    manifest: Path
    cases: tuple[Case, ...]
    fingerprint: str
    cache_dir: Path

    @property
    def has_masks(self) -> bool:
        return all(c.mask_path is not None for c in self.cases)

    @property
    def has_labels(self) -> bool:
        return all(c.label is not None for c in self.cases)


def _synthetic(options: Mapping[str, Any], profile: Profile, root: Path, progress: Progress | None) -> Path:
    from bench.data.cohort import generate_cohort
    from bench.data.synthetic import GENERATOR_VERSION, SyntheticConfig

    allowed = {f.name for f in fields(SyntheticConfig)} - {"size"}
    for key in options:
        if key not in allowed:
            raise ConfigError(f"dataset.options.{key}: unknown synthetic-cohort option{did_you_mean(key, allowed)}; "
                              f"expected one of {', '.join(sorted(allowed))}")
    values = {"n_ms": profile.n_ms, "n_nmosd": profile.n_nmosd, **options, "size": profile.size}
    if "longitudinal" in values:
        values["longitudinal"] = tuple(values["longitudinal"])
    try:
        config = SyntheticConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"dataset.options: {exc}") from None
    key = hashlib.sha256(json.dumps([GENERATOR_VERSION, asdict(config)], sort_keys=True).encode()).hexdigest()[:12]
    out = root / "synthetic" / f"{GENERATOR_VERSION}-{config.size}-{key}"
    if not (out / "manifest.csv").exists():
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        generate_cohort(config, tmp, progress=progress)
        if out.exists():  # another process finished the same cohort first
            shutil.rmtree(tmp)
        else:
            tmp.replace(out)
    return out / "manifest.csv"


def _manifest(options: Mapping[str, Any], profile: Profile, root: Path, progress: Progress | None) -> Path:
    if set(options) - {"path"} or "path" not in options:
        raise ConfigError(f"dataset.options: a manifest dataset takes exactly one option, 'path', got {sorted(options)}")
    return Path(options["path"]).expanduser()


def _layout(name: str):
    def source(options: Mapping[str, Any], profile: Profile, root: Path, progress: Progress | None) -> Path:
        from bench.data.loaders import write_loader_manifest

        allowed = {"path", "mask"} if name == "isbi2015" else {"path"}
        unknown = sorted(set(options) - allowed)
        if unknown or "path" not in options:
            raise ConfigError(f"dataset.options: a {name} dataset takes {sorted(allowed)} (path required), got {sorted(options)}")
        extra = {k: str(v) for k, v in options.items() if k != "path"}
        return write_loader_manifest(name, Path(options["path"]).expanduser(), root, **extra)

    return source


DATASETS.register("synthetic", _synthetic)
DATASETS.register("manifest", _manifest)
for _name in ("isbi2015", "msseg2016", "bids"):
    DATASETS.register(_name, _layout(_name))


def resolve_manifest(name: str, options: Mapping[str, Any], profile: Profile, *, progress: Progress | None = None) -> Path:
    """The manifest of a dataset source (generating the synthetic cohort if needed)."""
    return DATASETS.get(name)(options, profile, cache_root(), progress)


def prepare_dataset(
    name: str,
    options: Mapping[str, Any],
    profile: Profile,
    *,
    generate_progress: Progress | None = None,
    preprocess_progress: Progress | None = None,
) -> PreparedData:
    """Resolve, validate and preprocess a dataset at the profile's size (cached).

    One process at a time prepares data under a cache (an exclusive lock on ``<cache>/.prepare.lock``): two
    ``bench run`` started together do not write the same cohort twice; the second finds it cached.
    """
    from bench.data.preprocess import PREPROCESS_VERSION, preprocess_cases

    with _cache_lock(cache_root()):
        manifest = resolve_manifest(name, options, profile, progress=generate_progress)
        cases = read_manifest(manifest)
        fingerprint = hashlib.sha256(
            f"{manifest_fingerprint(cases)}|{profile.size}|{PREPROCESS_VERSION}".encode()
        ).hexdigest()[:16]
        cache_dir = cache_root() / "preprocessed" / f"{fingerprint}"
        preprocess_cases(cases, profile.size, cache_dir, progress=preprocess_progress)
    return PreparedData(name, manifest, tuple(cases), fingerprint, cache_dir)


@contextmanager
def _cache_lock(root: Path):
    """An exclusive advisory lock on the cache (``fcntl.flock``; no lock where the platform has none)."""
    try:
        import fcntl
    except ImportError:  # Windows: one process at a time is the user's business
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".prepare.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
