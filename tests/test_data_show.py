"""`bench data show` and `bench data synth`: subject and slice choice, the figure, the CLI flags."""

import json
from pathlib import Path

import numpy as np

from bench.data.manifest import Case, read_manifest
from bench.data.show import axial_slices, choose_subjects


def _case(scan, patient, label):
    return Case(scan, patient, "0", label, "A", Path("x"), Path("m"))


def test_choose_subjects_by_lesion_volume_quantiles_one_per_patient():
    cases = [_case(f"s{i}", f"p{i}", 0) for i in range(10)] + [_case("s10", "p0", 0)]  # p0 has two scans
    cases += [_case(f"n{i}", f"q{i}", 1) for i in range(5)]
    volumes = {f"s{i}": float(i) for i in range(10)} | {"s10": 99.0} | {f"n{i}": [0, 0, 1, 2, 3][i] for i in range(5)}
    chosen = choose_subjects(cases, volumes, per_class=3)
    ms = [c.scan_id for c in chosen if c.label == 0]
    nmosd = [c.scan_id for c in chosen if c.label == 1]
    # MS: no lesion-free scan (s0 has volume 0 but is p0's first scan), so 2 quantile picks + the lesion-free one
    assert ms == ["s3", "s7", "s0"]  # centred quantiles (i + ½)/2 of the 9 scans with lesions
    assert nmosd == ["n2", "n4", "n0"]
    assert len({c.patient_id for c in chosen}) == len(chosen)


def test_axial_slices_pick_the_most_lesioned_slices_apart():
    mask = np.zeros((8, 8, 20), bool)
    mask[2:6, 2:6, 5] = True  # 16 voxels
    mask[2:5, 2:5, 6] = True  # 9, too close to 5
    mask[2:4, 2:4, 12] = True  # 4
    assert axial_slices(mask, 2, gap=3) == [5, 12]
    assert axial_slices(np.zeros((4, 4, 4), bool), 3, gap=1) == []


def test_synth_and_show_cli(tmp_path, bench_cli):
    out = tmp_path / "cohort"
    result = bench_cli("data", "synth", "--out", out, "--size", "24", "--n-ms", "4", "--n-nmosd", "4", "--difficulty",
                       "0.5", "--coupling", "0", "--longitudinal", "", "--jobs", "1")
    assert result.code == 0, result
    assert "8 scans at 24³" in result.out
    cases = read_manifest(out / "manifest.csv")
    assert len(cases) == 8 and len({c.patient_id for c in cases}) == 8
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["config"]["difficulty"] == 0.5 and description["config"]["site_class_coupling"] == 0.0
    result = bench_cli("data", "show", out, "--out", tmp_path / "fig.png", "--per-class", "2", "--slices", "2")
    assert result.code == 0, result
    from matplotlib.image import imread

    image = imread(tmp_path / "fig.png")
    assert image.shape[0] > 200 and (tmp_path / "fig.pdf").exists()
    result = bench_cli("data", "synth", "--out", tmp_path / "bad", "--longitudinal", "4,x")
    assert result.code != 0 and "--longitudinal" in result.err
