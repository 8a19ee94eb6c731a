"""Significance tests against reference values: hand-built tables, closed forms, statsmodels, bootstrap."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from bench.errors import BenchError
from bench.stats import (
    adjust,
    average_ranks,
    corrected_ttest,
    delong_test,
    friedman,
    mcnemar_exact,
    nemenyi_cd,
    paired_bootstrap_ci,
    require_same_split,
    wilcoxon_paired,
)


def _scores(seed=0, n=120):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = y * 1.2 + rng.standard_normal(n)
    b = y * 0.6 + 0.5 * a + rng.standard_normal(n)  # correlated with a, weaker
    return y, a, b


def test_delong_auc_equals_sklearn_and_variance_matches_bootstrap():
    from sklearn.metrics import roc_auc_score

    y, a, b = _scores()
    res = delong_test(y, a, b)
    assert res.effect == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b), abs=1e-12)
    rng = np.random.default_rng(1)
    diffs = []
    for _ in range(1000):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) == 2:
            diffs.append(roc_auc_score(y[idx], a[idx]) - roc_auc_score(y[idx], b[idx]))
    boot_se = np.std(diffs, ddof=1)
    delong_se = res.effect / res.statistic
    assert delong_se == pytest.approx(boot_se, rel=0.15)
    assert res.p == pytest.approx(2 * sps.norm.sf(abs(res.statistic)))


def test_delong_identical_scores():
    y, a, _ = _scores()
    res = delong_test(y, a, a)
    assert res.effect == 0 and res.p == 1.0


def test_mcnemar_hand_built_table():
    # discordant pairs: a right / b wrong = 1, a wrong / b right = 6 → exact p = 2·P(X ≤ 1 | n=7, ½) = 16/128
    a = [True] * 10 + [True] + [False] * 6 + [False] * 3
    b = [True] * 10 + [False] + [True] * 6 + [False] * 3
    res = mcnemar_exact(a, b)
    assert res.p == pytest.approx(16 / 128) and res.statistic == 1
    assert res.effect == pytest.approx((11 - 16) / 20)


def test_mcnemar_no_discordant_pairs():
    assert mcnemar_exact([True, False], [True, False]).p == 1.0


def test_corrected_ttest_closed_form():
    d = np.array([0.02, 0.05, -0.01, 0.04, 0.03])
    res = corrected_ttest(d, n_train=100, n_test=25)
    t = d.mean() / math.sqrt((1 / 5 + 25 / 100) * d.var(ddof=1))
    assert res.statistic == pytest.approx(t)
    assert res.p == pytest.approx(2 * sps.t.sf(abs(t), 4))
    naive = sps.ttest_1samp(d, 0.0)
    assert abs(res.statistic) < abs(naive.statistic)  # the correction widens the variance


def test_corrected_ttest_repeated_cv_uses_all_folds():
    d = np.array([0.02, 0.05, -0.01, 0.04, 0.03, 0.01, 0.02, 0.06, 0.0, 0.03])  # 5 folds × 2 repeats
    res = corrected_ttest(d, n_train=100, n_test=25)
    assert res.n == 10
    assert res.statistic == pytest.approx(d.mean() / math.sqrt((1 / 10 + 0.25) * d.var(ddof=1)))


def test_holm_and_bh_against_hand_values_and_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03]
    assert adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06])
    assert adjust(p, "fdr_bh") == pytest.approx(multipletests(p, method="fdr_bh")[1])
    out = adjust([0.01, float("nan"), 0.04], "holm")
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)
    with pytest.raises(BenchError):
        adjust(p, "bonferonni")


def test_wilcoxon_matches_scipy_and_ci_brackets_effect():
    rng = np.random.default_rng(0)
    a = rng.random(30)
    b = a - 0.05 + 0.02 * rng.standard_normal(30)
    res = wilcoxon_paired(a, b)
    assert res.p == pytest.approx(sps.wilcoxon(a, b).pvalue)
    assert res.ci_low < res.effect < res.ci_high and res.ci_low > 0
    assert wilcoxon_paired(a, a).p == 1.0


def test_wilcoxon_with_five_pairs_says_it_cannot_be_significant_instead_of_a_p():
    a = np.array([0.9, 0.8, 0.85, 0.7, 0.95])
    five = wilcoxon_paired(a, a - 0.1)  # all five differences the same sign: the most extreme outcome
    assert np.isnan(five.p) and "5 non-zero pairs can never reach p < 0.05" in five.test
    assert sps.wilcoxon(a, a - 0.1).pvalue == pytest.approx(0.0625)  # 2 / 2^5, the reason
    assert five.effect == pytest.approx(0.1)
    six = wilcoxon_paired(np.append(a, 0.6), np.append(a - 0.1, 0.5))
    assert six.p == pytest.approx(0.03125) and six.test == "Wilcoxon signed-rank"  # 2 / 2^6 can
    tied = wilcoxon_paired(np.append(a, [0.5] * 3), np.append(a - 0.1, [0.5] * 3))  # zero differences do not count
    assert np.isnan(tied.p)


def test_bootstrap_ci_of_a_constant_difference():
    mean, low, high = paired_bootstrap_ci([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert mean == low == high == pytest.approx(0.5)


def test_friedman_ranks_and_cd():
    m = np.array([[0.9, 0.8, 0.1], [0.8, 0.7, 0.2], [0.95, 0.6, 0.3], [0.7, 0.65, 0.1]])
    assert average_ranks(m, "max") == pytest.approx([1.0, 2.0, 3.0])
    assert average_ranks(m, "min") == pytest.approx([3.0, 2.0, 1.0])
    assert friedman(m).p == pytest.approx(sps.friedmanchisquare(*m.T).pvalue)
    assert nemenyi_cd(3, 4) == pytest.approx(2.343 * math.sqrt(3 * 4 / 24))
    with pytest.raises(ValueError):
        friedman(m[:, :2])


def test_different_split_hashes_are_refused():
    assert require_same_split(["a", "a"], "a") == "a"
    with pytest.raises(BenchError, match="different splits"):
        require_same_split(["a"], ["b"])


def test_cluster_bootstrap_auc_resamples_patients_not_scans():
    from bench.stats import cluster_bootstrap_auc

    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 20)
    s = y * 0.6 + rng.normal(0, 0.5, 40)
    auc, low, high = cluster_bootstrap_auc(y, s, np.arange(40), n_boot=500)
    assert auc == pytest.approx(roc_auc_score(y, s)) and low < auc < high
    # Every patient scanned twice with the same result: resampling patients gives exactly the same interval
    # (an AUC over duplicated pairs equals the AUC over the pairs), resampling scans a falsely narrow one.
    y2, s2, patients = np.repeat(y, 2), np.repeat(s, 2), np.repeat(np.arange(40), 2)
    assert cluster_bootstrap_auc(y2, s2, patients, n_boot=500) == pytest.approx((auc, low, high))
    _, naive_low, naive_high = cluster_bootstrap_auc(y2, s2, np.arange(80), n_boot=500)
    assert naive_high - naive_low < 0.8 * (high - low)


def test_cluster_bootstrap_auc_of_a_perfect_ranking_is_one_and_one_class_is_refused():
    from bench.stats import cluster_bootstrap_auc

    assert cluster_bootstrap_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], [0, 1, 2, 3], n_boot=50) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="both classes"):
        cluster_bootstrap_auc([1, 1], [0.2, 0.3], [0, 1])


def test_delong_undefined_cases_are_flagged_not_given_a_p():
    y = [0, 0, 1, 1]
    perfect, reversed_ = [0.1, 0.2, 0.8, 0.9], [0.9, 0.8, 0.2, 0.1]  # both rankings exact: zero variance, AUCs 1 and 0
    res = delong_test(y, perfect, reversed_)
    assert res.test == "DeLong (undefined: zero variance)" and math.isnan(res.p) and res.effect == 1.0
    res = delong_test(y, [0.1, float("nan"), 0.8, 0.9], perfect)
    assert res.test == "DeLong (undefined: NaN scores)" and math.isnan(res.p)
    assert delong_test(y, perfect, perfect).p == 1.0  # identical rankings: no evidence of a difference
