"""Which arms differ: every pairwise comparison per metric, with the test docs/statistics.md assigns to it.

The unit of analysis is the patient by default (``analysis_unit: patient``; ``scan`` treats every scan as
independent, the papers' practice). A longitudinal patient's scans are correlated, so:

- segmentation metrics: Wilcoxon signed-rank on per-patient values (each scan's value averaged over
  training seeds and repeats, then over the patient's scans), with a bootstrap CI of the mean difference;
- AUC: Obuchowski's clustered DeLong test on the pooled out-of-fold predictions (one training seed: the
  smallest both arms have; one repeat: the first), patients as clusters;
- ACC: McNemar's mid-p test as a sign-flip test on each patient's discordant scans (the plain McNemar
  mid-p test with one scan per patient; the exact conditional test is too conservative);
- other classification metrics (SN, SP, F1, BACC, ECE, Brier): a paired permutation test on the same pooled
  predictions, the arms' predictions swapped per patient (:func:`bench.stats.paired_permutation_test`).

Each of these compares the two arms' *trained models* on the patients at hand, and ``bench calibrate`` shows
they hold α under that null. :func:`method_level` adds, for every metric, the Nadeau–Bengio corrected resampled
t-test on per-fold values averaged over training seeds, over the k × r folds of ``repeats: r`` repeated
cross-validations (seeds of one partition are not repeats: they share the test sets): a claim about the
*methods*, whose error rate depends on how much a model depends on the scans it was trained on, which one
dataset cannot tell (docs/statistics.md). It is reported beside the table, not used for its markers.

All at one noise σ (0 unless the noise section asks for another: every σ of the grid is a paired
comparison on identical noisy inputs). p-values are adjusted per metric family: over the comparisons with
the reference arm for the table markers, over all pairs for the pairwise table. ``bench calibrate``
(:mod:`bench.calibrate`) measures these tests' error rates on the suite's design.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from bench.metrics import METRICS
from bench.stats import (
    TestResult,
    adjust,
    average_ranks,
    clustered_mcnemar,
    corrected_ttest,
    delong_test,
    friedman,
    paired_permutation_test,
    require_same_split,
    wilcoxon_paired,
)

__all__ = ["compare", "method_level", "pairwise_table", "versus_reference", "friedman_summary", "block_matrix", "UNITS",
           "unit_values", "unit_sentence"]
UNITS = ("patient", "scan")
_COLUMNS = ["metric", "arm_a", "arm_b", "test", "statistic", "p", "effect", "ci_low", "ci_high", "n"]


def _has(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and frame[column].notna().any()


def unit_values(rows: pd.DataFrame, metric: str, unit: str) -> pd.Series:
    """``metric`` per analysis unit: each scan's value averaged over training seeds and repeats, then (for
    ``patient``) over the patient's scans; NaN values (``dsc_lesion`` of a lesion-free scan) are left out."""
    per_scan = rows.dropna(subset=[metric]).groupby("case_id")[metric].mean()
    if unit == "scan" or "patient_id" not in rows:  # rows without patients: each scan is its own patient
        return per_scan
    patient = rows.drop_duplicates("case_id").set_index("case_id")["patient_id"]
    return per_scan.groupby(patient.reindex(per_scan.index).to_numpy()).mean()


def unit_sentence(unit: str, repeats: int, seeds: int) -> str:
    """The report footnote naming the unit of analysis and what counts as a repeat."""
    who = ("patients (a patient's scans averaged, or clustered for the classification metrics)" if unit == "patient"
           else "scans (each scan independent)")
    folds = (f"{repeats} repeated cross-validations (k × {repeats} folds) in the method-level corrected t-test"
             if repeats > 1 else "the k folds in the method-level corrected t-test (no repeated cross-validation)")
    return (f"Unit of analysis: {who}; segmentation tests average a scan over training seeds and repeats, "
            "classification tests take one prediction per scan (the smallest training seed both arms have, the first "
            f"repeat); {folds}; {seeds} training seed(s) per fold, never counted as independent repeats.")


