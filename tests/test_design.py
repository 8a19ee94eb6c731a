"""The statistical design of a study: repeated cross-validation (`repeats`), the unit of analysis (patients
by default) and the null-control `seed_offset` of an arm; what the tests count as independent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.data import PreparedData
from bench.data.manifest import Case
from bench.errors import ConfigError, DataError
from bench.profiles import PROFILES
from bench.report.significance import compare, fold_test
from bench.runner import plan_units
from bench.splits import load_or_create_splits, make_splits, read_splits
from bench.stats import corrected_ttest
from bench.study import load_study


def _cases(patients: int = 24, longitudinal: int = 4) -> list[Case]:
    """``patients`` patients alternating MS / NMOSD; the first ``longitudinal`` have four scans each."""
    cases = []
    for p in range(patients):
        for t in range(4 if p < longitudinal else 1):
            cases.append(Case(f"p{p}_t{t}", f"p{p}", str(t), p % 2, "A", Path("x"), None))
    return cases


def test_one_repeat_hashes_as_before_and_more_repeats_are_new_partitions(tmp_path):
    cases = _cases()
    one, three = make_splits(cases, 4, 7, "data"), make_splits(cases, 4, 7, "data", repeats=3)
    legacy = json.dumps({"folds": 4, "seed": 7, "data": "data", "test": [list(t) for t in one.test]}, sort_keys=True)
    assert one.hash == hashlib.sha256(legacy.encode()).hexdigest()[:16]  # splits.json written before repeats
    assert three.count == 12 and three.test[:4] == one.test and three.hash != one.hash
    ids = {c.scan_id for c in cases}
    for r in range(3):  # each repeat partitions every scan, grouped by patient
        part = three.test[4 * r: 4 * r + 4]
        assert sorted(s for t in part for s in t) == sorted(ids)
        for k in range(4 * r, 4 * r + 4):
            three.train_test(k, cases)  # the leakage guard holds
    assert three.test[4:8] != three.test[:4] and three.test[8:] != three.test[4:8]
    path = tmp_path / "splits.json"
    assert load_or_create_splits(path, cases, 4, 7, "data", repeats=3) == three
    assert read_splits(path) == three
    with pytest.raises(DataError, match=r"made for 4 folds × 3 repeat\(s\).*this run has 4 folds × 2 repeat\(s\)"):
        load_or_create_splits(path, cases, 4, 7, "data", repeats=2)


def _rows(values_a, values_b, patients, *, seeds=(0,)) -> pd.DataFrame:
    rows = []
    for arm, values in (("a", values_a), ("b", values_b)):
        for seed in seeds:
            for i, (value, patient) in enumerate(zip(values, patients)):
                rows.append({"arm": arm, "fold": i % 5, "seed": seed, "sigma": 0.0, "case_id": f"c{i}",
                             "patient_id": patient, "label": i % 2, "dsc": value, "split_hash": "s"})
    return pd.DataFrame(rows)


def test_segmentation_tests_count_patients_not_scans():
    rng = np.random.default_rng(0)
    patients = [f"p{i // 4}" for i in range(40)]  # ten patients of four scans
    shift = np.repeat(rng.normal(0.05, 0.05, 10), 4)  # a patient's scans move together
    a = 0.5 + shift + 0.005 * rng.standard_normal(40)
    b = np.full(40, 0.5)
    frame = _rows(a, b, patients, seeds=(0, 1))
    by_patient = compare(frame, "a", "b", "dsc")
    by_scan = compare(frame, "a", "b", "dsc", unit="scan")
    assert by_patient.n == 10 and by_scan.n == 40  # seeds averaged, never counted
    assert by_scan.p < by_patient.p


def test_seeds_of_one_partition_are_averaged_before_the_corrected_t():
    d = np.array([0.03, -0.005, 0.04, 0.02, 0.025])  # five fold differences
    folds = pd.DataFrame([{"arm": arm, "fold": k, "seed": s, "sigma": 0.0, "sn": 0.7 + (d[k] if arm == "a" else 0),
                           "n_cases": 20.0} for arm in "ab" for k in range(5) for s in (0, 1, 2)])
    per_case = pd.DataFrame([{"arm": arm, "seed": s, "sigma": 0.0, "case_id": f"c{i}", "patient_id": f"p{i}",
                              "label": i % 2, "prob_nmosd": 0.5, "split_hash": "s"}
                             for arm in "ab" for s in (0, 1, 2) for i in range(100)])
    res = fold_test(per_case, folds, "a", "b", "sn")  # the report's method-level test
    one_seed = corrected_ttest(d, n_train=80, n_test=20)
    copied = corrected_ttest(np.tile(d, 3), n_train=80, n_test=20)  # what treating seeds as repeats gave
    assert res.n == 5 and res.p == pytest.approx(one_seed.p)
    assert copied.p < 0.05 < one_seed.p  # the same five differences, "significant" when copied over seeds


def _study(tmp_path, body: str):
    path = tmp_path / "design.yaml"
    path.write_text("title: design\nfolds: 4\nseeds: [0, 1]\n" + body)
    return load_study(str(path), check_methods=False)


def test_repeats_and_seed_offset_plan_their_units(tmp_path):
    study = _study(tmp_path, "repeats: 2\narms:\n  a: {method: unet3d}\n  b: {method: unet3d, seed_offset: 100}\n")
    assert study.repeats == 2 and study.analysis_unit == "patient"
    from bench.registry import load_plugins

    load_plugins()
    cases = _cases()
    data = PreparedData("synthetic", tmp_path / "manifest.csv", tuple(cases), "data", tmp_path / "cache")
    splits = make_splits(cases, 4, study.split_seed, "data", repeats=2)
    units = plan_units(study, PROFILES["smoke"], data, splits, tmp_path / "runs")
    assert len(units) == 2 * 2 * 8  # arms × seeds × (4 folds × 2 repeats)
    assert {u.spec.fold for u in units} == set(range(8))
    a = {u.spec.key: u.spec for u in units if u.spec.arm == "a"}
    b = {u.spec.key: u.spec for u in units if u.spec.arm == "b"}
    assert all(s.extra == {} for s in a.values())  # no offset: the spec (and its hash) as before
    assert all(s.extra == {"seed_offset": 100} for s in b.values())
    assert {s.seed for s in b.values()} == {0, 1}  # results still pair with arm a by the study's seed


@pytest.mark.parametrize("body, match", [
    ("analysis_unit: case\narms: {a: {method: unet3d}}\n", r"analysis_unit: expected patient or scan, got 'case'"),
    ("repeats: 0\narms: {a: {method: unet3d}}\n", r"repeats: expected a value >= 1"),
    ("arms: {a: {method: unet3d, seed_offset: -1}}\n", r"arms.a.seed_offset: expected a value >= 0"),
])
def test_design_keys_are_validated(tmp_path, body, match):
    with pytest.raises(ConfigError, match=match):
        _study(tmp_path, body)
