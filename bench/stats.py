"""Paired significance tests (docs/statistics.md). Every comparison in the suite is paired, on one split.

| question | function |
|---|---|
| two methods, per-case segmentation metric | :func:`wilcoxon_paired` + :func:`paired_bootstrap_ci` |
| two classifiers, AUC | :func:`delong_test` (DeLong et al. 1988, fast form of Sun & Xu 2014; by patient: Obuchowski 1997) |
| two classifiers, accuracy | :func:`mcnemar_exact` (statsmodels); :func:`clustered_mcnemar` (patients) |
| two classifiers, SN, SP, F1, BACC, ECE, Brier | :func:`paired_permutation_test` (arms swapped per patient) |
| per-fold summaries, k folds × r repeats | :func:`corrected_ttest` (Nadeau & Bengio 2003) |
| three or more methods | :func:`friedman` + pairwise Wilcoxon with Holm; :func:`nemenyi_cd` |
| many comparisons | :func:`adjust` (Holm or Benjamini–Hochberg through statsmodels) |
| one AUC's uncertainty | :func:`cluster_bootstrap_auc` (patients resampled with all their scans) |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from bench.errors import BenchError

__all__ = ["TestResult", "require_same_split", "wilcoxon_paired", "paired_bootstrap_ci", "delong_test", "mcnemar_exact",
           "clustered_mcnemar", "sign_flip_p", "paired_permutation_test",
           "corrected_ttest", "friedman", "adjust", "nemenyi_cd", "average_ranks", "cluster_bootstrap_auc", "rank_auc"]


@dataclass(frozen=True)
class TestResult:
    """A test's outcome: statistic, two-sided p-value, the effect (a − b) and its 95 % CI where defined."""

    test: str
    statistic: float
    p: float
    effect: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n: int = 0


def require_same_split(*split_hashes: Sequence[str] | str) -> str:
    """The one split hash shared by all inputs, or a :class:`BenchError` naming the ones that differ."""
    found = set()
    for item in split_hashes:
        found |= {item} if isinstance(item, str) else set(item)
    if len(found) != 1:
        raise BenchError(f"cannot compare results from different splits (split hashes {', '.join(sorted(found))}); "
                         "rerun the arms on one splits.json")
    return found.pop()


def paired_bootstrap_ci(a, b, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``a − b`` and its percentile bootstrap CI, resampling cases (pairs) with replacement."""
    d = np.asarray(a, float) - np.asarray(b, float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(d.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def rank_auc(labels, scores) -> float:
    """The ROC AUC as the Mann–Whitney statistic (ties count one half): the probability that a positive scores
    above a negative. Equals ``sklearn.metrics.roc_auc_score`` (to rounding) at a hundredth of its cost, which
    the bootstrap below pays thousands of times per arm."""
    y = np.asarray(labels) == 1
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("an AUC needs both classes")
    ranks = sps.rankdata(np.asarray(scores, float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _cluster_ids(clusters, n: int) -> tuple[int, np.ndarray]:
    """Number of clusters and each case's cluster index (every case its own cluster when ``clusters`` is None)."""
    if clusters is None:
        return n, np.arange(n)
    ids, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    return len(ids), inverse


def cluster_bootstrap_auc(labels, scores, clusters, *, n_boot: int = 2000, seed: int = 0,
                          level: float = 0.95) -> tuple[float, float, float]:
    """AUC of ``scores`` for ``labels`` (1 = positive) and its percentile bootstrap CI, resampling clusters.

    A cluster is a patient: the scans of a longitudinal patient are not independent cases, so a resample draws
    patients with replacement and takes every scan of each. Resamples holding one class only are redrawn.
    """
    y, s = np.asarray(labels, int), np.asarray(scores, float)
    if len(set(y.tolist())) < 2:
        raise ValueError("an AUC needs both classes")
    n_clusters, inverse = _cluster_ids(clusters, len(y))
    members = [np.flatnonzero(inverse == i) for i in range(n_clusters)]
    rng = np.random.default_rng(seed)
    draws: list[float] = []
    while len(draws) < n_boot:
        take = np.concatenate([members[i] for i in rng.integers(0, n_clusters, n_clusters)])
        if y[take].min() != y[take].max():
            draws.append(rank_auc(y[take], s[take]))
    tail = (1 - level) / 2 * 100
    return rank_auc(y, s), float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))


