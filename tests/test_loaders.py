"""Real-data loaders on small fabricated trees with the real naming of ISBI 2015, MSSEG-2016 and BIDS."""

import numpy as np
import pytest
from conftest import brain_volume, save_nifti

from bench.data.check import summarise
from bench.data.loaders import bids_rows, detect_layout, isbi2015_rows, msseg2016_rows, write_loader_manifest
from bench.data.manifest import read_manifest
from bench.errors import ConfigError, DataError


def _isbi(root):
    for patient, n_tp in (("01", 2), ("02", 1)):
        for tp in range(1, n_tp + 1):
            image, mask = brain_volume(seed=tp)
            base = root / "training" / f"training{patient}"
            save_nifti(base / "preprocessed" / f"training{patient}_0{tp}_flair_pp.nii", image)
            save_nifti(base / "masks" / f"training{patient}_0{tp}_mask1.nii", mask)
            other = mask.copy()
            other[8, 9, 7] = 0  # rater 2 misses one voxel …
            other[2, 2, 2] = 1  # … and adds another
            save_nifti(base / "masks" / f"training{patient}_0{tp}_mask2.nii", other)
    return root


def test_isbi_rows_and_rater_combinations(tmp_path):
    root = _isbi(tmp_path / "isbi")
    rows = isbi2015_rows(root)
    assert [r["scan_id"] for r in rows] == ["isbi01_01", "isbi01_02", "isbi02_01"]
    assert {r["patient_id"] for r in rows} == {"isbi01", "isbi02"} and {r["label"] for r in rows} == {"MS"}
    import nibabel as nib

    volume = lambda rows: int(np.asarray(nib.load(rows[0]["mask_path"]).dataobj).sum())  # noqa: E731
    one = volume(rows)
    assert volume(isbi2015_rows(root, mask="union", derived=tmp_path / "d")) == one + 1
    assert volume(isbi2015_rows(root, mask="intersection", derived=tmp_path / "d")) == one - 1
    with pytest.raises(ConfigError, match="did you mean 'union'"):
        isbi2015_rows(root, mask="unoin")


def test_msseg_rows(tmp_path):
    for centre, patient in (("01", "01"), ("03", "02")):
        image, mask = brain_volume()
        base = tmp_path / f"Center_{centre}" / f"Patient_{patient}"
        save_nifti(base / "Preprocessed_Data" / "FLAIR_preprocessed.nii.gz", image)
        save_nifti(base / "Masks" / "Consensus.nii.gz", mask)
    rows = msseg2016_rows(tmp_path)
    assert [r["patient_id"] for r in rows] == ["Center_01-Patient_01", "Center_03-Patient_02"]
    assert [r["site"] for r in rows] == ["Center_01", "Center_03"]
    assert detect_layout(tmp_path) == "msseg2016"


def _bids(root, diagnosis=("MS", "NMOSD")):
    lines = ["participant_id\tdiagnosis\tsite"]
    for i, dx in enumerate(diagnosis):
        subject = f"sub-{i:02d}"
        lines.append(f"{subject}\t{dx}\tsiteA")
        for ses in ("01", "02"):
            image, mask = brain_volume(seed=i)
            save_nifti(root / subject / f"ses-{ses}" / "anat" / f"{subject}_ses-{ses}_FLAIR.nii.gz", image)
            save_nifti(root / "derivatives" / "lesions" / subject / f"ses-{ses}" / "anat"
                       / f"{subject}_ses-{ses}_label-lesion_mask.nii.gz", mask)
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_bids_rows(tmp_path):
    rows = bids_rows(_bids(tmp_path))
    assert len(rows) == 4 and [r["label"] for r in rows] == ["MS", "MS", "NMOSD", "NMOSD"]
    assert rows[1]["timepoint"] == "02" and rows[1]["patient_id"] == "sub-00" and rows[1]["mask_path"].endswith("mask.nii.gz")
    assert detect_layout(tmp_path) == "bids"


def test_bids_unknown_diagnosis(tmp_path):
    with pytest.raises(DataError, match=r"participants.tsv:3: diagnosis 'NMO' unknown"):
        bids_rows(_bids(tmp_path, diagnosis=("MS", "NMO")))


