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
    clustered_mcnemar,
    corrected_ttest,
    delong_test,
    friedman,
    mcnemar_exact,
    nemenyi_cd,
    paired_bootstrap_ci,
    require_same_split,
    sign_flip_p,
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
    rng = np.random.default_rng(5)  # bench's own Holm: statsmodels' numbers to the bit, ties and caps at 1 included
    for m in (1, 2, 7, 40):
        many = np.round(rng.uniform(0, 0.6, m), 2)
        assert np.array_equal(adjust(many, "holm"), multipletests(many, method="holm")[1])


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


def test_rank_auc_equals_sklearn_with_ties_and_by_hand():
    from bench.stats import rank_auc

    # by hand: positives 0.8, 0.4 and negatives 0.4, 0.1 → pairs (0.8>0.4, 0.8>0.1, 0.4=0.4 counts ½, 0.4>0.1) = 3.5/4
    assert rank_auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == 0.875
    rng = np.random.default_rng(7)
    for n in (5, 40, 131):
        y = rng.integers(0, 2, n)
        y[:2] = (0, 1)
        s = np.round(rng.normal(y * 0.5, 1.0), 1)  # rounded: many ties
        assert rank_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        rank_auc([0, 0], [0.1, 0.2])


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


def _clustered_scores(seed: int, patients: int = 60, scans: int = 4):
    """Longitudinal patients: a patient-level score shift shared by the scans (and the two arms) of a patient."""
    rng = np.random.default_rng(seed)
    label = np.repeat(rng.integers(0, 2, patients), scans)
    groups = np.repeat(np.arange(patients), scans)
    shift = np.repeat(rng.standard_normal(patients), scans) * 1.5
    a = label * 1.0 + shift + 0.5 * rng.standard_normal(len(label))
    b = label * 0.6 + shift + np.repeat(rng.standard_normal(patients), scans) + 0.5 * rng.standard_normal(len(label))
    return label, a, b, groups


def test_clustered_delong_is_delong_for_singletons_and_matches_a_patient_bootstrap():
    y, a, b = _scores(3)
    plain, single = delong_test(y, a, b), delong_test(y, a, b, clusters=np.arange(len(y)))
    assert single.test == "clustered DeLong"
    assert (single.statistic, single.p) == pytest.approx((plain.statistic, plain.p), rel=1e-12)
    label, a, b, groups = _clustered_scores(0)
    clustered, naive = delong_test(label, a, b, clusters=groups), delong_test(label, a, b)
    assert clustered.effect == pytest.approx(roc_auc_score(label, a) - roc_auc_score(label, b))
    rng = np.random.default_rng(1)
    boot = []
    for _ in range(1500):  # resample patients with all their scans
        take = np.concatenate([np.flatnonzero(groups == g) for g in rng.integers(0, groups.max() + 1, groups.max() + 1)])
        if label[take].min() != label[take].max():
            boot.append(roc_auc_score(label[take], a[take]) - roc_auc_score(label[take], b[take]))
    se_clustered = clustered.effect / clustered.statistic
    assert se_clustered == pytest.approx(np.std(boot), rel=0.15)
    assert naive.effect / naive.statistic < 0.8 * se_clustered  # four correlated scans counted as four patients