def wilcoxon_paired(a, b, *, n_boot: int = 2000, seed: int = 0) -> TestResult:
    """Wilcoxon signed-rank test on paired per-case values (two-sided) with a bootstrap CI of the mean difference
    (``n_boot = 0``: no CI, for simulations that need only the p).

    With five or fewer non-zero differences no outcome reaches p < 0.05 (the smallest two-sided p is
    2 / 2^n); the result then says so in its test name and has a NaN p (left out of the Holm family, drawn
    as "not different"), instead of a p that looks like evidence of no difference.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two equal-length 1-D samples of >= 2 paired values, got {a.shape} and {b.shape}")
    effect, low, high = paired_bootstrap_ci(a, b, n_boot=n_boot, seed=seed) if n_boot else (float((a - b).mean()), np.nan, np.nan)
    if np.allclose(a, b):
        return TestResult("Wilcoxon signed-rank", 0.0, 1.0, effect, low, high, len(a))
    nonzero = int(np.count_nonzero(~np.isclose(a, b)))
    if 2.0 / 2**nonzero > 0.05:  # the smallest two-sided p of n pairs is 2 / 2^n: 0.0625 for n = 5
        return TestResult(f"Wilcoxon signed-rank (undefined: {nonzero} non-zero pairs can never reach p < 0.05)",
                          float("nan"), float("nan"), effect, low, high, len(a))
    res = sps.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return TestResult("Wilcoxon signed-rank", float(res.statistic), float(res.pvalue), effect, low, high, len(a))


def _cluster_sums(values: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums of ``values`` [k, n] along cases, and each cluster's case count (singletons if no groups)."""
    if groups is None:
        return values, np.ones(values.shape[1])
    n_clusters, inverse = _cluster_ids(groups, values.shape[1])
    sums = np.zeros((values.shape[0], n_clusters))
    for row in range(values.shape[0]):
        sums[row] = np.bincount(inverse, weights=values[row], minlength=n_clusters)
    return sums, np.bincount(inverse, minlength=n_clusters).astype(float)


