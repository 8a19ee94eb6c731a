"""Which arms differ: every pairwise comparison per metric, with the test docs/statistics.md assigns to it.

Segmentation metrics: Wilcoxon signed-rank on per-case values (paired by case; with several
training seeds each arm's values are first averaged over seeds, since cases, not seeds, are the
independent units) with a bootstrap CI. AUC: DeLong on the pooled out-of-fold predictions. ACC: exact McNemar on pooled
out-of-fold correctness. Other classification metrics: Nadeau–Bengio corrected resampled t-test
on per-fold values. All at one noise σ (0 unless the noise section asks for another: every σ of the
grid is a paired comparison on identical noisy inputs). With several training seeds, DeLong and McNemar use the smallest
seed shared by both arms (they need one prediction per case); the corrected t-test pairs every
(fold, seed), as Nadeau and Bengio's repeated cross-validation intends.
p-values are adjusted per metric family: over the comparisons with the reference arm for the table
markers, over all pairs for the pairwise table.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from bench.metrics import METRICS
from bench.stats import (
    TestResult,
    adjust,
    average_ranks,
    corrected_ttest,
    delong_test,
    friedman,
    mcnemar_exact,
    require_same_split,
    wilcoxon_paired,
)

__all__ = ["compare", "pairwise_table", "versus_reference", "friedman_summary", "block_matrix"]
_COLUMNS = ["metric", "arm_a", "arm_b", "test", "statistic", "p", "effect", "ci_low", "ci_high", "n"]


def _has(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and frame[column].notna().any()


def compare(per_case: pd.DataFrame, folds: pd.DataFrame, arm_a: str, arm_b: str, metric: str,
            sigma: float = 0.0) -> TestResult | None:
    """The paired test of ``metric`` between two arms at noise ``sigma`` (None if an arm lacks the metric)."""
    clean = per_case[per_case["sigma"] == sigma]
    a, b = clean[clean["arm"] == arm_a], clean[clean["arm"] == arm_b]
    require_same_split(a["split_hash"], b["split_hash"])
    info = METRICS[metric]
    if info.task == "seg":
        if not (_has(a, metric) and _has(b, metric)):
            return None
        mean_a, mean_b = (x.groupby("case_id", as_index=False)[metric].mean() for x in (a, b))
        pairs = mean_a.merge(mean_b, on="case_id", suffixes=("_a", "_b")).dropna()  # dsc_lesion: lesion scans only
        return wilcoxon_paired(pairs[f"{metric}_a"], pairs[f"{metric}_b"]) if len(pairs) >= 2 else None
    if not (_has(a, "prob_nmosd") and _has(b, "prob_nmosd")):
        return None
    if metric in ("auc", "acc"):
        shared = set(a["seed"]) & set(b["seed"])
        if not shared:  # one prediction per case is needed from each arm, from the same training seed
            name = "DeLong" if metric == "auc" else "exact McNemar"
            return TestResult(f"{name} (undefined: no training seed shared)", float("nan"), float("nan"))
        seed = min(shared)
        pairs = a[a["seed"] == seed].merge(b[b["seed"] == seed], on="case_id", suffixes=("_a", "_b"))
        pairs = pairs[pairs["label_a"] >= 0]
        if metric == "auc":
            return delong_test(pairs["label_a"], pairs["prob_nmosd_a"], pairs["prob_nmosd_b"])
        return mcnemar_exact(pairs["pred_a"] == pairs["label_a"], pairs["pred_b"] == pairs["label_b"])
    fa, fb = (folds[(folds["arm"] == arm) & (folds["sigma"] == sigma)] for arm in (arm_a, arm_b))
    pairs = fa.merge(fb, on=["fold", "seed"], suffixes=("_a", "_b"))
    n_test = float(pairs["n_cases_a"].mean())
    n_total = float(a[a["seed"] == a["seed"].min()]["case_id"].nunique())
    return corrected_ttest(pairs[f"{metric}_a"] - pairs[f"{metric}_b"], n_train=n_total - n_test, n_test=n_test)


def _rows(per_case, folds, pairs, metrics, sigma: float = 0.0) -> pd.DataFrame:
    rows = []
    for metric in metrics:
        for arm_a, arm_b in pairs:
            res = compare(per_case, folds, arm_a, arm_b, metric, sigma)
            if res is not None:
                rows.append({"metric": metric, "arm_a": arm_a, "arm_b": arm_b, "test": res.test, "statistic": res.statistic,
                             "p": res.p, "effect": res.effect, "ci_low": res.ci_low, "ci_high": res.ci_high, "n": res.n})
    return pd.DataFrame(rows, columns=_COLUMNS)


def _adjusted(table: pd.DataFrame, correction: str) -> pd.DataFrame:
    table = table.copy()
    table["p_adj"] = np.nan
    for _, idx in table.groupby("metric").groups.items():
        table.loc[idx, "p_adj"] = adjust(table.loc[idx, "p"].to_numpy(), correction)
    return table


def pairwise_table(per_case, folds, arms: Sequence[str], metrics: Sequence[str], correction: str) -> pd.DataFrame:
    """Every pair of arms × every metric both have, p adjusted over all pairs of the metric."""
    return _adjusted(_rows(per_case, folds, list(combinations(arms, 2)), metrics), correction)


def versus_reference(per_case, folds, arms, reference: str, metrics, correction: str, sigma: float = 0.0) -> pd.DataFrame:
    """Each arm against the reference at noise ``sigma``, p adjusted over those comparisons per metric."""
    return _adjusted(_rows(per_case, folds, [(a, reference) for a in arms if a != reference], metrics, sigma),
                     correction)


def block_matrix(per_case, folds, arms, metric) -> tuple[list[str], np.ndarray]:
    """Arms having ``metric`` and a blocks × arms matrix (blocks: cases for seg, folds for cls)."""
    info = METRICS[metric]
    if info.task == "seg":
        frame, keys = per_case[per_case["sigma"] == 0], ["case_id"]  # seeds averaged per case
    else:
        frame, keys = folds[folds["sigma"] == 0], ["fold", "seed"]
    present = [a for a in arms if _has(frame[frame["arm"] == a], metric)]
    if not present:
        return [], np.empty((0, 0))
    wide = frame[frame["arm"].isin(present)].pivot_table(index=keys, columns="arm", values=metric).dropna()
    return present, wide[present].to_numpy()


def friedman_summary(per_case, folds, arms, metric, correction: str) -> dict | None:
    """Friedman test, average ranks and pairwise Wilcoxon–Holm on the blocks, for ≥ 3 arms with ``metric``."""
    present, matrix = block_matrix(per_case, folds, arms, metric)
    if len(present) < 3 or matrix.shape[0] < 2:
        return None
    direction = METRICS[metric].direction
    pairs = list(combinations(range(len(present)), 2))
    raw = [wilcoxon_paired(matrix[:, i], matrix[:, j]).p for i, j in pairs]
    adjusted = adjust(raw, correction)
    return {"metric": metric, "arms": present, "ranks": average_ranks(matrix, direction), "test": friedman(matrix),
            "n_blocks": matrix.shape[0], "pairs": [(present[i], present[j], p) for (i, j), p in zip(pairs, adjusted)]}
