"""The resolved loss-weight search of a study (its identity and hash) and the best weights it left behind.

The search spec sits below everything that uses it: ``bench run`` plans an arm with ``weights: tuned`` from
:func:`tuned_weights` (the outer folds' best weights in ``runs/<study>/tune/best.json``), and ``bench tune``
(:mod:`bench.tuning`) runs the trials of a :class:`Search`. See docs/tuning.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.spec import ContentHashed
from bench.store import read_json, splits_file

__all__ = ["Search", "make_search", "tuned_weights", "tune_dir", "SEARCH_FILE", "BEST_FILE", "TRIALS_FILE",
           "IMPORTANCE_FILE", "INNER_FILE"]

SEARCH_FILE, BEST_FILE, TRIALS_FILE, IMPORTANCE_FILE, INNER_FILE = (
    "search.json", "best.json", "trials.csv", "importances.csv", "inner_splits.json")


def tune_dir(runs_root: Path, study: str) -> Path:
    return Path(runs_root) / study / "tune"


@dataclass(frozen=True)
class Search(ContentHashed):
    """Everything a worker needs to run trials (JSON-able, like :class:`bench.spec.UnitSpec`)."""

    study: str
    arm: str
    method: str
    kind: str
    model_args: Mapping[str, Any]
    defaults: Mapping[str, float]  # the method's (paper's) weights; the searched ones are replaced
    space: Mapping[str, tuple[float, float]]
    log: bool
    objective: tuple[str, ...]
    direction: str
    trials: int
    inner_folds: int
    pruner: str
    sampler_seed: int
    startup_trials: int
    warmup_epochs: int
    enqueue_defaults: bool
    profile: Mapping[str, Any]
    training: Mapping[str, Any]
    folds: int
    data_fingerprint: str
    split_hash: str
    manifest: str
    cache_dir: str
    splits_path: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    LOCATIONS = ("trials", "manifest", "cache_dir", "splits_path")  # the budget too: raising it continues the search
    HASH_LENGTH = 12
    TUPLES = ("objective",)
    TUPLE_VALUES = ("space",)

    def study_name(self, fold: int) -> str:
        """The Optuna study of outer fold ``fold``."""
        return f"{self.study}/fold_{fold}/{self.hash}"

    def weights(self, params: Mapping[str, float]) -> dict[str, float]:
        return {**self.defaults, **{k: float(v) for k, v in params.items()}}

    def to_json(self) -> dict[str, Any]:
        return {**self._json(), "search_hash": self.hash}


def make_search(study, profile, data, splits, runs_root: Path, *, trials: int | None = None) -> Search:
    """The resolved search of ``study`` at ``profile`` (raises if the study has no ``tune:`` section)."""
    from dataclasses import asdict as dc_asdict

    from bench.registry import METHODS, load_plugins

    if study.tune is None:
        raise ConfigError(f"{study.path}: study '{study.name}' has no `tune:` section; nothing to search "
                          "(studies with one: `bench ls studies`, column 'tunes')")
    load_plugins()
    tune = study.tune
    arm = study.arm(tune.arm)
    method = METHODS.get(arm.method)
    return Search(
        study=study.name, arm=arm.name, method=arm.method, kind=method.task_kind(arm.model_args),
        model_args=dict(arm.model_args), defaults=dict(method.weights), space=dict(tune.weights), log=tune.log,
        objective=tune.objective, direction=tune.direction, trials=trials or tune.trials, inner_folds=tune.inner_folds,
        pruner=tune.pruner, sampler_seed=tune.sampler_seed, startup_trials=tune.startup_trials,
        warmup_epochs=tune.warmup_epochs, enqueue_defaults=tune.enqueue_defaults, profile=profile.as_dict(),
        training=dc_asdict(study.training), folds=splits.count, data_fingerprint=data.fingerprint, split_hash=splits.hash,
        manifest=str(data.manifest), cache_dir=str(data.cache_dir),
        splits_path=str(splits_file(runs_root, study.name)),
    )


def tuned_weights(runs_root: Path, search: Search) -> dict[int, dict[str, float]]:
    """Outer fold → best weights of a finished search with this exact identity, for ``bench run``."""
    path = tune_dir(runs_root, search.study) / BEST_FILE
    hint = f"run `bench tune --study {search.study} --profile {search.profile['name']}` first"
    if not path.exists():
        raise ConfigError(f"arm '{search.arm}' says `weights: tuned` but {path} does not exist; {hint}")
    record = read_json(path)
    if record.get("search_hash") != search.hash:
        raise ConfigError(f"{path}: made by a search with another spec (profile {record.get('profile')}, hash "
                          f"{record.get('search_hash')}; this run's is {search.hash}); {hint}")
    out = {}
    for fold in range(search.folds):
        entry = record["folds"].get(str(fold), {})
        if not entry.get("done") or "weights" not in entry:
            raise ConfigError(f"{path}: outer fold {fold}'s search is unfinished ({entry.get('finished', 0)} of "
                              f"{record['trials']} trials, {entry.get('complete', 0)} complete); {hint}")
        out[fold] = {k: float(v) for k, v in entry["weights"].items()}
    return out
