"""ROC panel (paper Figs. 9 and 11): per-fold curves (thin), mean curve on a common FPR grid with a
±1 std band, AUC mean ± std in the legend, chance diagonal. Okabe–Ito colour-blind-safe palette."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.style import OKABE_ITO, save_figure

__all__ = ["plot_roc"]


def plot_roc(per_case: pd.DataFrame, arms: Sequence[str], labels: Sequence[str], out: Path, title: str) -> list[Path]:
    """Write ``roc.png`` and ``roc.pdf`` under ``out``; returns the files (empty when no arm classifies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    clean = per_case[(per_case["sigma"] == 0) & (per_case["label"] >= 0)]
    if "prob_nmosd" not in clean or clean["prob_nmosd"].isna().all():
        return []
    grid = np.linspace(0, 1, 101)
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=150)
    for i, (arm, label) in enumerate(zip(arms, labels)):
        part = clean[(clean["arm"] == arm) & clean["prob_nmosd"].notna()]
        if part.empty:
            continue
        colour, tprs, aucs = OKABE_ITO[i % len(OKABE_ITO)], [], []
        for _, fold in part.groupby(["seed", "fold"]):
            if fold["label"].nunique() < 2:
                continue
            fpr, tpr, _ = roc_curve(fold["label"], fold["prob_nmosd"])
            ax.plot(fpr, tpr, color=colour, alpha=0.25, linewidth=0.8)
            interp = np.interp(grid, fpr, tpr)
            interp[0] = 0.0
            tprs.append(interp)
            aucs.append(roc_auc_score(fold["label"], fold["prob_nmosd"]))
        if not tprs:
            continue
        ddof = 1 if len(tprs) > 1 else 0  # sample std, as in the tables
        mean, std = np.mean(tprs, axis=0), np.std(tprs, axis=0, ddof=ddof)
        mean[-1] = 1.0
        ax.plot(grid, mean, color=colour, linewidth=2.0,
                label=f"{label} (AUC {np.mean(aucs) * 100:.1f} ± {np.std(aucs, ddof=ddof) * 100:.1f})")
        ax.fill_between(grid, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1), color=colour, alpha=0.15)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate (1 − specificity)",
           ylabel="True positive rate (sensitivity, NMOSD)")
    ax.set_title(textwrap.fill(title, 48), fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out, "roc")
