"""The synthetic cohort on MNI anatomy: layout, literature statistics, contrast, separability, shortcuts, folds.

The cohort fixture is the default cohort (69 MS + 62 NMOSD, 5 longitudinal patients) on a 32³ grid with
``site_class_coupling=0``; lesion statistics come from its sidecars (rendered partial-volume volumes).
"""

import json
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage, stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench.data import DEFAULT_DIFFICULTY
from bench.data.anatomy import load_anatomy, load_regions
from bench.data.cohort import generate_cohort
from bench.data.lesions import CLASS_INDEX, LESION_CLASSES
from bench.data.manifest import read_manifest
from bench.data.synthetic import (
    SyntheticConfig,
    cohort_plan,
    generate_scan,
    plan_features,
    scan_plan,
    subject_plan,
)
from bench.splits import make_splits

COHORT = SyntheticConfig(size=32, site_class_coupling=0.0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    manifest = generate_cohort(COHORT, out, jobs=2)
    cases = read_manifest(manifest)
    sidecars = {c.scan_id: json.loads(c.image_path.with_name(c.image_path.name.replace(".nii.gz", ".json")).read_text())
                for c in cases}
    return out, cases, sidecars


@pytest.fixture(scope="module")
def mm1():
    return load_anatomy()


def _logistic_accuracy(features, labels, groups=None) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression())
    cv = GroupKFold(5) if groups is not None else StratifiedKFold(5, shuffle=True, random_state=0)
    return float(cross_val_score(model, np.asarray(features), np.asarray(labels), cv=cv, groups=groups).mean())


def test_default_cohort_layout(cohort):
    out, cases, sidecars = cohort
    assert len(cases) == 131 and Counter(c.label for c in cases) == {0: 69, 1: 62}
    per_patient = Counter(c.patient_id for c in cases)
    assert sorted(n for n in per_patient.values() if n > 1) == [4, 4, 4, 4, 5]
    assert sum(n for n in per_patient.values() if n > 1) == 21
    participants = (out / "participants.tsv").read_text().splitlines()
    assert participants[0].split("\t") == ["participant_id", "diagnosis", "site"] and len(participants) == 1 + len(per_patient)
    case = cases[0]
    assert case.image_path.name == "sub-000_ses-00_FLAIR.nii.gz"
    assert "derivatives" in case.mask_path.parts and case.mask_path.name.endswith("_label-lesion_mask.nii.gz")
    assert case.mask_path.with_name("sub-000_ses-00_label-lesionclass_dseg.nii.gz").exists()
    sidecar = sidecars[case.scan_id]
    assert sidecar["generator"] and sidecar["protocol"]["tr_ms"] > 0 and sidecar["warp"]["scale"]
    for lesion in sidecar["lesions"]:  # every lesion listed with what it is and where
        assert lesion["class"] in LESION_CLASSES and lesion["volume_ml"] > 0 and "rendered_volume_ml" in lesion
    # the lesion-class map labels exactly the mask
    import nibabel as nib

    for c in cases[:10]:
        mask = np.asarray(nib.load(str(c.mask_path)).dataobj)
        classes = np.asarray(nib.load(str(c.mask_path.with_name(c.mask_path.name.replace(
            "label-lesion_mask", "label-lesionclass_dseg")))).dataobj)
        assert np.array_equal(mask > 0, classes > 0)
        listed = {CLASS_INDEX[l["class"]] for l in sidecars[c.scan_id]["lesions"]}
        assert set(np.unique(classes[classes > 0]).tolist()) <= listed


def test_lesion_statistics_in_literature_bands(cohort, mm1):
    _, cases, sidecars = cohort
    ms = [sidecars[c.scan_id] for c in cases if c.label == 0]
    nmosd = [sidecars[c.scan_id] for c in cases if c.label == 1]
    assert 3.0 <= np.median([s["lesion_volume_ml"] for s in ms]) <= 10.0
    # NMOSD: median over the scans with lesions (the lesion-free share is its own statistic)
    positive = [s["lesion_volume_ml"] for s in nmosd if s["lesions"]]
    assert 0.2 <= np.median(positive) <= 2.0
    assert 0.20 <= np.mean([not s["lesions"] for s in nmosd]) <= 0.45
    assert all(s["lesions"] for s in ms)  # MS is never lesion-free

    def periventricular(sidecar) -> bool:  # a lesion centre within 6 mm of the lateral ventricles (1 mm anatomy)
        for lesion in sidecar["lesions"]:
            if lesion["centre"] is not None:
                i, j, k = np.round(mm1.mni_to_voxel(lesion["centre"])).astype(int)
                if mm1.dist_lateral[i, j, k] <= 6:
                    return True
        return False

    assert np.mean([periventricular(s) for s in ms]) >= 0.70
    assert np.mean([periventricular(s) for s in nmosd if s["lesions"]]) < np.mean([periventricular(s) for s in ms])


