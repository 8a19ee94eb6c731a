"""``bench run``: prepare the data and splits, plan the units, skip what is done, run the rest.

``bench run`` = plan minus done. Rerunning after a crash or Ctrl-C redoes only unfinished units; a
finished unit whose spec changed is archived under ``.stale/`` and rerun, never mixed in.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.data import PreparedData
from bench.profiles import Profile
from bench.registry import METHODS
from bench.search import make_search, tuned_weights
from bench.spec import PlannedUnit, UnitSpec
from bench.splits import Splits
from bench.store import archive_stale, clear_partial, splits_file, unit_dir, unit_problem, unit_status
from bench.study_types import Study

__all__ = ["plan_units", "PlannedUnit", "Plan", "make_plan"]

log = logging.getLogger(__name__)


@dataclass
class Plan:
    study: Study
    profile: Profile
    data: PreparedData
    splits: Splits
    study_root: Path
    units: list[PlannedUnit] = field(default_factory=list)

    @property
    def pending(self) -> list[PlannedUnit]:
        """Units this invocation trains: neither done nor claimed by another live invocation."""
        return [u for u in self.units if u.status not in ("done", "running")]

    @property
    def running(self) -> list[PlannedUnit]:
        """Units another live invocation is training (their claim, bench/claims.py)."""
        return [u for u in self.units if u.status == "running"]

    @property
    def done(self) -> list[PlannedUnit]:
        return [u for u in self.units if u.status == "done"]


def _extra(arm, tuned_extra: dict) -> dict:
    """A unit spec's ``extra``: the search that tuned the arm's weights, and the arm's ``seed_offset`` (kept out
    of the spec when 0, so that units planned before it existed keep their hashes)."""
    return {**(tuned_extra if arm.tuned else {}), **({"seed_offset": arm.seed_offset} if arm.seed_offset else {})}


def plan_units(study: Study, profile: Profile, data: PreparedData, splits: Splits, runs_root: Path,
               arms: Sequence[str] | None = None) -> list[PlannedUnit]:
    """Every (arm, fold, seed) of the study as a resolved spec with its on-disk status.

    An arm with ``weights: tuned`` takes, in outer fold k, the best weights of fold k's search
    (``runs/<study>/tune/best.json``); a missing or unfinished search is an error saying what to run.
    """
    selected = [study.arm(a) for a in arms] if arms else list(study.arms)
    tuned, extra = {}, {}
    if any(arm.tuned for arm in selected):  # `weights: tuned`: each outer fold's best weights from `bench tune`
        search = make_search(study, profile, data, splits, runs_root)
        tuned, extra = tuned_weights(runs_root, search), {"tuned_by_search": search.hash}
    units = []
    for arm in selected:
        method = METHODS.get(arm.method)
        weights = dict(method.weights) | dict(arm.weights)
        for seed in study.seeds:
            for fold in range(study.folds * study.repeats):
                spec = UnitSpec(
                    study=study.name, arm=arm.name, label=arm.label, method=arm.method, kind=method.task_kind(arm.model_args),
                    model_args=dict(arm.model_args), weights=weights | tuned[fold] if arm.tuned else weights,
                    extra=_extra(arm, extra), fold=fold, seed=seed,
                    profile=profile.as_dict(), training=asdict(study.training), noise=study.noise,
                    noise_units=study.noise_units,
                    data_fingerprint=data.fingerprint, split_hash=splits.hash, manifest=str(data.manifest),
                    cache_dir=str(data.cache_dir), splits_path=str(splits_file(runs_root, study.name)),
                )
                directory = unit_dir(runs_root, study.name, arm.name, fold, seed)
                units.append(PlannedUnit(spec, directory, unit_status(directory, spec.hash)))
    return units


def make_plan(study: Study, profile: Profile, data: PreparedData, runs_root: Path, arms: Sequence[str] | None = None) -> Plan:
    from bench.splits import load_or_create_splits

    study_root = runs_root / study.name
    splits = load_or_create_splits(splits_file(runs_root, study.name), list(data.cases), study.folds, study.split_seed,
                                   data.fingerprint, study.repeats)
    return Plan(study, profile, data, splits, study_root, plan_units(study, profile, data, splits, runs_root, arms))


def tidy_pending(plan: Plan) -> list[str]:
    """Archive stale and corrupt finished units, clear partial/failed ones; returns one message per archive."""
    messages = []
    for unit in plan.pending:
        if unit.status == "stale":
            target = archive_stale(unit.directory, plan.study_root)
            messages.append(f"{unit.spec.key}: spec changed; previous results moved to {target}")
        elif unit.status == "corrupt":
            problem = unit_problem(unit.directory)
            target = archive_stale(unit.directory, plan.study_root, folder=".corrupt")
            messages.append(f"{unit.spec.key}: {problem}; moved to {target}, training it again")
        elif unit.status in ("partial", "failed"):
            clear_partial(unit.directory)
    return messages
