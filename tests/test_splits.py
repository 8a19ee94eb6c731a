"""Folds: grouped by patient, stratified by label, deterministic, hashed; the leakage guard fires."""

from collections import Counter
from pathlib import Path

import pytest

from bench.data.manifest import Case
from bench.errors import DataError, LeakageError
from bench.splits import Splits, load_or_create_splits, make_splits


def _cases(n_ms=30, n_nmosd=25, longitudinal=(4, 4, 5)):
    cases, pid = [], 0
    for n_tp in longitudinal:  # MS patients with several scans
        cases += [Case(f"p{pid}_t{t}", f"p{pid}", str(t), 0, "A", Path("x"), None) for t in range(n_tp)]
        pid += 1
    for label, n in ((0, n_ms - sum(longitudinal)), (1, n_nmosd)):
        for _ in range(n):
            cases.append(Case(f"p{pid}_t0", f"p{pid}", "0", label, "A", Path("x"), None))
            pid += 1
    return cases


def test_grouped_every_patient_in_exactly_one_test_fold():
    cases = _cases()
    splits = make_splits(cases, 5, 0, "data")
    seen = Counter()
    for k in range(5):
        train, test = splits.train_test(k, cases)
        assert {c.patient_id for c in train}.isdisjoint({c.patient_id for c in test})
        seen.update({c.patient_id for c in test})
    assert set(seen) == {c.patient_id for c in cases} and set(seen.values()) == {1}
    assert sorted(s for fold in splits.test for s in fold) == sorted(c.scan_id for c in cases)


def test_stratified_label_proportions():
    cases = _cases()
    splits = make_splits(cases, 5, 0, "data")
    overall = sum(c.label for c in cases) / len(cases)
    for k in range(5):
        _, test = splits.train_test(k, cases)
        assert abs(sum(c.label for c in test) / len(test) - overall) < 0.2


def test_deterministic_and_seeded():
    cases = _cases()
    a, b = make_splits(cases, 5, 0, "data"), make_splits(cases, 5, 0, "data")
    assert a == b and a.hash == b.hash
    assert make_splits(cases, 5, 1, "data").hash != a.hash


def test_leakage_guard_fires():
    cases = _cases()
    # put the first scan of patient p0 in the test set and leave its other scans in training
    bad = Splits(2, 0, "data", (("p0_t0",), tuple(c.scan_id for c in cases if c.scan_id != "p0_t0")))
    with pytest.raises(LeakageError, match="p0"):
        bad.train_test(0, cases)


def test_written_once_and_identical_on_reload(tmp_path):
    cases = _cases()
    path = tmp_path / "splits.json"
    first = load_or_create_splits(path, cases, 5, 0, "data")
    assert load_or_create_splits(path, cases, 5, 0, "data").hash == first.hash


def test_refuses_a_splits_file_for_other_data(tmp_path):
    cases = _cases()
    path = tmp_path / "splits.json"
    load_or_create_splits(path, cases, 5, 0, "data")
    with pytest.raises(DataError, match="made for 5 folds"):
        load_or_create_splits(path, cases, 3, 0, "data")


def test_refuses_an_edited_splits_file(tmp_path):
    path = tmp_path / "splits.json"
    load_or_create_splits(path, _cases(), 5, 0, "data")
    path.write_text(path.read_text().replace('"seed": 0', '"seed": 7'))
    with pytest.raises(DataError, match="hash does not match"):
        load_or_create_splits(path, _cases(), 5, 0, "data")


def test_too_few_patients():
    with pytest.raises(DataError, match="cannot fill"):
        make_splits(_cases(n_ms=2, n_nmosd=1, longitudinal=()), 5, 0, "d")