def test_lesion_sites_follow_their_regions(mm1):
    config = SyntheticConfig(difficulty=1.0)
    by_class: dict[str, list] = {}
    for pid in range(150):
        for lesion in subject_plan(config, pid, "MS" if pid % 2 else "NMOSD")["lesions"]:
            by_class.setdefault(lesion["class"], []).append(lesion)
    assert set(by_class) == set(LESION_CLASSES)

    def at(name, lesion):
        i, j, k = np.round(mm1.mni_to_voxel(lesion["centre"])).astype(int)
        return float(getattr(mm1, name)[i, j, k])

    for lesion in by_class["pv_ovoid"]:  # sampled next to the ventricle, then moved outward along its axis
        semi_major = lesion["diameter_mm"] / 2 * lesion["elongation"] ** (2 / 3)
        start = np.asarray(lesion["centre"]) - 0.6 * semi_major * np.asarray(lesion["axis"])
        assert at("dist_lateral", {"centre": start}) <= 6
    moved_out = [at("dist_lateral", l) > at("dist_lateral", {"centre": np.asarray(l["centre"]) - np.asarray(l["axis"])})
                 for l in by_class["pv_ovoid"]]
    assert np.mean(moved_out) > 0.9
    assert all(at("dist_lateral", l) > 7 and at("dist_cortex", l) > 5 for l in by_class["deep"])
    assert all(2 <= at("dist_cortex", l) <= 13 for l in by_class["dot"])
    assert all(at("dist_cortex", l) <= 4 for l in by_class["juxtacortical"])
    assert all(l["centre"][2] < -10 for l in by_class["infratentorial"] + by_class["area_postrema"])
    assert all(at("corpus_callosum", l) for l in by_class["marbled"])
    diameters = {name: np.median([l["diameter_mm"] for l in lesions]) for name, lesions in by_class.items()}
    assert diameters["dot"] < 3.5 < diameters["juxtacortical"] < diameters["pv_ovoid"] < diameters["tumefactive"]
    assert all(20 <= l["arc_mm"][1] - l["arc_mm"][0] <= 60 for l in by_class["cst"])


def test_regions_and_directions(mm1):
    regions = load_regions()
    for name, points in regions.items():
        if name.endswith("_dir"):
            continue
        idx = np.round(mm1.mni_to_voxel(points[:200])).astype(int)
        assert mm1.brain[tuple(idx.T)].all(), name
    # Dawson's-finger axes point away from the ventricles: one step along them increases the distance
    points, dirs = regions["periventricular"][:500], regions["periventricular_dir"][:500]
    before = ndimage.map_coordinates(mm1.dist_lateral, mm1.mni_to_voxel(points).T, order=1)
    after = ndimage.map_coordinates(mm1.dist_lateral, mm1.mni_to_voxel(points + 2 * dirs).T, order=1)
    assert np.mean(after > before) > 0.95


def _tissue_signals(scan) -> np.ndarray:
    """Per-tissue signal by least squares of the image on the voxel's partial volumes (WM, GM, CSF, lesion)."""
    f = scan.fractions
    keep = 1 - f["lesion"] / np.maximum(f["wm"] + f["gm"], 1e-6)
    design = np.stack([f["wm"] * keep, f["gm"] * keep, f["csf"], f["lesion"]], axis=-1)
    inside = scan.image > 0
    coef, *_ = np.linalg.lstsq(design[inside], scan.image[inside], rcond=None)
    return coef / coef[0]


def test_intensity_ratios_per_site():
    config = SyntheticConfig(size=48, difficulty=0.0)
    sites = set()
    for pid in range(20, 40):
        scan = generate_scan(config, pid, 0, "MS")
        sites.add(scan.site)
        _, gm, csf, lesion = _tissue_signals(scan)
        assert 1.25 <= lesion <= 2.0 and 1.05 <= gm <= 1.35 and csf < 0.35, (scan.site, gm, csf, lesion)
    assert sites == {"B", "C", "D"}


