"""``bench calibrate``: do the suite's paired tests hold their error rates on the suite's own design?

A simulation of the default study design — the default cohort's patients (with its longitudinal ones) and
its grouped, stratified folds, five arms compared with a reference, training seeds and repeated
cross-validation — under a true null and under planted effects, for every test the tables use, with the
naive variants beside them (per-scan instead of per-patient, seeds counted as repeats, no variance
correction). It writes ``reports/calibration/``: the type-I error of each test and of the Holm family, and
power against effect size. docs/statistics.md explains the model and how to read the tables.

The model (:class:`Noise`; all components independent normal). Arm a's value on scan i of patient p, in
repeat q, trained with seed s, by the model of fold j (the fold holding i in repeat q):

    value = shared_i + effect_a + u[a, p] + e[a, i] + w[a, i, q, s] + model[a, q, j, s]

``shared_i`` (the scan's difficulty, the same for every arm) cancels in paired differences; ``u`` is the
arm's patient-level error (what makes a longitudinal patient's scans correlated), ``e`` its scan-level error,
``w`` the retraining noise of one model on one scan. ``model`` is a whole trained model's offset: a part of
its own (``model``) and a part that depends on which scans it was trained on (``data``: models of folds
with overlapping training sets are correlated, as Nadeau and Bengio assume). Two nulls:

- **trained-model null** (``model = data = 0``): the arms' trained models are equally good on the
  population of patients. This is the hypothesis of the per-case tests the tables use (Wilcoxon, DeLong,
  McNemar, the paired permutation test), which compare the trained models on the cases at hand;
- **method null** (``model, data > 0``): the methods are equal, but each trained model is better or worse by
  chance. Only the fold-level corrected t-test (the report's method-level table) addresses it; the per-case
  tests reject it more often than α,
  the more so the larger the model-to-model variation (the report shows by how much). A second method null
  doubles the training-set-dependent part, which no cross-validation can estimate from one dataset.

Segmentation values are ``0.6 + 0.1 · value`` (DSC-like). Classification scores are logits
``(2y − 1) · (1 + κ_a + model) + value`` without the ``model`` term in ``value`` (a trained classifier is better
or worse by separating the classes more or less, not by shifting every logit), predicted NMOSD when ≥ 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats as sps

from bench.stats import (
    clustered_mcnemar,
    corrected_ttest,
    delong_test,
    mcnemar_exact,
    paired_permutation_test,
    wilcoxon_paired,
)

__all__ = ["Design", "Noise", "TESTS", "default_designs", "values", "p_values", "replicate", "simulate", "calibrate"]

ALPHA = 0.05

#: test key → (what it is, kind: the table's test (suite), the report's method-level test (method) or a naive
#: variant beside them)
TESTS = {
    "wilcoxon_patient": ("Wilcoxon signed-rank on patients (segmentation metrics)", "suite"),
    "wilcoxon_scan": ("Wilcoxon signed-rank on scans", "naive"),
    "delong_clustered": ("clustered DeLong, patients (AUC)", "suite"),
    "delong_scan": ("DeLong on scans", "naive"),
    "mcnemar_clustered": ("clustered McNemar mid-p, patients (ACC)", "suite"),
    "mcnemar_scan": ("McNemar mid-p on scans", "naive"),
    "mcnemar_exact": ("exact (conditional) McNemar on scans", "naive"),
    "permutation_patient": ("paired permutation, patients (SN, SP, F1, BACC, ECE, Brier; here BACC)", "suite"),
    "permutation_scan": ("paired permutation on scans", "naive"),
    "corrected_t": ("corrected resampled t, k × r folds, seeds averaged (every metric, method level)", "method"),
    "corrected_t_seeds": ("corrected resampled t, seeds counted as repeats", "naive"),
    "plain_t": ("paired t over folds, no correction", "naive"),
    "holm_family": ("Holm family: any of 4 arms vs the reference (Wilcoxon on patients)", "suite"),
}


@dataclass(frozen=True)
class Design:
    """Which scans, how they are split and how many seeds and arms: the study design being simulated."""

    name: str
    patient: np.ndarray  # [n] patient index of each scan
    label: np.ndarray  # [n] 0 = MS, 1 = NMOSD
    fold: np.ndarray  # [repeats, n] fold of each scan in each repeat
    folds: int
    seeds: int = 1
    arms: int = 5

    @property
    def repeats(self) -> int:
        return self.fold.shape[0]

    def describe(self) -> str:
        longitudinal = int((np.bincount(self.patient) > 1).sum())
        return (f"{len(self.label)} scans of {self.patient.max() + 1} patients ({longitudinal} longitudinal), "
                f"{self.folds} folds × {self.repeats} repeat(s), {self.seeds} seed(s), {self.arms} arms")


@dataclass(frozen=True)
class Noise:
    """Standard deviations of the model's components (module docstring), in latent units."""

    patient: float = 0.5
    scan: float = 0.7
    retrain: float = 0.4
    shared: float = 1.0
    model: float = 0.0
    data: float = 0.0


