"""Cross-validation folds: grouped by patient, stratified by label, seeded, written once per study.

``runs/<study>/splits.json`` holds the folds and their hash (with ``repeats: r``, r partitions of k folds
each, fold index ``repeat * k + fold``, every repeat drawn with its own seed); every arm of the study reads the same
file, and the hash goes on every per-case row so that reports refuse to compare rows from
different splits. A fold that would put one patient on both sides is refused (:class:`LeakageError`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.manifest import Case
from bench.errors import ConfigError, DataError, LeakageError

__all__ = ["Splits", "make_splits", "check_no_leakage", "read_splits", "load_or_create_splits", "inner_splits"]


@dataclass(frozen=True)
class Splits:
    """``test[j]`` = scan ids of fold j's test set; the training set is every other scan.

    With ``repeats`` r > 1 there are ``folds × r`` test sets: fold j belongs to repeat ``j // folds``, and each
    repeat's k test sets partition the scans.
    """

    folds: int
    seed: int
    data_fingerprint: str
    test: tuple[tuple[str, ...], ...]
    repeats: int = 1

    @property
    def count(self) -> int:
        """How many train/test splits: folds × repeats."""
        return self.folds * self.repeats

    @property
    def hash(self) -> str:
        content = {"folds": self.folds, "seed": self.seed, "data": self.data_fingerprint,
                   "test": [list(t) for t in self.test]}
        if self.repeats > 1:  # one repeat hashes as before repeats existed
            content["repeats"] = self.repeats
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def train_test(self, fold: int, cases: list[Case]) -> tuple[list[Case], list[Case]]:
        """The training and test cases of ``fold``, in manifest order."""
        if not 0 <= fold < self.count:
            raise ConfigError(f"fold {fold} out of range 0..{self.count - 1}")
        test_ids = set(self.test[fold])
        train = [c for c in cases if c.scan_id not in test_ids]
        test = [c for c in cases if c.scan_id in test_ids]
        check_no_leakage(train, test, fold)
        return train, test

    def to_json(self) -> dict:
        return {"folds": self.folds, "repeats": self.repeats, "seed": self.seed,
                "data_fingerprint": self.data_fingerprint, "hash": self.hash, "test": [list(t) for t in self.test]}


def check_no_leakage(train: list[Case], test: list[Case], fold: int) -> None:
    """Raise :class:`LeakageError` if a patient has scans on both sides of ``fold``."""
    shared = sorted({c.patient_id for c in train} & {c.patient_id for c in test})
    if shared:
        raise LeakageError(f"fold {fold}: patient(s) {', '.join(shared[:5])} appear in both training and test sets")


def _repeat_seed(seed: int, repeat: int) -> int:
    """Repeat 0 uses the study's ``split_seed`` itself; later repeats a seed derived from (seed, repeat)."""
    return seed if repeat == 0 else int(np.random.SeedSequence([seed, repeat]).generate_state(1)[0] % 2**31)


def make_splits(cases: list[Case], folds: int, seed: int, data_fingerprint: str, repeats: int = 1) -> Splits:
    """Stratified (by label) group (by patient) k-fold with sklearn's StratifiedGroupKFold, ``repeats`` times.

    Unlabelled datasets (segmentation only) are grouped but not stratified.
    """
    test = tuple(t for r in range(repeats) for t in _partition(cases, folds, _repeat_seed(seed, r)))
    splits = Splits(folds, seed, data_fingerprint, test, repeats)
    for k in range(splits.count):
        splits.train_test(k, cases)
    return splits


