"""A full report over fabricated run directories with a known answer: three arms where the reference
is clearly best, a noise grid, and every output (markers, significance, CD, noise, HTML, LaTeX)."""

import json
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.report import build_report
from bench.study import load_study

ARMS = {"good": 0.80, "mid": 0.70, "bad": 0.45}  # mean DSC; classification quality follows the same order
N_CASES, FOLDS = 40, 4


def _write_runs(root, split_hash="s1", arms=ARMS):
    rng = np.random.default_rng(0)
    labels = np.arange(N_CASES) % 2
    for a, (arm, quality) in enumerate(arms.items()):
        for fold in range(FOLDS):
            unit = root / "fab" / arm / f"fold_{fold}" / "seed_0"
            unit.mkdir(parents=True)
            rows = []
            for case in range(fold * N_CASES // FOLDS, (fold + 1) * N_CASES // FOLDS):  # both labels in every fold
                for sigma in (0.0, 0.1):
                    dsc = float(np.clip(quality - 2 * sigma + 0.05 * rng.standard_normal(), 0, 1))
                    prob = float(np.clip(0.5 + (labels[case] - 0.5) * quality * 1.2 + 0.25 * rng.standard_normal(), 0, 1))
                    rows.append({"study": "fab", "arm": arm, "method": "m", "fold": fold, "seed": 0, "case_id": f"c{case}",
                                 "patient_id": f"p{case}", "site": "A", "label": int(labels[case]), "sigma": sigma,
                                 "prob_nmosd": prob, "pred": int(prob >= 0.5), "dsc": dsc, "ppv": dsc, "tpr": dsc, "vd": 1 - dsc,
                                 "hd95": 10 * (1 - dsc), "assd": 2 * (1 - dsc), "lesion_f1": dsc, "ref_empty": False,
                                 "pred_empty": False, "imputed": False, "spec_hash": f"h{a}{fold}",
                                 "split_hash": split_hash if arm != "bad" else split_hash.replace("X", "Y"),
                                 "code_version": "test"})
            pd.DataFrame(rows).to_parquet(unit / "per_case.parquet")
            spec = {"spec_hash": f"h{a}{fold}", "data_fingerprint": "d", "split_hash": split_hash, "seed": 0, "fold": fold,
                    "noise": [0.0, 0.1],
                    "profile": {"name": "smoke", "size": 32, "epochs": 2, "batch": 2, "width": 0.25, "lr": 0.001}}
            (unit / "spec.json").write_text(json.dumps(spec))
            (unit / "DONE.json").write_text(json.dumps({"spec_hash": f"h{a}{fold}"}))


def _study(tmp_path):
    path = tmp_path / "fab.yaml"
    path.write_text("title: Fabricated study\nfolds: 4\nnoise: [0.0, 0.1]\nreference: good\n"
                    "metrics: [dsc, vd, hd95, acc, sn, auc]\n"
                    "arms:\n  good: {method: m, label: Good}\n  mid: {method: m, label: Mid}\n  bad: {method: m, label: Bad}\n")
    return load_study(str(path), check_methods=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("fab")
    _write_runs(root / "runs")
    return build_report(_study(root), root / "runs", root / "reports")


def test_every_file_is_written(report):
    names = {p.name for p in report.files}
    assert {"table.md", "table.tex", "table.csv", "significance.md", "significance.csv", "versus_reference.csv", "roc.png",
            "roc.pdf", "cd_dsc.png", "cd_dsc.pdf", "cd_acc.png", "noise.png", "noise.pdf", "report.md", "report.html"} <= names
    for path in report.files:
        assert path.stat().st_size > 0, path


def test_markers_follow_the_tests(report):
    vs_ref = pd.read_csv(report.directory / "versus_reference.csv")
    bad_dsc = vs_ref[(vs_ref.arm_a == "bad") & (vs_ref.metric == "dsc")].iloc[0]
    assert bad_dsc["test"] == "Wilcoxon signed-rank" and bad_dsc["p_adj"] < 0.001 and bad_dsc["effect"] < 0
    assert set(vs_ref[vs_ref.metric == "auc"]["test"]) == {"clustered DeLong"}  # patients are the unit by default
    assert set(vs_ref[vs_ref.metric == "acc"]["test"]) == {"McNemar mid-p"}  # every fabricated patient has one scan
    assert "Unit of analysis: patients" in (report.directory / "report.md").read_text()
    assert set(vs_ref[vs_ref.metric == "sn"]["test"]) == {"permutation"}  # SN: arms swapped per patient
    methods = pd.read_csv(report.directory / "method_level.csv")  # the fold-level test, beside the markers
    assert set(methods["test"]) == {"corrected resampled t"} and set(methods["arm_b"]) == {"good"}
    assert set(methods["metric"]) == {"dsc", "vd", "hd95", "acc", "sn", "auc"} and (methods["n"] == FOLDS).all()
    text = (report.directory / "report.md").read_text()
    assert "### Method level: corrected resampled t over folds" in text and "these trained models on these patients" in text
    from bench.spec import code_version

    provenance = json.loads((report.directory / "provenance.json").read_text())
    assert provenance["code version(s)"] == "test" and provenance["code version (report)"] == code_version()
    table = (report.directory / "table.md").read_text()
    bad_row = next(line for line in table.splitlines() if line.startswith("| Bad |"))
    good_row = next(line for line in table.splitlines() if line.startswith("| Good |"))
    assert bad_row.split("|")[2].strip().endswith("†") and "†" not in good_row  # the reference is never marked
    assert good_row.split("|")[2].strip().startswith("**")  # best DSC in bold
    assert "<u>" in next(line for line in table.splitlines() if line.startswith("| Mid |")).split("|")[2]
    assert good_row.split("|")[3].strip().startswith("**")  # VD: lower is better and Good has the lowest


def test_pairwise_table_and_summary(report):
    pairs = pd.read_csv(report.directory / "significance.csv")
    assert len(pairs[pairs.metric == "dsc"]) == 3  # every pair of three arms
    from statsmodels.stats.multitest import multipletests

    dsc = pairs[pairs.metric == "dsc"]
    assert dsc["p_adj"].to_numpy() == pytest.approx(multipletests(dsc["p"], method="holm")[1])
    text = (report.directory / "report.md").read_text()
    assert "Bad has a lower DSC" in text and "Friedman test on DSC (%)" in text and "Holm" in text
    assert "![Noise](noise.png)" in text


def test_html_report(report):
    page = (report.directory / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<table>") >= 3 and '<img src="roc.png"' in page
    assert "<b>" in page and "**" not in page


def test_latex_compiles_and_marks_match_directions(report, tmp_path):
    tex = (report.directory / "table.tex").read_text()
    good = next(line for line in tex.splitlines() if line.startswith("Good &"))
    assert good.split("&")[1].strip().startswith(r"\textbf{") and good.split("&")[2].strip().startswith(r"\textbf{")
    assert r"$^{\dagger}$" in next(line for line in tex.splitlines() if line.startswith("Bad &"))
    engine = shutil.which("pdflatex")
    if engine is None:
        pytest.skip("no LaTeX engine installed (make test installs one under CI or with INSTALL_LATEX=1)")
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                   f"\\input{{{report.directory / 'table.tex'}}}\n\\end{{document}}\n")
    proc = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0


def test_report_refuses_different_split_hashes(tmp_path):
    _write_runs(tmp_path / "runs", split_hash="sX")
    with pytest.raises(BenchError, match="different splits"):
        build_report(_study(tmp_path), tmp_path / "runs", tmp_path / "reports")


def test_cliques_join_only_non_significant_runs():
    from bench.report.figures import cliques

    order = ["a", "b", "c", "d"]
    pairs = [("a", "b", 0.5), ("a", "c", 0.01), ("b", "c", 0.3), ("a", "d", 0.001), ("b", "d", 0.001), ("c", "d", 0.2)]
    assert cliques(order, pairs, 0.05) == [(0, 1), (1, 2), (2, 3)]
    assert cliques(order, [(x, y, 0.9) for i, x in enumerate(order) for y in order[i + 1:]], 0.05) == [(0, 3)]


def test_seeds_are_averaged_per_case_not_counted_as_cases():
    from bench.report.significance import compare

    rows = []
    for arm, shift in (("a", 0.1), ("b", 0.0)):
        for seed in (0, 1):
            for case in range(12):
                rows.append({"arm": arm, "seed": seed, "sigma": 0.0, "case_id": f"c{case}", "split_hash": "s",
                             "dsc": 0.5 + shift + 0.01 * case + 0.001 * seed})
    res = compare(pd.DataFrame(rows), "a", "b", "dsc")
    assert res.n == 12 and res.effect == pytest.approx(0.1)


def test_noise_tables_at_every_sigma_with_their_own_tests(report):
    out = report.directory
    noise = pd.read_csv(out / "noise_table.csv")
    assert list(noise["sigma"].unique()) == [0.1] and list(noise["label"]) == ["Good", "Mid", "Bad"]
    per_case = pd.concat(pd.read_parquet(p) for p in out.parent.parent.glob("runs/fab/*/fold_*/seed_0/per_case.parquet"))
    good = per_case[(per_case["arm"] == "good") & (per_case["sigma"] == 0.1)]
    assert noise.loc[noise["arm"] == "good", "dsc_mean"].item() == pytest.approx(good.groupby("fold")["dsc"].mean().mean())
    # DSC 0.45 − 0.2 against 0.80 − 0.2 on 40 paired cases: Bad differs from the reference at σ = 0.1 too
    assert "dsc" in noise.loc[noise["arm"] == "bad", "significant_vs_reference"].item().split(",")
    markdown = (out / "noise_table.md").read_text()
    assert "**σ = 0.1**" in markdown and "†" in markdown
    assert (out / "noise_table.tex").read_text().count(r"\toprule") == 1
    text = (out / "report.md").read_text()
    assert "## Robustness to Gaussian noise" in text and "**σ = 0.1**" in text


def test_calibration_table_without_evidential_arms(report):
    table = pd.read_csv(report.directory / "uncertainty.csv")
    assert list(table["label"]) == ["Good", "Mid", "Bad"] and (table["ece_mean"] >= 0).all()
    assert "u_correct" not in table  # no arm reports an uncertainty
    folds = pd.read_csv(report.directory / "folds.csv")
    clean = folds[(folds["arm"] == "mid") & (folds["sigma"] == 0)]
    assert table.loc[table["arm"] == "mid", "brier_mean"].item() == pytest.approx(clean["brier"].mean())


def test_pooled_auc_carries_a_patient_bootstrap_interval(report):
    from bench.stats import cluster_bootstrap_auc

    per_case = pd.concat(pd.read_parquet(p) for p in report.directory.parent.parent.glob("runs/fab/good/*/*/per_case.parquet"))
    clean = per_case[per_case.sigma == 0]
    auc, low, high = cluster_bootstrap_auc(clean.label, clean.prob_nmosd, clean.patient_id)
    table = pd.read_csv(report.directory / "table.csv").set_index("arm")
    assert table.loc["good", "auc_pooled"] == pytest.approx(auc)
    assert (table.loc["good", "auc_ci_low"], table.loc["good", "auc_ci_high"]) == pytest.approx((low, high))
    text = (report.directory / "report.md").read_text()
    assert f"Good {100 * auc:.1f} [{100 * low:.1f}, {100 * high:.1f}]" in text and "resamples of patients" in text


def test_arms_without_a_shared_training_seed_get_a_flagged_row_not_a_crash(tmp_path):
    from bench.report.significance import compare

    _write_runs(tmp_path / "runs")
    per_case = pd.concat(pd.read_parquet(p) for p in (tmp_path / "runs").glob("fab/*/*/*/per_case.parquet"))
    per_case.loc[per_case.arm == "mid", "seed"] = 1
    res = compare(per_case, "good", "mid", "auc")
    assert res.test == "DeLong (undefined: no training seed shared)" and math.isnan(res.p)


def test_building_a_report_imports_no_torch(tmp_path):
    """A report reads run directories only: importing torch (seconds) for it would slow every `bench report`."""
    from conftest import modules_loaded_by

    _write_runs(tmp_path / "runs")
    _study(tmp_path)
    code = ("from pathlib import Path; from bench.report import build_report; from bench.study import load_study; "
            f"build_report(load_study({str(tmp_path / 'fab.yaml')!r}, check_methods=False), Path({str(tmp_path / 'runs')!r}), "
            f"Path({str(tmp_path / 'out')!r}))")
    assert modules_loaded_by(code, "torch") == []


def test_a_rebuild_deletes_only_the_outputs_it_no_longer_writes(tmp_path):
    _write_runs(tmp_path / "runs")
    first = build_report(_study(tmp_path), tmp_path / "runs", tmp_path / "reports")
    out = first.directory
    for name in ("noise.png", "noise_table.md", "cd_dsc.png", "cd_acc.pdf", "method_level.csv"):
        assert (out / name).exists(), name
    (out / "efficiency_cpu.md").write_text("measured by bench perf\n")  # not the report's: kept
    (out / "notes.txt").write_text("mine\n")
    for name in ("tuning.md", "learnability.csv", "learning.png"):  # as a build of an earlier study version left them
        (out / name).write_text("old\n")
    # The same runs, now two arms (no CD diagram) and classification only; the runs' noise grid is still drawn.
    path = tmp_path / "fab.yaml"
    path.write_text("title: Fabricated study\nfolds: 4\nreference: good\nmetrics: [acc, sn]\n"
                    "arms:\n  good: {method: m, label: Good}\n  mid: {method: m, label: Mid}\n")
    again = build_report(load_study(str(path), check_methods=False), tmp_path / "runs", tmp_path / "reports")
    left = {p.name for p in out.iterdir()}
    for name in ("cd_dsc.png", "cd_dsc.pdf", "cd_acc.png", "cd_acc.pdf", "tuning.md", "learnability.csv", "learning.png"):
        assert name not in left, name
    assert {"efficiency_cpu.md", "notes.txt", "table.md", "report.md", "method_level.csv", "noise.png"} <= left
    assert {p.name for p in again.files} <= left
    assert "Efficiency" in (out / "report.md").read_text()  # the kept bench perf table is still read


def test_a_rebuild_without_the_reference_leaves_no_stale_method_level_table(tmp_path):
    _write_runs(tmp_path / "runs")
    study = _study(tmp_path)
    first = build_report(study, tmp_path / "runs", tmp_path / "reports")
    assert (first.directory / "method_level.csv").exists()
    shutil.rmtree(tmp_path / "runs" / "fab" / "good")  # the reference arm's units are gone
    again = build_report(study, tmp_path / "runs", tmp_path / "reports")
    assert not (again.directory / "method_level.csv").exists()
    assert "Method level" not in (again.directory / "report.md").read_text()
