"""Results-store status transitions, stale archiving, table ranking and output formats."""

import math

import pandas as pd
import pytest

from bench.report.tables import rank_marks, summary_table, to_latex, to_markdown
from bench.store import DONE, archive_stale, unit_status, write_json_atomic


def test_unit_status_transitions(tmp_path):
    unit = tmp_path / "study" / "arm" / "fold_0" / "seed_0"
    assert unit_status(unit, "h1") == "missing"
    unit.mkdir(parents=True)
    (unit / "history.csv").write_text("epoch\n1\n")
    assert unit_status(unit, "h1") == "partial"
    write_json_atomic(unit / DONE, {"spec_hash": "h1"})
    assert unit_status(unit, "h1") == "done"
    assert unit_status(unit, "h2") == "stale"
    moved = archive_stale(unit, tmp_path / "study")
    assert not unit.exists() and (moved / DONE).exists() and ".stale" in moved.parts


@pytest.mark.parametrize(
    "values, direction, expected",
    [
        ([0.7, 0.9, 0.8], "max", ["", "best", "second"]),
        ([0.7, 0.9, 0.8], "min", ["best", "", "second"]),
        ([0.5, math.nan, 0.5], "max", ["best", "", "best"]),
        ([math.nan], "max", [""]),
    ],
)
def test_rank_marks(values, direction, expected):
    assert rank_marks(values, direction) == expected


def _folds():
    rows = []
    for arm, dsc, vd in (("a", (0.6, 0.8), (0.2, 0.4)), ("b", (0.7, 0.7), (0.1, 0.1))):
        for fold in range(2):
            rows.append({"arm": arm, "fold": fold, "seed": 0, "sigma": 0.0, "dsc": dsc[fold], "vd": vd[fold], "n_imputed": 1})
    return pd.DataFrame(rows)


def test_summary_table_mean_std():
    folds = _folds()
    pooled = folds.groupby(["arm", "sigma"], as_index=False)[["dsc", "vd"]].mean()
    table = summary_table(folds, pooled, ["a", "b"], ["dsc", "vd"])
    assert table.loc[0, "dsc_mean"] == pytest.approx(0.7) and table.loc[0, "dsc_std"] == pytest.approx(0.1414213)
    assert table.loc[1, "dsc_std"] == pytest.approx(0.0) and table.loc[0, "n_imputed"] == 2


def test_bold_and_underline_follow_metric_direction():
    folds = _folds()
    pooled = folds.groupby(["arm", "sigma"], as_index=False)[["dsc", "vd"]].mean()
    table = summary_table(folds, pooled, ["a", "b"], ["dsc", "vd"])
    md = to_markdown(table, ["A", "B"], ["dsc", "vd"])
    # DSC tie at 70.00 → both bold; VD lower is better → B (10.00) bold, A (30.00) underlined
    assert "| A | **70.00 ± 14.14** | <u>30.00 ± 14.14</u> |" in md
    assert "| B | **70.00 ± 0.00** | **10.00 ± 0.00** |" in md
    tex = to_latex(table, ["A", "B"], ["dsc", "vd"], "Cap 5%")
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"DSC (\%)" in tex and r"Cap 5\%" in tex
    assert r"A & \textbf{70.00 $\pm$ 14.14} & \underline{30.00 $\pm$ 14.14} \\" in tex