def test_normal_hyperintensity_in_every_subject():
    """Along the CST and around the 3rd/4th ventricles WM is 10–15 % brighter in everybody, lesion-free or not."""
    config = SyntheticConfig(size=48)
    for pid, label in ((70, "NMOSD"), (71, "MS"), (72, "NMOSD")):
        scan = generate_scan(config, pid, 0, label)
        f = scan.fractions
        keep = 1 - f["lesion"] / np.maximum(f["wm"] + f["gm"], 1e-6)
        design = np.stack([f["wm"] * keep, f["wm"] * keep * f["normal_hyperintensity"], f["gm"] * keep, f["csf"],
                           f["lesion"]], axis=-1)
        inside = scan.image > 0
        coef, *_ = np.linalg.lstsq(design[inside], scan.image[inside], rcond=None)
        assert 0.05 <= coef[1] / coef[0] <= 0.22, (pid, coef)
        assert (f["normal_hyperintensity"][inside] > 0.5).sum() > 30
        assert not scan.mask[f["normal_hyperintensity"] > 0.5].any() or scan.params["lesions"]  # never labelled


def test_separability_falls_with_difficulty():
    accuracies = []
    for difficulty in (0.0, DEFAULT_DIFFICULTY, 0.5, 1.0):
        config = SyntheticConfig(difficulty=difficulty, seed=3)
        features, labels = [], []
        for pid in range(1600):
            label = "MS" if pid % 2 else "NMOSD"
            features.append(plan_features(subject_plan(config, pid, label)))
            labels.append(label == "MS")
        accuracies.append(_logistic_accuracy(features, labels))
    assert 0.65 <= accuracies[1] <= 0.85, accuracies
    assert all(a > b for a, b in zip(accuracies, accuracies[1:])), accuracies


def test_rendered_lesion_load_separability_at_the_default(cohort):
    _, cases, sidecars = cohort
    features = []
    for c in cases:
        lesions = sidecars[c.scan_id]["lesions"]
        sizes = [(6 * l["rendered_volume_ml"] * 1000 / np.pi) ** (1 / 3) for l in lesions]
        features.append([len(lesions), sidecars[c.scan_id]["lesion_volume_ml"], np.mean(sizes) if sizes else 0.0])
    accuracy = _logistic_accuracy(features, [c.label for c in cases], groups=[c.patient_id for c in cases])
    assert 0.65 <= accuracy <= 0.85


def test_no_global_intensity_shortcut_without_site_coupling(cohort):
    import nibabel as nib

    _, cases, _ = cohort
    features = []
    for c in cases:
        v = np.asarray(nib.load(str(c.image_path)).dataobj)
        v = v[v > 0]
        p = np.percentile(v, [1, 5, 50, 95, 99])
        features.append([v.mean(), v.std(), *p, stats.skew(v), v.size, p[4] / p[2]])
    accuracy = _logistic_accuracy(features, [c.label for c in cases], groups=[c.patient_id for c in cases])
    assert accuracy <= 0.60


def test_site_class_coupling():
    coupled, free = SyntheticConfig(), SyntheticConfig(site_class_coupling=0.0)
    plan = cohort_plan(coupled)
    patients = sorted({(p, label) for p, _, label in plan})
    sites = {c: Counter((subject_plan(c, p, label)["site"], label) for p, label in patients) for c in (coupled, free)}
    assert sites[coupled][("A", "NMOSD")] == 0 and sites[coupled][("A", "MS")] == 5  # the joint-model paper's site shortcut
    assert sites[free][("A", "NMOSD")] > 0  # site drawn independently of the label


def test_every_patient_in_exactly_one_fold(cohort):
    _, cases, _ = cohort
    splits = make_splits(cases, 5, 0, "synthetic")
    folds_of = {}
    for k in range(5):
        _, test = splits.train_test(k, cases)
        for c in test:
            folds_of.setdefault(c.patient_id, set()).add(k)
    assert len(folds_of) == len({c.patient_id for c in cases}) and all(len(f) == 1 for f in folds_of.values())


def test_longitudinal_time_points_share_anatomy_and_lesions():
    config = SyntheticConfig(size=32)
    first, second = (scan_plan(config, 0, tp, "MS") for tp in (0, 1))
    n = len(first["lesions"])
    assert [l["centre"] for l in second["lesions"][:n]] == [l["centre"] for l in first["lesions"]]
    ratios = [b["diameter_mm"] / a["diameter_mm"] for a, b in zip(first["lesions"], second["lesions"])]
    assert all(0.9 <= r <= 1.1 for r in ratios) and len(set(np.round(ratios, 6))) > 1
    assert first["site"] == second["site"] == "A" and first["nuisance"] != second["nuisance"]


def test_config_errors():
    with pytest.raises(ValueError, match="difficulty must be in"):
        SyntheticConfig(difficulty=1.5)
    with pytest.raises(ValueError, match="site_class_coupling must be in"):
        SyntheticConfig(site_class_coupling=-0.1)
    with pytest.raises(ValueError, match="label must be MS or NMOSD"):
        subject_plan(SyntheticConfig(), 0, "RRMS")