def test_loader_manifest_is_readable_and_summarised(tmp_path):
    manifest = write_loader_manifest("isbi2015", _isbi(tmp_path / "isbi"), tmp_path / "cache", mask="intersection")
    cases = read_manifest(manifest)
    assert len(cases) == 3 and all(c.mask_path.exists() for c in cases)
    summary = summarise(manifest)
    assert summary.patients == 2 and summary.labels["MS"] == 3 and summary.shapes["20×22×18"] == 3
    assert all(v > 0 for v in summary.lesion_ml["MS"])


def test_summary_flags_a_patient_in_two_folds(tmp_path, dataset_dir):
    path = dataset_dir / "manifest.csv"
    lines = path.read_text().splitlines()
    lines[0] += ",fold"
    lines[1:] = [line + f",{i % 2}" for i, line in enumerate(lines[1:])]
    lines[2] = lines[2].replace(",p1,", ",p0,").replace(",MS,", ",MS,")  # p0 now has scans in folds 0 and 1
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="puts patient"):
        summarise(path)


def test_unknown_layout(tmp_path):
    with pytest.raises(DataError, match="not a known layout"):
        detect_layout(tmp_path)


def test_data_check_cli(tmp_path, bench_cli):
    result = bench_cli("data", "check", _isbi(tmp_path / "isbi"), "--mask", "union")
    assert result.code == 0, result
    assert "isbi2015" in result.out and "scans / patients" in result.out and "3 / 2" in result.out


def test_data_check_cli_names_the_bad_file(tmp_path, bench_cli):
    root = _isbi(tmp_path / "isbi")
    save_nifti(root / "training" / "training02" / "masks" / "training02_01_mask1.nii", np.zeros((3, 3, 3), np.uint8))
    result = bench_cli("data", "check", root)
    assert result.code == 2 and "training02_01_mask1.nii: mask shape (3, 3, 3) does not match" in result.err, result


def test_a_study_can_name_a_real_layout(tmp_path):
    from bench.data import prepare_dataset
    from bench.profiles import get_profile

    data = prepare_dataset("isbi2015", {"path": str(_isbi(tmp_path / "isbi")), "mask": "intersection"}, get_profile("smoke"))
    assert len(data.cases) == 3 and data.has_masks and data.has_labels
    with pytest.raises(ConfigError, match="takes"):
        prepare_dataset("msseg2016", {"path": str(tmp_path), "mask": "union"}, get_profile("smoke"))


def test_n4_removes_a_smooth_bias_field():
    from bench.data.preprocess import n4_correct

    image, _ = brain_volume(shape=(32, 32, 32))
    z = np.linspace(0.7, 1.3, 32)[:, None, None]
    biased = image * z
    corrected = n4_correct(biased, (1.0, 1.0, 1.0))
    brain = image > 0
    cv = lambda x: x[brain].std() / x[brain].mean()  # noqa: E731
    assert cv(corrected) < 0.6 * cv(biased)
    assert (corrected[~brain] == 0).all()


def test_data_preprocess_and_synth_cli(tmp_path, bench_cli):
    result = bench_cli("data", "synth", "--out", tmp_path / "cohort", "--size", "24", "--n-ms", "3", "--n-nmosd", "3")
    assert result.code == 0, result
    assert len(read_manifest(tmp_path / "cohort" / "manifest.csv")) == 6
    result = bench_cli("data", "preprocess", tmp_path / "cohort", "--out", tmp_path / "prep", "--size", "16")
    assert result.code == 0, result
    cases = read_manifest(tmp_path / "prep" / "manifest.csv")
    import nibabel as nib

    image = np.asarray(nib.load(str(cases[0].image_path)).dataobj)
    assert len(cases) == 6 and image.shape == (16, 16, 16) and abs(image[image != 0].mean()) < 1e-3
    result = bench_cli("data", "synth", "--out", tmp_path / "x", "--n-ms", "1", "--n-nmosd", "0")
    assert result.code == 2 and "need at least 2 scans" in result.err
