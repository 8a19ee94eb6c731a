"""The end-to-end null check through the real CLI on `smoke`: the same method as two arms, one trained with
other seeds (`seed_offset`), over repeated runs with different folds, is declared significantly different
in no more than α of the metrics (docs/statistics.md, "Calibration")."""

from __future__ import annotations

import pandas as pd
from conftest import REPO, bench_in_process

METRICS = ["dsc", "dsc_lesion", "ppv", "tpr", "lesion_f1", "acc", "sn", "sp", "auc"]
SPLIT_SEEDS = (0, 1, 2)
STUDY = """include: {base}
title: Null control (the joint model against itself, other training seeds)
profile: smoke
folds: 3
split_seed: {split_seed}
metrics: [{metrics}]
reference: same
arms:
  same: {{method: joint_model, label: Joint model}}
  other_seeds: {{method: joint_model, label: Joint model (other seeds), seed_offset: 1000}}
"""


def test_the_same_method_with_other_seeds_is_not_declared_different(tmp_path):
    rows = []
    for split_seed in SPLIT_SEEDS:
        name = f"null_control_{split_seed}"
        study = tmp_path / f"{name}.yaml"
        study.write_text(STUDY.format(base=REPO / "studies" / "_base.yaml", split_seed=split_seed,
                                      metrics=", ".join(METRICS)))
        runs, reports = tmp_path / "runs", tmp_path / "reports"
        bench_in_process("run", "--study", study, "--jobs", "2", "--runs-dir", runs)
        bench_in_process("report", study, "--runs-dir", runs, "--out", reports)
        versus = pd.read_csv(reports / name / "versus_reference.csv")
        assert set(versus["arm_a"]) == {"other_seeds"}
        rows.append(versus.assign(split_seed=split_seed))
        specs = {p.parent.name: p.read_text() for p in (runs / name / "other_seeds").glob("fold_*/seed_*/spec.json")}
        assert specs and all('"seed_offset": 1000' in text for text in specs.values())
    frame = pd.concat(rows, ignore_index=True)
    tested = frame.dropna(subset=["p_adj"])
    significant = tested[tested["p_adj"] < 0.05]
    assert len(tested) >= len(SPLIT_SEEDS) * 5, frame[["split_seed", "metric", "test", "p"]]
    # the two arms really differ (other seeds train other models), yet no more than α of the tests find it
    assert (frame["effect"].abs() > 0).any()
    assert len(significant) <= 0.05 * len(tested), significant[["split_seed", "metric", "test", "effect", "p_adj"]]