def _partition(cases: list[Case], folds: int, seed: int) -> tuple[tuple[str, ...], ...]:
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    patients = sorted({c.patient_id for c in cases})
    if len(patients) < folds:
        raise DataError(f"{len(patients)} patients cannot fill {folds} folds")
    groups = np.array([c.patient_id for c in cases])
    labels = np.array([-1 if c.label is None else c.label for c in cases])
    index = np.zeros(len(cases))
    if (labels >= 0).all():
        counts = np.bincount(labels)
        if counts.min(initial=len(cases)) < folds:
            raise DataError(f"a class has {counts.min()} scans, fewer than the {folds} folds")
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        parts = splitter.split(index, labels, groups)
    else:
        splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        parts = splitter.split(index, groups=groups)
    return tuple(tuple(sorted(cases[i].scan_id for i in test_idx)) for _, test_idx in parts)


def read_splits(path: Path) -> Splits:
    """Read ``splits.json``, refusing a file whose content no longer matches its hash."""
    try:
        stored = json.loads(Path(path).read_text())
        splits = Splits(stored["folds"], stored["seed"], stored["data_fingerprint"], tuple(tuple(t) for t in stored["test"]),
                        int(stored.get("repeats", 1)))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: cannot read the splits ({exc})") from None
    if stored.get("hash") != splits.hash:
        raise DataError(f"{path}: its hash does not match its content; the file was edited by hand")
    return splits


def load_or_create_splits(path: Path, cases: list[Case], folds: int, seed: int, data_fingerprint: str,
                          repeats: int = 1) -> Splits:
    """Read ``splits.json`` if it matches this dataset, fold count and repeats, else create it; never silently
    replace it."""
    if path.exists():
        splits = read_splits(path)
        if (splits.folds, splits.repeats, splits.seed, splits.data_fingerprint) != (folds, repeats, seed, data_fingerprint):
            raise DataError(
                f"{path}: made for {splits.folds} folds × {splits.repeats} repeat(s), seed {splits.seed}, data "
                f"{splits.data_fingerprint}, but this run has {folds} folds × {repeats} repeat(s), seed {seed}, data "
                f"{data_fingerprint}; move the study's run folder away or use --runs-dir"
            )
        ids = {c.scan_id for c in cases}
        if {s for t in splits.test for s in t} != ids:
            raise DataError(f"{path}: its scans differ from the dataset's")
        for k in range(splits.count):
            splits.train_test(k, cases)
        return splits
    splits = make_splits(cases, folds, seed, data_fingerprint, repeats)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(splits.to_json(), indent=1))
    tmp.replace(path)
    return splits


def inner_splits(splits, fold: int, cases: list, inner_folds: int):
    """The inner folds of outer fold ``fold``: (inner :class:`~bench.splits.Splits`, the outer training cases).

    Made from the outer training set only, grouped by patient and stratified by label, seeded by the
    study's ``split_seed`` (the outer splits' seed) and the fold. Raises :class:`~bench.errors.LeakageError` if an inner set holds a
    scan of an
    outer test patient (impossible by construction; checked so that it stays impossible).
    """
    outer_train, outer_test = splits.train_test(fold, cases)
    try:
        inner = make_splits(outer_train, inner_folds, splits.seed * 1000 + fold, f"{splits.hash}/fold_{fold}")
    except DataError as exc:
        raise DataError(f"outer fold {fold}: cannot make {inner_folds} inner folds of its {len(outer_train)} "
                        f"training scans: {exc}") from None
    held_out = {c.patient_id for c in outer_test}
    by_id = {c.scan_id: c for c in cases}
    for j, ids in enumerate(inner.test):  # what the inner folds list, not what train_test would filter to
        leaked = sorted({by_id[s].patient_id for s in ids if s in by_id} & held_out)
        if leaked:
            raise LeakageError(f"outer fold {fold}, inner fold {j}: outer test patient(s) {', '.join(leaked[:5])} "
                               "in the inner folds")
    listed = {s for ids in inner.test for s in ids}
    if listed != {c.scan_id for c in outer_train}:
        raise LeakageError(f"outer fold {fold}: the inner folds do not partition its training scans "
                           f"({len(listed)} listed, {len(outer_train)} training scans)")
    return inner, outer_train