def test_clustered_delong_with_a_patient_holding_both_classes_adds_the_cross_term():
    y = np.array([1, 0, 1, 0, 1, 1, 0, 0, 1, 0])
    groups = np.array([0, 0, 1, 1, 2, 3, 4, 5, 6, 7])  # patients 0 and 1 hold a positive and a negative scan
    a = np.array([0.9, 0.2, 0.7, 0.4, 0.8, 0.6, 0.3, 0.1, 0.5, 0.65])
    b = np.array([0.6, 0.5, 0.8, 0.1, 0.4, 0.7, 0.2, 0.3, 0.9, 0.35])
    res = delong_test(y, a, b, clusters=groups)
    # hand computation of Obuchowski's estimator for the difference (a − b)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)

    def psi(x, z):
        return (x > z) + 0.5 * (x == z)

    d10 = {i: np.mean([psi(a[i], a[j]) for j in neg]) - np.mean([psi(b[i], b[j]) for j in neg]) for i in pos}
    d01 = {j: np.mean([psi(a[i], a[j]) for i in pos]) - np.mean([psi(b[i], b[j]) for i in pos]) for j in neg}
    theta = np.mean(list(d10.values()))
    M, N, ids = len(pos), len(neg), np.unique(groups)
    e10 = {g: sum(d10[i] for i in pos if groups[i] == g) - (groups[pos] == g).sum() * theta for g in ids}
    e01 = {g: sum(d01[j] for j in neg if groups[j] == g) - (groups[neg] == g).sum() * theta for g in ids}
    i10, i01, n_ids = len(set(groups[pos])), len(set(groups[neg])), len(ids)
    s10 = i10 / ((i10 - 1) * M) * sum(e10[g] ** 2 for g in set(groups[pos]))
    s01 = i01 / ((i01 - 1) * N) * sum(e01[g] ** 2 for g in set(groups[neg]))
    s11 = n_ids / (n_ids - 1) * sum(e10[g] * e01[g] for g in ids)
    var = s10 / M + s01 / N + 2 * s11 / (M * N)
    assert res.effect == pytest.approx(theta)
    assert res.statistic == pytest.approx(theta / math.sqrt(var), rel=1e-10)


def test_sign_flip_p_enumerates_every_sign():
    assert sign_flip_p([1, 1, 1, 1, 1]) == pytest.approx(2 / 32)
    assert sign_flip_p([1, 1, 1, 1, 1], mid=True) == pytest.approx(1 / 32)  # the observed extreme counts half
    # 3 ± 1 ± 2 with every sign: sums 6, 2, 4, 0, 0, -4, -2, -6; |sum| >= 4 in 4 of 8, > 4 in 2 of 8
    assert sign_flip_p([3, -1, 2]) == pytest.approx(0.5)
    assert sign_flip_p([3, -1, 2], mid=True) == pytest.approx(2 / 8 + 0.5 * 2 / 8)
    assert sign_flip_p([0, 0]) == 1.0


def _mid_p_mcnemar(a, b) -> float:
    """The McNemar mid-p test in its closed form (Fagerland, Lydersen and Laake 2013)."""
    n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
    n, m = n01 + n10, min(n01, n10)
    return min(1.0, 2 * (sps.binom.cdf(m, n, 0.5) - 0.5 * sps.binom.pmf(m, n, 0.5)))


def test_clustered_mcnemar_is_the_mid_p_mcnemar_for_singletons_and_counts_patients_once():
    rng = np.random.default_rng(4)
    a, b = rng.random(50) > 0.3, rng.random(50) > 0.5
    single = clustered_mcnemar(a, b, np.arange(50))
    assert single.test == "McNemar mid-p" and single.p == pytest.approx(_mid_p_mcnemar(a, b), rel=1e-12)
    assert single.p < mcnemar_exact(a, b).p  # the exact conditional test is the more conservative
    # one patient with 6 scans all right for A, wrong for B, plus 2 single patients the other way:
    # per scan McNemar sees 6 vs 2 of 8 discordant scans; per patient the discordances are +6, -1, -1
    a = np.array([True] * 6 + [False, False])
    b = np.array([False] * 6 + [True, True])
    res = clustered_mcnemar(a, b, [0] * 6 + [1, 2])
    assert res.test == "clustered McNemar mid-p" and res.statistic == 4 and res.n == 3
    # ±6 ±1 ±1: |sum| is 8, 6, 6 or 4, so P(|T| > 4) = 6/8 and P(|T| = 4) = 2/8: one patient alone is no evidence
    assert res.p == pytest.approx(6 / 8 + 0.5 * 2 / 8)
    assert mcnemar_exact(a, b).p == pytest.approx(2 * (1 + 8 + 28) / 256)