def _design(name: str, cases: Sequence, folds: int, repeats: int, seeds: int, split_seed: int = 0) -> Design:
    from bench.splits import make_splits

    splits = make_splits(list(cases), folds, split_seed, name, repeats=repeats)
    index = {c.scan_id: i for i, c in enumerate(cases)}
    fold = np.zeros((repeats, len(cases)), int)
    for j, ids in enumerate(splits.test):
        fold[j // folds, [index[s] for s in ids]] = j % folds
    patients = {p: k for k, p in enumerate(dict.fromkeys(c.patient_id for c in cases))}
    return Design(name, np.array([patients[c.patient_id] for c in cases]), np.array([c.label for c in cases]), fold,
                  folds, seeds)


def _cases(plan: Sequence[tuple[str, int, str]]) -> list:
    from bench.data.manifest import Case

    return [Case(f"sub-{p}_ses-{t:02d}", f"sub-{p}", str(t), int(label == "NMOSD"), "A", Path("-"), None)
            for p, t, label in plan]


def default_designs(folds: int = 5) -> list[Design]:
    """The default cohort (cpu profile: 69 MS + 62 NMOSD scans, five longitudinal MS patients) with one seed,
    three seeds and three repeats; and an ISBI-like cohort where every patient is longitudinal (4–5 scans)."""
    from bench.data.synthetic import SyntheticConfig, cohort_plan

    default = _cases(cohort_plan(SyntheticConfig(n_ms=69, n_nmosd=62)))
    rng = np.random.default_rng(2015)
    isbi_plan = [(f"{p:03d}", t, "MS" if p % 2 == 0 else "NMOSD") for p in range(30) for t in range(int(rng.integers(4, 6)))]
    isbi = _cases(isbi_plan)
    return [
        _design("default cohort", default, folds, 1, 1),
        _design("default cohort, 3 seeds", default, folds, 1, 3),
        _design("default cohort, 3 repeats × 3 seeds", default, folds, 3, 3),
        _design("longitudinal cohort (ISBI-like)", isbi, folds, 1, 1),
        _design("longitudinal cohort, 3 repeats × 3 seeds", isbi, folds, 3, 3),
    ]


def _latent(d: Design, noise: Noise, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Arm-specific parts, [arms, n, repeats, seeds]: the per-scan error (patient, scan, retraining) and each
    scan's model offset (its fold's trained model's own and data-dependent quality; zero under the
    trained-model null)."""
    n, r, s, a = len(d.label), d.repeats, d.seeds, d.arms
    error = (noise.patient * rng.standard_normal((a, d.patient.max() + 1)))[:, d.patient][:, :, None, None]
    error = error + noise.scan * rng.standard_normal((a, n, 1, 1))
    error = error + noise.retrain * rng.standard_normal((a, n, r, s))
    offset = np.zeros((a, n, r, s))
    if noise.model or noise.data:
        own = noise.model * rng.standard_normal((a, r, d.folds, s))
        h = rng.standard_normal((a, n))  # what each scan, when trained on, does to arm a's model
        for q in range(r):
            for j in range(d.folds):
                train = d.fold[q] != j
                data_part = noise.data * h[:, train].sum(axis=1) / np.sqrt(train.sum())
                offset[:, d.fold[q] == j, q, :] = (own[:, q, j, :] + data_part[:, None])[:, None, :]
    return error, offset


def _fold_values(d: Design, pred: np.ndarray) -> np.ndarray:
    """[arms, repeats × folds, seeds] balanced accuracy of each fold's model on its test scans."""
    out = np.zeros((d.arms, d.repeats * d.folds, d.seeds))
    pos, neg = (d.label == 1).astype(float), (d.label == 0).astype(float)
    for q in range(d.repeats):
        member = (d.fold[q][None, :] == np.arange(d.folds)[:, None]).astype(float)  # [folds, n]
        hits = pred[:, :, q, :]  # [arms, n, seeds]
        sn = np.einsum("fn,ans->afs", member * pos, hits) / (member @ pos)[None, :, None]
        sp = np.einsum("fn,ans->afs", member * neg, 1 - hits) / (member @ neg)[None, :, None]
        out[:, q * d.folds:(q + 1) * d.folds, :] = 0.5 * (sn + sp)
    return out


def _patient_means(values: np.ndarray, patient: np.ndarray) -> np.ndarray:
    return np.bincount(patient, weights=values) / np.bincount(patient)


def values(d: Design, noise: Noise, rng: np.random.Generator, *, seg_effect: float = 0.0,
           cls_effect: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One simulated study's segmentation values and classification logits, each [arms, n, repeats, seeds]."""
    n = len(d.label)
    error, offset = _latent(d, noise, rng)
    seg = 0.6 + 0.1 * (noise.shared * rng.standard_normal(n)[None, :, None, None] + error + offset)
    seg[1] += seg_effect
    sign = (2 * d.label - 1)[None, :, None, None]
    error, offset = _latent(d, noise, rng)
    # a classifier's trained-model quality is its separation of the classes, not a shift of every logit
    separation = 1.0 + offset + np.where(np.arange(d.arms) == 1, cls_effect, 0.0)[:, None, None, None]
    logit = sign * separation + noise.shared * rng.standard_normal(n)[None, :, None, None] + error
    return seg, logit


def p_values(d: Design, seg: np.ndarray, logit: np.ndarray, rng: np.random.Generator | None = None,
             n_perm: int = 1000) -> dict[str, float]:
    """The p of every test in :data:`TESTS` on one simulated study, arm 1 against the reference arm 0, computed
    as the report computes them (:mod:`bench.report.significance`; a test checks that they agree). ``rng``
    seeds the permutation tests' random swaps (seed 0, the report's, without it); ``n_perm`` swaps each."""
    n = len(d.label)
    per_scan = seg.mean(axis=(2, 3))  # averaged over repeats and seeds, as the report does
    per_patient = np.stack([_patient_means(per_scan[a], d.patient) for a in range(d.arms)])
    p = {"wilcoxon_patient": wilcoxon_paired(per_patient[1], per_patient[0], n_boot=0).p,
         "wilcoxon_scan": wilcoxon_paired(per_scan[1], per_scan[0], n_boot=0).p}
    score = logit[:, :, 0, 0]  # one prediction per scan: the first repeat, the smallest seed
    p["delong_clustered"] = delong_test(d.label, score[1], score[0], clusters=d.patient).p
    p["delong_scan"] = delong_test(d.label, score[1], score[0]).p
    correct = (score >= 0) == (d.label == 1)[None, :]
    p["mcnemar_clustered"] = clustered_mcnemar(correct[1], correct[0], d.patient).p
    p["mcnemar_scan"] = clustered_mcnemar(correct[1], correct[0], np.arange(n)).p
    p["mcnemar_exact"] = mcnemar_exact(correct[1], correct[0]).p
    prob = 1 / (1 + np.exp(-score))
    draw = int(rng.integers(2**31)) if rng is not None else 0  # the permutations' own seed: a fresh draw per study
    for name, clusters in (("permutation_patient", d.patient), ("permutation_scan", None)):
        p[name] = paired_permutation_test(d.label, prob[1], prob[0], "bacc", clusters, n_perm=n_perm, n_boot=0,
                                          seed=draw).p
    folds = _fold_values(d, (logit >= 0).astype(float))
    diff = folds[1] - folds[0]  # [k × r, seeds]
    n_test = n / d.folds
    p["corrected_t"] = corrected_ttest(diff.mean(axis=1), n_train=n - n_test, n_test=n_test).p
    if d.seeds > 1:  # seeds counted as repeats: only a variant where there are several
        p["corrected_t_seeds"] = corrected_ttest(diff.ravel(), n_train=n - n_test, n_test=n_test).p
    mean_diff = diff.mean(axis=1)
    p["plain_t"] = float(sps.ttest_1samp(mean_diff, 0.0).pvalue) if mean_diff.std() > 0 else 1.0
    family = np.array([wilcoxon_paired(per_patient[a], per_patient[0], n_boot=0).p for a in range(1, d.arms)])
    # Holm rejects anything iff its first step does: the smallest p times the family's size (:func:`adjust`)
    p["holm_family"] = float(min(1.0, np.nanmin(family) * np.count_nonzero(~np.isnan(family))))
    return p


def replicate(d: Design, noise: Noise, rng: np.random.Generator, *, seg_effect: float = 0.0,
              cls_effect: float = 0.0) -> dict[str, float]:
    """One simulated study: the p of every test in :data:`TESTS`."""
    return p_values(d, *values(d, noise, rng, seg_effect=seg_effect, cls_effect=cls_effect), rng)


def simulate(d: Design, noise: Noise, replicates: int, seed: int, *, seg_effect: float = 0.0,
             cls_effect: float = 0.0, progress: Callable[[int], None] | None = None) -> dict[str, float]:
    """Rejection rate at α = 0.05 of every test over ``replicates`` simulated studies (NaN p: not rejected)."""
    rng = np.random.default_rng(seed)
    rejected = {name: 0 for name in TESTS}
    counted = {name: 0 for name in TESTS}
    for i in range(replicates):
        for name, value in replicate(d, noise, rng, seg_effect=seg_effect, cls_effect=cls_effect).items():
            counted[name] += 1
            rejected[name] += int(value < ALPHA)  # NaN (an undefined test) never rejects
        if progress:
            progress(i + 1)
    return {name: rejected[name] / counted[name] if counted[name] else float("nan") for name in TESTS}


def _interval(rate: float, n: int) -> tuple[float, float]:
    """Clopper–Pearson 95 % interval of a rejection rate from ``n`` replicates."""
    k = round(rate * n)
    low = sps.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
    high = sps.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(low), float(high)


@dataclass(frozen=True)
class Job:
    design: Design
    noise: Noise
    null: str
    replicates: int
    seed: int
    seg_effect: float = 0.0
    cls_effect: float = 0.0


def _run_job(job: Job) -> list[dict]:
    rates = simulate(job.design, job.noise, job.replicates, job.seed, seg_effect=job.seg_effect,
                     cls_effect=job.cls_effect)
    rows = []
    for name, rate in rates.items():
        if np.isnan(rate):
            continue
        low, high = _interval(rate, job.replicates)
        rows.append({"design": job.design.name, "null": job.null, "test": name, "what": TESTS[name][0],
                     "kind": TESTS[name][1], "seg_effect": job.seg_effect, "cls_effect": job.cls_effect,
                     "rate": rate, "ci_low": low, "ci_high": high, "replicates": job.replicates})
    return rows


#: the method nulls' model-to-model variation (latent sd of a trained model's own and data-dependent offsets);
#: how much of it depends on the training set cannot be estimated from one dataset (Bengio and Grandvalet
#: 2004), so a second null doubles that part
METHOD_NULLS = {"method null": {"model": 0.15, "data": 0.15},
                "method null, strong training-set dependence": {"model": 0.15, "data": 0.3}}
SEG_EFFECTS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)
CLS_EFFECTS = (0.0, 0.1, 0.2, 0.4, 0.6, 1.0)


def jobs(replicates: int, designs: Sequence[Design] | None = None, noise: Noise = Noise(), seed: int = 0) -> list[Job]:
    """Every design under both nulls, and power curves (planted effects) on the first and the longitudinal design."""
    designs = list(designs or default_designs())
    out = []
    for i, d in enumerate(designs):
        out.append(Job(d, noise, "trained-model null", replicates, seed * 1000 + 3 * i))
        for k, (null, parts) in enumerate(METHOD_NULLS.items()):
            out.append(Job(d, replace(noise, **parts), null, replicates, seed * 1000 + 3 * i + 1 + k))
    for i, d in enumerate(designs[:1] + [d for d in designs if d.name.startswith("longitudinal")][:1]):
        for k, (seg, cls) in enumerate(zip(SEG_EFFECTS[1:], CLS_EFFECTS[1:])):
            out.append(Job(d, noise, "planted effect", replicates, seed * 1000 + 500 + 10 * i + k, seg, cls))
    return out


def calibrate(replicates: int = 1000, *, workers: int = 2, seed: int = 0, designs: Sequence[Design] | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Run :func:`jobs` (``workers`` processes, :mod:`bench.procs`) and return one row per design × null × test."""
    from bench.procs import SPAWN, spawn_pool

    todo = jobs(replicates, designs, seed=seed)
    rows: list[dict] = []
    if workers <= 1:
        for i, job in enumerate(todo):
            rows += _run_job(job)
            if progress:
                progress(i + 1, len(todo))
        return rows
    with spawn_pool(workers, context=SPAWN) as pool:  # numpy and statsmodels only: no need for the fork server
        for i, result in enumerate(pool.map(_run_job, todo)):
            rows += result
            if progress:
                progress(i + 1, len(todo))
    return rows


def noise_record(noise: Noise = Noise()) -> dict:
    """The model's parameters as written beside the results."""
    return {"trained-model null": asdict(noise), **{null: asdict(replace(noise, **parts)) for null, parts in METHOD_NULLS.items()},
            "seg_effects": list(SEG_EFFECTS), "cls_effects": list(CLS_EFFECTS), "alpha": ALPHA}