def _delong_components(y: np.ndarray, scores: np.ndarray, clusters: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """AUCs [k] and their covariance [k, k] for k score vectors on the same cases (fast DeLong).

    With ``clusters`` (a patient id per case) the covariance is Obuchowski's (1997) clustered estimator: the
    structural components are summed per cluster, so the scans of a longitudinal patient count as one
    correlated unit. With one case per cluster it is exactly DeLong's.
    """
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives, got {m} and {n}")
    allv = np.concatenate([pos, neg], axis=1)
    tx = np.apply_along_axis(sps.rankdata, 1, pos)
    ty = np.apply_along_axis(sps.rankdata, 1, neg)
    tz = np.apply_along_axis(sps.rankdata, 1, allv)
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v10 = (tz[:, :m] - tx) / n  # per positive: the share of negatives it outranks
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per negative: the share of positives that outrank it
    if clusters is None:
        cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
        return aucs, cov
    groups = np.asarray(clusters)
    s10, m_i = _cluster_sums(v10, groups[y == 1])
    s01, n_i = _cluster_sums(v01, groups[y == 0])
    e10 = s10 - m_i * aucs[:, None]  # cluster deviations, Obuchowski's V10_i − m_i θ
    e01 = s01 - n_i * aucs[:, None]
    i10, i01 = e10.shape[1], e01.shape[1]
    if i10 < 2 or i01 < 2:
        raise ValueError(f"clustered DeLong needs at least 2 patients per class, got {i10} and {i01}")
    cov = i10 / ((i10 - 1) * m) * (e10 @ e10.T) / m + i01 / ((i01 - 1) * n) * (e01 @ e01.T) / n
    mixed = sorted(set(groups[y == 1].tolist()) & set(groups[y == 0].tolist()))
    if mixed:  # a cluster holding both classes adds Obuchowski's S11 term
        all_ids = sorted(set(groups.tolist()))
        index = {g: i for i, g in enumerate(all_ids)}
        f10 = np.zeros((len(aucs), len(all_ids)))
        f01 = np.zeros_like(f10)
        f10[:, [index[g] for g in np.unique(groups[y == 1])]] = e10
        f01[:, [index[g] for g in np.unique(groups[y == 0])]] = e01
        s11 = len(all_ids) / (len(all_ids) - 1) * (f10 @ f01.T)
        cov = cov + (s11 + s11.T) / (m * n)
    return aucs, cov


def delong_test(labels, scores_a, scores_b, clusters=None) -> TestResult:
    """DeLong test for two correlated ROC AUCs on the same cases; effect = AUC_a − AUC_b.

    ``clusters`` (a patient id per case) makes it Obuchowski's clustered test: a patient's scans are one
    unit of the variance (:func:`_delong_components`); the name says "clustered DeLong".
    Undefined cases are flagged in the test's name with a NaN p, never a made-up p: a NaN score (a diverged
    model), or a zero variance of the difference with unequal AUCs (both rankings perfect, for example).
    Identical AUCs with zero variance (identical rankings) give p = 1.
    """
    y = np.asarray(labels, int)
    scores = np.vstack([np.asarray(scores_a, float), np.asarray(scores_b, float)])
    name = "DeLong" if clusters is None else "clustered DeLong"
    if np.isnan(scores).any():
        return TestResult(f"{name} (undefined: NaN scores)", float("nan"), float("nan"), n=len(y))
    aucs, cov = _delong_components(y, scores, None if clusters is None else np.asarray(clusters))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 1e-15 and abs(diff) > 1e-12:
        return TestResult(f"{name} (undefined: zero variance)", float("nan"), float("nan"), diff, n=len(y))
    if var <= 1e-15:
        z, p = 0.0, 1.0
    else:
        z = diff / np.sqrt(var)
        p = float(2 * sps.norm.sf(abs(z)))
    half = 1.959963984540054 * np.sqrt(max(var, 0.0))
    return TestResult(name, float(z), p, diff, diff - half, diff + half, len(y))


def mcnemar_exact(correct_a, correct_b) -> TestResult:
    """Exact McNemar test on paired correctness (booleans per case); effect = ACC_a − ACC_b."""
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    res = mcnemar(table, exact=True)
    return TestResult("exact McNemar", float(res.statistic), float(res.pvalue), float(a.mean() - b.mean()), n=len(a))


def sign_flip_p(totals, *, mid: bool = False) -> float:
    """Exact two-sided p of ``sum(totals)`` under independent random signs of each (integer) total.

    The sign-flip (permutation) null of a paired design: within each unit the two arms are exchangeable,
    so each unit's difference is as likely negated. Computed exactly by convolution of the integer sums.
    ``mid``: the mid-p, counting outcomes exactly as extreme as the observed one by half (less conservative
    than the exact p of a discrete statistic, and close to nominal; Fagerland et al. 2013 for McNemar).
    """
    d = np.abs(np.asarray(totals, int))
    d = d[d != 0]
    observed = abs(int(np.asarray(totals, int).sum()))
    if len(d) == 0:
        return 1.0
    span = int(d.sum())
    dist = np.zeros(2 * span + 1)
    dist[span] = 1.0
    for value in d:  # each unit adds +value or -value with probability 1/2
        dist = 0.5 * (np.roll(dist, value) + np.roll(dist, -value))
    size = np.abs(np.arange(-span, span + 1))
    p = dist[size > observed].sum() + (0.5 if mid else 1.0) * dist[size == observed].sum()
    return float(min(1.0, p))


def clustered_mcnemar(correct_a, correct_b, clusters) -> TestResult:
    """McNemar's mid-p test for scans clustered in patients: a sign-flip test on each patient's discordance.

    Per patient, d = (scans only A gets right) − (scans only B gets right); under the null the arms are
    exchangeable within a patient, so each d is as likely negated (:func:`sign_flip_p`, mid-p). With one scan
    per patient it is exactly the McNemar mid-p test, which Fagerland, Lydersen and Laake (2013) recommend
    over the exact conditional test (too conservative: its type-I error is well under α). Durkalski et al.
    (2003) give the large-sample clustered form. Statistic: the sum of the d; effect = ACC_a − ACC_b over scans.
    """
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    n_clusters, inverse = _cluster_ids(clusters, len(a))
    d = np.bincount(inverse, weights=(a & ~b).astype(float), minlength=n_clusters) - \
        np.bincount(inverse, weights=(~a & b).astype(float), minlength=n_clusters)
    d = np.rint(d).astype(int)
    name = "McNemar mid-p" if n_clusters == len(a) else "clustered McNemar mid-p"
    return TestResult(name, float(d.sum()), sign_flip_p(d, mid=True), float(a.mean() - b.mean()), n=n_clusters)


def paired_permutation_test(labels, prob_a, prob_b, metric: str, clusters=None, *, n_perm: int = 4000,
                            n_boot: int = 2000, seed: int = 0, exact_up_to: int = 12) -> TestResult:
    """Paired permutation (randomisation) test of a classification metric computed over a set of cases.

    Under the null the two arms' predictions are exchangeable within a patient (cluster): each patient's
    predictions are swapped between the arms with probability ½ and ``metric`` (:data:`bench.metrics.cls.
    BATCH_METRICS`: SN, SP, F1, BACC, ECE, Brier, ACC) is recomputed on the pooled cases. Two-sided mid-p of
    ``|metric_a − metric_b|``: outcomes exactly as extreme count half, as in :func:`clustered_mcnemar`, to which
    the test reduces for ACC. Exact over the 2^D swaps of the D patients whose predictions differ when
    D ≤ ``exact_up_to``; otherwise ``n_perm`` random swaps plus the observed assignment. Valid for any metric,
    including ratios (F1) and binned ones (ECE), where no per-case difference exists. Effect = metric_a −
    metric_b over all cases; its CI a percentile bootstrap of patients (``n_boot`` draws, 0 = none).
    """
    from bench.metrics.cls import BATCH_METRICS, batch_metrics

    if metric not in BATCH_METRICS:
        raise ValueError(f"paired_permutation_test computes {', '.join(BATCH_METRICS)}; got {metric!r}")
    y = np.asarray(labels, int)
    a, b = np.asarray(prob_a, float), np.asarray(prob_b, float)
    n_clusters, inverse = _cluster_ids(clusters, len(y))
    name = "permutation" if n_clusters == len(y) else "clustered permutation"

    def score(prob, weights=None):
        return batch_metrics(y, prob, weights, ece=metric == "ece")[metric]

    effect = float(score(a)[0] - score(b)[0])
    if np.isnan(effect):
        return TestResult(f"{name} (undefined: {metric} is NaN for an arm)", float("nan"), float("nan"), effect,
                          n=n_clusters)
    differing = np.unique(inverse[a != b])
    rng = np.random.default_rng(seed)
    if len(differing) <= exact_up_to:
        flips = (np.arange(2 ** len(differing))[:, None] >> np.arange(len(differing))[None, :]) & 1
    else:  # the observed assignment (no swap) is one of the draws
        flips = np.vstack([np.zeros((1, len(differing)), int), rng.integers(0, 2, (n_perm, len(differing)))])
    swap_cluster = np.zeros((len(flips), n_clusters), bool)
    swap_cluster[:, differing] = flips.astype(bool)
    swap = swap_cluster[:, inverse]
    values = score(np.where(swap, b, a)) - score(np.where(swap, a, b))
    size, observed = np.abs(values), abs(effect)
    tie = np.isclose(size, observed, rtol=1e-9, atol=1e-12)
    p = 1.0 if tie.all() else float(((size > observed) & ~tie).mean() + 0.5 * tie.mean())
    low = high = float("nan")
    if n_boot:
        draws = rng.integers(0, n_clusters, (n_boot, n_clusters))
        counts = np.bincount((draws + n_clusters * np.arange(n_boot)[:, None]).ravel(),
                             minlength=n_boot * n_clusters).reshape(n_boot, n_clusters)[:, inverse]
        boot = score(a, counts) - score(b, counts)
        if np.isfinite(boot).any():
            low, high = (float(v) for v in np.nanpercentile(boot, [2.5, 97.5]))
    return TestResult(name, effect, p, effect, low, high, n_clusters)


def corrected_ttest(differences, n_train: float, n_test: float) -> TestResult:
    """Nadeau–Bengio corrected resampled t-test on per-fold differences (k folds × r repeats).

    t = mean(d) / sqrt((1/J + n_test/n_train) · s²), J = len(d), s² the sample variance, J − 1 degrees of freedom.
    """
    d = np.asarray(differences, float)
    d = d[~np.isnan(d)]
    j = len(d)
    if j < 2:
        return TestResult("corrected resampled t", float("nan"), float("nan"), float(d.mean()) if j else float("nan"), n=j)
    var = float(d.var(ddof=1))
    mean = float(d.mean())
    if var == 0:
        return TestResult("corrected resampled t", float("inf") if mean else 0.0, 0.0 if mean else 1.0, mean, n=j)
    se = np.sqrt((1.0 / j + n_test / n_train) * var)
    t = mean / se
    p = float(2 * sps.t.sf(abs(t), df=j - 1))
    half = float(sps.t.ppf(0.975, df=j - 1) * se)
    return TestResult("corrected resampled t", float(t), p, mean, mean - half, mean + half, j)


def average_ranks(matrix: np.ndarray, direction: str) -> np.ndarray:
    """Mean rank of each column over rows (blocks); rank 1 = best by ``direction`` (``max``/``min``)."""
    values = -matrix if direction == "max" else matrix
    return np.apply_along_axis(sps.rankdata, 1, values).mean(axis=0)


def friedman(matrix: np.ndarray) -> TestResult:
    """Friedman test over blocks (rows) × methods (columns, ≥ 3)."""
    matrix = np.asarray(matrix, float)
    if matrix.ndim != 2 or matrix.shape[1] < 3:
        raise ValueError(f"Friedman needs a blocks × methods matrix with >= 3 methods, got {matrix.shape}")
    res = sps.friedmanchisquare(*matrix.T)
    return TestResult("Friedman", float(res.statistic), float(res.pvalue), n=matrix.shape[0])


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment: the i-th smallest p times (m − i + 1), made monotone, capped at 1 — the
    arithmetic of statsmodels' ``multipletests(method="holm")``, without the ``gc.collect()`` it runs on every
    call (0.1 s each in a process holding torch; a report makes dozens of these calls)."""
    order = np.argsort(p)
    stepped = np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1))
    out = np.empty_like(p)
    out[order] = np.minimum(stepped, 1.0)
    return out


def adjust(pvalues: Sequence[float], method: str = "holm") -> np.ndarray:
    """Multiplicity-adjusted p-values (``holm``, or ``fdr_bh`` through statsmodels); NaNs stay NaN."""
    if method not in ("holm", "fdr_bh"):
        raise BenchError(f"unknown correction '{method}'; expected holm or fdr_bh")
    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any() and method == "holm":
        out[ok] = _holm(p[ok])
    elif ok.any():
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method=method)[1]
    return out


# Two-tailed Nemenyi critical values q_0.05 for k = 2..10 methods (Demšar 2006, Table 5).
_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}


def nemenyi_cd(k: int, n_blocks: int) -> float:
    """Nemenyi critical difference of average ranks at α = 0.05: q_α · sqrt(k(k+1) / (6N))."""
    if k not in _Q05:
        raise ValueError(f"critical values are tabulated for 2..10 methods, got {k}")
    return _Q05[k] * float(np.sqrt(k * (k + 1) / (6.0 * n_blocks)))