def _brute_force_mid_p(y, a, b, metric, clusters):
    """Every assignment of the arms within each patient, by a loop over classification_metrics."""
    from itertools import product

    from bench.metrics.cls import classification_metrics

    ids = sorted(set(clusters))
    def diff(x, z):
        return classification_metrics(y, x)[metric] - classification_metrics(y, z)[metric]
    observed = abs(diff(a, b))
    sizes = []
    for flips in product((False, True), repeat=len(ids)):
        swap = np.isin(clusters, [c for c, f in zip(ids, flips) if f])
        sizes.append(abs(diff(np.where(swap, b, a), np.where(swap, a, b))))
    sizes = np.array(sizes)
    tie = np.isclose(sizes, observed)
    return ((sizes > observed) & ~tie).mean() + 0.5 * tie.mean()


@pytest.mark.parametrize("metric", ["f1", "sn", "bacc", "ece", "brier"])
def test_paired_permutation_test_equals_brute_force_enumeration(metric):
    from bench.stats import paired_permutation_test

    rng = np.random.default_rng(7)
    y = np.array([1, 1, 0, 0, 1, 0, 1, 0, 1, 1, 0, 0])
    clusters = np.array([0, 0, 1, 2, 2, 3, 4, 5, 6, 6, 7, 8])  # nine patients, three of them with two scans
    a = np.clip(0.5 + (y - 0.5) * 0.6 + 0.25 * rng.standard_normal(12), 0.01, 0.99)
    b = np.clip(0.5 + 0.25 * rng.standard_normal(12), 0.01, 0.99)
    res = paired_permutation_test(y, a, b, metric, clusters, n_boot=0)
    assert res.p == pytest.approx(_brute_force_mid_p(y, a, b, metric, clusters), abs=1e-12)
    assert res.test == "clustered permutation" and res.n == 9
    sampled = paired_permutation_test(y, a, b, metric, clusters, n_perm=20000, n_boot=0, exact_up_to=0)
    assert sampled.p == pytest.approx(res.p, abs=0.015)  # random swaps approach the exact p


def test_paired_permutation_test_is_mcnemar_for_accuracy_and_flags_undefined_metrics():
    from bench.stats import paired_permutation_test

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    clusters = np.repeat(np.arange(20), 3)
    a, b = rng.random(60), rng.random(60)
    res = paired_permutation_test(y, a, b, "acc", clusters, n_boot=500)
    ref = clustered_mcnemar((a >= 0.5) == y, (b >= 0.5) == y, clusters)
    assert res.p == pytest.approx(ref.p, abs=0.01) and res.effect == pytest.approx(ref.effect)
    assert res.ci_low < res.effect < res.ci_high
    assert paired_permutation_test(y, a, a, "f1", clusters).p == 1.0  # identical predictions: nothing to swap
    none_positive = paired_permutation_test(np.zeros(6, int), a[:6], b[:6], "sn")
    assert np.isnan(none_positive.p) and "undefined" in none_positive.test
    with pytest.raises(ValueError, match="auc"):
        paired_permutation_test(y, a, b, "auc")


def test_batch_metrics_equal_classification_metrics_on_repeated_cases():
    from bench.metrics.cls import BATCH_METRICS, batch_metrics, classification_metrics

    rng = np.random.default_rng(11)
    y, prob = rng.integers(0, 2, 50), rng.random(50)
    prob[:3] = [0.5, 0.05, 0.95]  # the threshold and the outer bins
    weights = rng.integers(0, 3, (4, 50))
    batch = batch_metrics(y, prob, weights)
    for row in range(4):
        keep = np.repeat(np.arange(50), weights[row])
        expected = classification_metrics(y[keep], prob[keep])
        assert [batch[m][row] for m in BATCH_METRICS] == pytest.approx([expected[m] for m in BATCH_METRICS], abs=1e-12)
