"""`bench calibrate`: the simulation computes each test as the report does, patient-level tests hold α where
per-scan ones do not, power grows with the planted effect, and the CLI writes reports/calibration/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from bench.aggregate import fold_metrics
from bench.calibrate import Noise, default_designs, p_values, simulate, values
from bench.report.significance import compare, fold_test


@pytest.fixture(scope="module")
def designs():
    return {d.name: d for d in default_designs()}


def _per_case(d, seg, logit) -> pd.DataFrame:
    """The simulated study as the report's per-case rows (arms 0 and 1)."""
    rows = []
    for arm in (0, 1):
        for q in range(d.repeats):
            for s in range(d.seeds):
                for i in range(len(d.label)):
                    prob = 1 / (1 + np.exp(-logit[arm, i, q, s]))
                    rows.append({"study": "sim", "arm": f"a{arm}", "method": "m", "fold": q * d.folds + d.fold[q, i],
                                 "seed": s, "repeat": q, "sigma": 0.0, "case_id": f"c{i}", "patient_id": f"p{d.patient[i]}",
                                 "label": int(d.label[i]), "prob_nmosd": prob, "pred": int(logit[arm, i, q, s] >= 0),
                                 "dsc": seg[arm, i, q, s], "imputed": False, "ref_empty": False, "split_hash": "s"})
    return pd.DataFrame(rows)


def test_the_simulation_computes_each_test_as_the_report(designs):
    d = designs["longitudinal cohort, 3 repeats × 3 seeds"]
    seg, logit = values(d, Noise(), np.random.default_rng(3), seg_effect=0.01, cls_effect=0.2)
    p = p_values(d, seg, logit, n_perm=4000)  # the report's permutation count and seed
    frame = _per_case(d, seg, logit)
    folds = fold_metrics(frame)
    assert compare(frame, "a1", "a0", "dsc").p == pytest.approx(p["wilcoxon_patient"], rel=1e-9)
    assert compare(frame, "a1", "a0", "dsc", unit="scan").p == pytest.approx(p["wilcoxon_scan"], rel=1e-9)
    assert compare(frame, "a1", "a0", "auc").p == pytest.approx(p["delong_clustered"], rel=1e-9)
    assert compare(frame, "a1", "a0", "acc").p == pytest.approx(p["mcnemar_clustered"], rel=1e-9)
    assert fold_test(frame, folds, "a1", "a0", "bacc").p == pytest.approx(p["corrected_t"], rel=1e-9)
    # the same permutation test on the same predictions; the random swaps follow another patient order
    assert compare(frame, "a1", "a0", "bacc").test == "clustered permutation"
    assert compare(frame, "a1", "a0", "bacc").p == pytest.approx(p["permutation_patient"], abs=0.02)


def test_patients_hold_alpha_where_scans_do_not_and_power_grows(designs):
    d = designs["longitudinal cohort (ISBI-like)"]
    null = simulate(d, Noise(), 200, seed=11)
    assert null["wilcoxon_patient"] <= 0.09 and null["delong_clustered"] <= 0.09
    assert null["wilcoxon_scan"] > null["wilcoxon_patient"] + 0.04  # 4–5 correlated scans counted as 4–5 patients
    assert null["delong_scan"] > null["delong_clustered"] + 0.04
    assert null["permutation_patient"] <= 0.09 and null["permutation_scan"] > null["permutation_patient"] + 0.02
    strong = simulate(designs["default cohort"], Noise(), 100, seed=12, seg_effect=0.05, cls_effect=1.0)
    assert strong["wilcoxon_patient"] > 0.9 and strong["delong_clustered"] > 0.5


def test_bench_calibrate_writes_its_report(tmp_path):
    bench = str(Path(sys.executable).with_name("bench"))
    proc = subprocess.run([bench, "calibrate", "--replicates", "50", "--jobs", "2", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "calibration"
    for name in ("calibration.md", "type1.md", "type1.csv", "power.csv", "power.png", "power.pdf", "model.json"):
        assert (out / name).stat().st_size > 0, name
    type1 = pd.read_csv(out / "type1.csv")
    assert set(type1["null"]) == {"trained-model null", "method null", "method null, strong training-set dependence"}
    assert len(set(type1["design"])) == 5 and (type1["replicates"] == 50).all()
    assert type1["rate"].between(0, 1).all() and (type1["ci_low"] <= type1["rate"]).all()
    text = (out / "calibration.md").read_text()
    assert "## Verdict" in text and "Wilcoxon signed-rank on patients" in text
