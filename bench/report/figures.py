"""Report figures besides the ROC: the critical-difference diagram and metric-vs-σ curves.
PNG and PDF, Okabe–Ito colour-blind-safe palette, readable fonts."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.metrics import METRICS
from bench.report.style import OKABE_ITO, save_figure
from bench.report.tables import fold_means

__all__ = ["plot_cd", "plot_noise", "noise_curve", "cliques"]

_CORRECTIONS = {"holm": "Holm", "fdr_bh": "Benjamini–Hochberg"}


def cliques(order: Sequence[str], pairs: Sequence[tuple[str, str, float]], alpha: float) -> list[tuple[int, int]]:
    """Maximal runs [i, j] of rank-ordered arms whose every pair is not significantly different."""
    nonsig = {frozenset((a, b)) for a, b, p in pairs if not p < alpha}
    runs = []
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and all(frozenset((order[k], order[j + 1])) in nonsig for k in range(i, j + 1)):
            j += 1
        if j > i and not any(s <= i and j <= e for s, e in runs):
            runs.append((i, j))
    return runs


def plot_cd(summary: dict, labels: dict[str, str], out: Path, alpha: float, correction: str) -> list[Path]:
    """Critical-difference diagram: average ranks on an axis; bars join arms not significantly different
    (pairwise Wilcoxon, ``correction``-adjusted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = np.asarray(summary["ranks"])
    order = [summary["arms"][i] for i in np.argsort(ranks)]
    sorted_ranks = np.sort(ranks)
    k = len(order)
    fig, ax = plt.subplots(figsize=(6.4, 1.0 + 0.3 * k), dpi=150)
    ax.set_xlim(0.5, k + 0.5)
    half = (k + 1) // 2
    n_cliques = len(cliques(order, summary["pairs"], alpha))
    ax.set_ylim(-max(half + 0.6, 0.6 + 0.25 * n_cliques), 1.2)
    ax.hlines(0, 1, k, color="black", linewidth=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.15, color="black", linewidth=1)
        ax.text(r, 0.3, str(r), ha="center", fontsize=9)
    for i, (arm, rank) in enumerate(zip(order, sorted_ranks)):
        y = -(i + 1) if i < half else -(k - i)
        x_text = 0.6 if i < half else k + 0.4
        ax.plot([rank, rank, x_text], [0, y, y], color=OKABE_ITO[i % len(OKABE_ITO)], linewidth=1.2)
        ax.text(x_text, y + 0.12, f"{labels.get(arm, arm)} ({rank:.2f})", ha="left" if i < half else "right", fontsize=9)
    for n, (s, e) in enumerate(cliques(order, summary["pairs"], alpha)):
        y = -0.35 - 0.25 * n
        ax.hlines(y, sorted_ranks[s] - 0.03, sorted_ranks[e] + 0.03, color="black", linewidth=3)
    info = METRICS[summary["metric"]]
    ax.set_title(textwrap.fill(f"{info.header}: average rank (1 = best) over {summary['n_blocks']} "
                               f"{'cases' if info.task == 'seg' else 'folds'}; Friedman p = {summary['test'].p:.3g}; "
                               f"bars: not different (Wilcoxon, {_CORRECTIONS[correction]}, α = {alpha})", 70), fontsize=9)
    ax.axis("off")
    return save_figure(fig, out, f"cd_{summary['metric']}")


UNCERTAINTY_PANELS = {"uncertainty_mean": "image-level uncertainty u", "voxel_unc_wrong": "pixel uncertainty, wrong voxels"}


def noise_curve(folds: pd.DataFrame, arm: str, metric: str) -> tuple[pd.Series, pd.Series]:
    """One arm's ``metric`` against σ: the mean and the std over folds (0 with one fold), indexed by σ.

    As the tables (:func:`bench.report.tables.fold_means`), a fold trained with several seeds counts once, at
    its seeds' mean, so the error bar is the spread over folds and not over fold × seed rows.
    """
    part = folds[(folds["arm"] == arm) & folds[metric].notna()] if metric in folds else folds.iloc[:0]
    if part.empty:
        return pd.Series(dtype=float), pd.Series(dtype=float)
    per_fold = fold_means(part, [metric], by=("sigma",))[metric].groupby(level="sigma")
    return per_fold.mean(), per_fold.std(ddof=1).fillna(0)


def plot_noise(folds: pd.DataFrame, arms: Sequence[str], labels: Sequence[str], metrics: Sequence[str], out: Path,
               *, xlabel: str = "noise σ") -> list[Path]:
    """Mean ± std over folds of each metric against the noise σ, one panel per metric, plus the evidential
    arms' mean uncertainties (``UNCERTAINTY_PANELS``) when any arm has them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in metrics if m in folds and folds[m].notna().any()]
    if folds["sigma"].nunique() < 2 or not shown:
        return []
    shown += [m for m in UNCERTAINTY_PANELS if m in folds and folds[m].notna().any()]
    cols = min(3, len(shown))
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), dpi=150, squeeze=False)
    for ax, metric in zip(axes.flat, shown):
        header = METRICS[metric].header if metric in METRICS else UNCERTAINTY_PANELS[metric]
        scale = 100 if metric in METRICS and METRICS[metric].percent else 1
        for i, (arm, label) in enumerate(zip(arms, labels)):
            mean, std = noise_curve(folds, arm, metric)
            if mean.empty:
                continue
            mean, std = mean * scale, std * scale
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            ax.errorbar(mean.index, mean.values, yerr=std.values, marker="o", capsize=3, color=colour, label=label)
        ax.set(xlabel=xlabel, ylabel=header)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out, "noise")
