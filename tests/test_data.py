"""Manifest validation, the joint-model paper's preprocessing, the cache, and the placeholder generator."""

import numpy as np
import pytest
from conftest import brain_volume, save_nifti, write_dataset

from bench.data import prepare_dataset
from bench.data.cohort import generate_cohort
from bench.data.manifest import read_manifest
from bench.data.preprocess import preprocess_case
from bench.data.synthetic import SyntheticConfig, cohort_plan, generate_scan
from bench.errors import DataError
from bench.noise import gaussian_noise
from bench.profiles import get_profile

HEADER = "scan_id,patient_id,timepoint,label,site,image_path,mask_path\n"


def test_reads_a_manifest(dataset_dir):
    cases = read_manifest(dataset_dir / "manifest.csv")
    assert len(cases) == 8 and cases[0].label == 0 and cases[-1].label == 1
    assert cases[0].image_path == dataset_dir / "img_0.nii.gz"


@pytest.mark.parametrize(
    "row, match",
    [
        ("s0,p0,0,MS,A,missing.nii.gz,mask_0.nii.gz", r"manifest.csv:2: image_path '.*missing.nii.gz' does not exist"),
        ("s0,p0,0,NMO,A,img_0.nii.gz,mask_0.nii.gz", r"manifest.csv:2: label 'NMO' unknown; expected MS, NMOSD or empty"),
        ("s0,,0,MS,A,img_0.nii.gz,mask_0.nii.gz", r"manifest.csv:2: patient_id is empty"),
        ("s0,p0,0,MS,A,img_0.nii.gz,mask_0.nii.gz\ns0,p1,0,MS,A,img_1.nii.gz,mask_1.nii.gz",
         r"manifest.csv:3: duplicate scan_id 's0' \(first on line 2\)"),
    ],
)
def test_manifest_errors_name_file_row_and_column(dataset_dir, row, match):
    path = dataset_dir / "manifest.csv"
    path.write_text(HEADER + row + "\n")
    with pytest.raises(DataError, match=match):
        read_manifest(path)


def test_missing_column(tmp_path):
    (tmp_path / "m.csv").write_text("scan_id,label\n")
    with pytest.raises(DataError, match="missing column"):
        read_manifest(tmp_path / "m.csv")


def _case(dataset_dir, i=0):
    return read_manifest(dataset_dir / "manifest.csv")[i]


def test_mask_shape_mismatch_names_the_mask(dataset_dir):
    save_nifti(dataset_dir / "mask_0.nii.gz", np.zeros((5, 5, 5), np.uint8))
    with pytest.raises(DataError, match=r"mask_0.nii.gz: mask shape \(5, 5, 5\) does not match its image img_0.nii.gz"):
        preprocess_case(_case(dataset_dir), 16)


def test_non_binary_mask(dataset_dir):
    _, mask = brain_volume()
    save_nifti(dataset_dir / "mask_0.nii.gz", mask.astype(np.float32) * 2)
    with pytest.raises(DataError, match="mask is not binary"):
        preprocess_case(_case(dataset_dir), 16)


def test_mask_affine_mismatch(dataset_dir):
    _, mask = brain_volume()
    save_nifti(dataset_dir / "mask_0.nii.gz", mask, spacing=(2.0, 1.0, 1.0))
    with pytest.raises(DataError, match="mask affine differs"):
        preprocess_case(_case(dataset_dir), 16)


def test_corrupt_nifti(dataset_dir):
    (dataset_dir / "img_0.nii.gz").write_bytes(b"not a nifti file")
    with pytest.raises(DataError, match=r"img_0.nii.gz: cannot read as NIfTI"):
        preprocess_case(_case(dataset_dir), 16)


def test_preprocessing_crops_resizes_and_zscores(dataset_dir):
    vol = preprocess_case(_case(dataset_dir), 16)
    assert vol.image.shape == (1, 16, 16, 16) and vol.image.dtype == np.float32
    assert vol.mask.shape == (1, 16, 16, 16) and set(np.unique(vol.mask)) == {0, 1}
    brain = vol.image[vol.image != 0]
    assert abs(brain.mean()) < 1e-4 and abs(brain.std() - 1) < 1e-3
    # the 14×16×12 foreground (+1 voxel margin) is resized to 16³: spacing = extent / 16
    assert vol.spacing == pytest.approx((16 / 16, 18 / 16, 14 / 16))
    # the lesion survives and stays brighter than the brain
    assert vol.mask.sum() > 0 and vol.image[vol.mask == 1].mean() > brain.mean()


def test_prepare_dataset_caches(tmp_path):
    write_dataset(tmp_path / "d", n_per_class=2)
    profile = get_profile("smoke")
    first = prepare_dataset("manifest", {"path": str(tmp_path / "d" / "manifest.csv")}, profile)
    assert (first.cache_dir / "COMPLETE.json").exists() and len(list(first.cache_dir.glob("*.npz"))) == 4
    again = prepare_dataset("manifest", {"path": str(tmp_path / "d" / "manifest.csv")}, profile)
    assert again.fingerprint == first.fingerprint and first.has_masks and first.has_labels


def test_generator_is_deterministic_per_scan(tmp_path):
    config = SyntheticConfig(n_ms=12, n_nmosd=6, size=32, longitudinal=(2, 2))
    manifest = generate_cohort(config, tmp_path)
    cases = read_manifest(manifest)
    assert len(cases) == 18 and sum(c.label == 1 for c in cases) == 6
    plan = cohort_plan(config)
    assert plan[0][0] == plan[1][0]  # a longitudinal patient
    import nibabel as nib

    target = cases[5]
    alone = generate_scan(config, target.patient_id[4:], int(target.timepoint), "MS")
    assert np.array_equal(np.asarray(nib.load(str(target.image_path)).dataobj), alone.image)
    assert np.array_equal(np.asarray(nib.load(str(target.mask_path)).dataobj), alone.mask)
    classes = target.mask_path.with_name(target.mask_path.name.replace("label-lesion_mask", "label-lesionclass_dseg"))
    assert np.array_equal(np.asarray(nib.load(str(classes)).dataobj), alone.lesion_class)


def test_generator_class_signal():
    config = SyntheticConfig(n_ms=30, n_nmosd=30, size=32, difficulty=0.0, longitudinal=())
    ms = [generate_scan(config, p, 0, "MS").mask.sum() for p in range(30)]
    nmosd = [generate_scan(config, 100 + p, 0, "NMOSD").mask.sum() for p in range(30)]
    assert np.median(ms) > 3 * max(np.median(nmosd), 1)


def test_noise_is_identical_per_case_and_sigma():
    a = gaussian_noise("case1", 0.05, (4, 4))
    assert np.array_equal(a, gaussian_noise("case1", 0.05, (4, 4)))
    assert not np.array_equal(a, gaussian_noise("case1", 0.03, (4, 4)))
    assert not np.array_equal(a, gaussian_noise("case2", 0.05, (4, 4)))
    assert not gaussian_noise("c", 0.0, (3,)).any()
    big = gaussian_noise("c", 0.5, (100_000,))
    assert abs(big.std() - 0.5) < 0.01


def test_a_patient_with_two_labels_is_refused(dataset_dir):
    path = dataset_dir / "manifest.csv"
    path.write_text(HEADER + "s0,p0,0,MS,A,img_0.nii.gz,mask_0.nii.gz\ns1,p0,1,NMOSD,A,img_1.nii.gz,mask_1.nii.gz\n")
    with pytest.raises(DataError, match=r"manifest.csv: patient\(s\) p0 have scans with different labels"):
        read_manifest(path)