def _one_prediction(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame | None:
    """Per case one prediction of each arm (the smallest shared training seed, the first repeat), merged."""
    shared = set(a["seed"]) & set(b["seed"])
    if not shared:
        return None
    seed = min(shared)
    a, b = a[a["seed"] == seed], b[b["seed"] == seed]
    if "repeat" in a:
        a, b = a[a["repeat"] == 0], b[b["repeat"] == 0]
    pairs = a.merge(b, on="case_id", suffixes=("_a", "_b"))
    return pairs[pairs["label_a"] >= 0]


def compare(per_case: pd.DataFrame, arm_a: str, arm_b: str, metric: str, sigma: float = 0.0,
            unit: str = "patient") -> TestResult | None:
    """The paired test of ``metric`` between two arms at noise ``sigma`` (None if an arm lacks the metric)."""
    if unit not in UNITS:
        raise ValueError(f"unit of analysis must be one of {UNITS}, got {unit!r}")
    clean = per_case[per_case["sigma"] == sigma]
    a, b = clean[clean["arm"] == arm_a], clean[clean["arm"] == arm_b]
    require_same_split(a["split_hash"], b["split_hash"])
    info = METRICS[metric]
    if info.task == "seg":
        if not (_has(a, metric) and _has(b, metric)):
            return None
        pairs = pd.concat([unit_values(a, metric, unit).rename("a"), unit_values(b, metric, unit).rename("b")],
                          axis=1).dropna()  # dsc_lesion: units with lesion scans only
        return wilcoxon_paired(pairs["a"], pairs["b"]) if len(pairs) >= 2 else None
    if not (_has(a, "prob_nmosd") and _has(b, "prob_nmosd")):
        return None
    pairs = _one_prediction(a, b)
    if pairs is None:  # one prediction per case is needed from each arm, from the same training seed
        name = {"auc": "DeLong", "acc": "McNemar"}.get(metric, "permutation")
        return TestResult(f"{name} (undefined: no training seed shared)", float("nan"), float("nan"))
    clusters = pairs["patient_id_a"].to_numpy() if unit == "patient" and "patient_id_a" in pairs else None
    if metric == "auc":
        return delong_test(pairs["label_a"], pairs["prob_nmosd_a"], pairs["prob_nmosd_b"], clusters=clusters)
    if metric == "acc":
        correct_a, correct_b = pairs["pred_a"] == pairs["label_a"], pairs["pred_b"] == pairs["label_b"]
        return clustered_mcnemar(correct_a, correct_b, np.arange(len(pairs)) if clusters is None else clusters)
    return paired_permutation_test(pairs["label_a"], pairs["prob_nmosd_a"], pairs["prob_nmosd_b"], metric, clusters)


def fold_test(per_case: pd.DataFrame, folds: pd.DataFrame, arm_a: str, arm_b: str, metric: str,
              sigma: float = 0.0) -> TestResult | None:
    """The corrected resampled t-test of ``metric``'s per-fold values (training seeds averaged, k × r folds)."""
    fa, fb = (folds[(folds["arm"] == arm) & (folds["sigma"] == sigma)] for arm in (arm_a, arm_b))
    if not (_has(fa, metric) and _has(fb, metric)):
        return None
    clean = per_case[per_case["sigma"] == sigma]
    require_same_split(clean.loc[clean["arm"].isin([arm_a, arm_b]), "split_hash"])
    clean = clean[clean["arm"] == arm_a]
    pairs = fa.merge(fb, on=["fold", "seed"], suffixes=("_a", "_b"))
    per_fold = pairs.groupby("fold")[[f"{metric}_a", f"{metric}_b", "n_cases_a"]].mean()  # seeds averaged
    n_test = float(per_fold["n_cases_a"].mean())
    n_total = float(clean[clean["seed"] == clean["seed"].min()]["case_id"].nunique())
    return corrected_ttest(per_fold[f"{metric}_a"] - per_fold[f"{metric}_b"], n_train=n_total - n_test, n_test=n_test)


def _result_row(metric: str, arm_a: str, arm_b: str, res: TestResult) -> dict:
    return {"metric": metric, "arm_a": arm_a, "arm_b": arm_b, "test": res.test, "statistic": res.statistic, "p": res.p,
            "effect": res.effect, "ci_low": res.ci_low, "ci_high": res.ci_high, "n": res.n}


def _rows(pairs, metrics, test: Callable[[str, str, str], TestResult | None]) -> pd.DataFrame:
    """``test(arm_a, arm_b, metric)`` of every pair × metric, one row each (None: the pair lacks the metric)."""
    rows = []
    for metric in metrics:
        for arm_a, arm_b in pairs:
            res = test(arm_a, arm_b, metric)
            if res is not None:
                rows.append(_result_row(metric, arm_a, arm_b, res))
    return pd.DataFrame(rows, columns=_COLUMNS)


def _adjusted(table: pd.DataFrame, correction: str) -> pd.DataFrame:
    table = table.copy()
    table["p_adj"] = np.nan
    for _, idx in table.groupby("metric").groups.items():
        table.loc[idx, "p_adj"] = adjust(table.loc[idx, "p"].to_numpy(), correction)
    return table


def pairwise_table(per_case, arms: Sequence[str], metrics: Sequence[str], correction: str,
                   unit: str = "patient") -> pd.DataFrame:
    """Every pair of arms × every metric both have, p adjusted over all pairs of the metric."""
    return _adjusted(_rows(list(combinations(arms, 2)), metrics,
                           lambda a, b, metric: compare(per_case, a, b, metric, unit=unit)), correction)


def versus_reference(per_case, arms, reference: str, metrics, correction: str, sigma: float = 0.0,
                     unit: str = "patient") -> pd.DataFrame:
    """Each arm against the reference at noise ``sigma``, p adjusted over those comparisons per metric."""
    return _adjusted(_rows([(a, reference) for a in arms if a != reference], metrics,
                           lambda a, b, metric: compare(per_case, a, b, metric, sigma, unit)), correction)


def method_level(per_case, folds, arms, reference: str, metrics, correction: str) -> pd.DataFrame:
    """Each arm against the reference by :func:`fold_test` on every metric, p adjusted per metric."""
    return _adjusted(_rows([(a, reference) for a in arms if a != reference], metrics,
                           lambda a, b, metric: fold_test(per_case, folds, a, b, metric)), correction)


def block_matrix(per_case, folds, arms, metric, unit: str = "patient") -> tuple[list[str], np.ndarray]:
    """Arms having ``metric`` and a blocks × arms matrix: for segmentation the units of analysis (patients or
    scans, as the pairwise tests), for classification the folds (training seeds averaged, as the corrected t)."""
    info = METRICS[metric]
    if info.task == "seg":
        clean = per_case[per_case["sigma"] == 0]
        present = [a for a in arms if _has(clean[clean["arm"] == a], metric)]
        if not present:
            return [], np.empty((0, 0))
        wide = pd.concat([unit_values(clean[clean["arm"] == a], metric, unit).rename(a) for a in present], axis=1)
        return present, wide.dropna()[present].to_numpy()
    frame = folds[folds["sigma"] == 0]
    present = [a for a in arms if _has(frame[frame["arm"] == a], metric)]
    if not present:
        return [], np.empty((0, 0))
    wide = frame[frame["arm"].isin(present)].pivot_table(index=["fold"], columns="arm", values=metric).dropna()
    return present, wide[present].to_numpy()


def friedman_summary(per_case, folds, arms, metric, correction: str, unit: str = "patient") -> dict | None:
    """Friedman test, average ranks and pairwise Wilcoxon–Holm on the blocks, for ≥ 3 arms with ``metric``."""
    present, matrix = block_matrix(per_case, folds, arms, metric, unit)
    if len(present) < 3 or matrix.shape[0] < 2:
        return None
    direction = METRICS[metric].direction
    pairs = list(combinations(range(len(present)), 2))
    raw = [wilcoxon_paired(matrix[:, i], matrix[:, j]).p for i, j in pairs]
    adjusted = adjust(raw, correction)
    return {"metric": metric, "arms": present, "ranks": average_ranks(matrix, direction), "test": friedman(matrix),
            "n_blocks": matrix.shape[0], "pairs": [(present[i], present[j], p) for (i, j), p in zip(pairs, adjusted)]}
