"""Reliability sections of a report: the noise tables (UML Table 2) and calibration / uncertainty (UML §3).

* :func:`noise_tables` — for every σ > 0 of the grid, the study table at that σ (mean ± std over folds,
  best bold, second underlined) with † for arms that differ from the reference *at that σ* (the same
  paired tests as the clean table, on identical noisy inputs), in Markdown, LaTeX and long CSV.
* :func:`uncertainty_table` — per arm with a classifier: ECE and Brier (mean ± std over folds), and for
  evidential arms the mean image-level uncertainty of correct and of wrong cases, how well it separates
  them (AUROC of the uncertainty for "the prediction is wrong", pooled out-of-fold), and the mean
  pixel-wise uncertainty of wrongly and correctly labelled brain voxels; then the same uncertainties at
  every σ, to show whether they rise with the noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.report.tables import fold_means

__all__ = ["noise_tables", "uncertainty_table", "error_detection_auc"]


def noise_tables(per_case: pd.DataFrame, folds: pd.DataFrame, pooled: pd.DataFrame, arms: Sequence[str],
                 labels: dict[str, str], metrics: Sequence[str], reference: str, correction: str,
                 alpha: float, unit: str = "patient") -> tuple[str, str, pd.DataFrame]:
    """(Markdown, LaTeX, long CSV frame) of the study table at every σ > 0; empty when the grid is only σ = 0."""
    from bench.report.significance import versus_reference
    from bench.report.tables import summary_table, to_latex, to_markdown

    sigmas = sorted(s for s in per_case["sigma"].unique() if s > 0)
    markdown, latex, frames = [], [], []
    label_list = [labels[a] for a in arms]
    for sigma in sigmas:
        table = summary_table(folds, pooled, arms, metrics, sigma=sigma)
        vs_ref = versus_reference(per_case, arms, reference, metrics, correction, sigma=sigma, unit=unit) \
            if reference in arms else pd.DataFrame(columns=["metric", "arm_a", "p_adj"])
        marks = {(r["arm_a"], r["metric"]) for _, r in vs_ref.iterrows() if r["p_adj"] < alpha}
        markdown += [f"**σ = {sigma:g}**", "", to_markdown(table, label_list, metrics, marks)]
        latex.append(to_latex(table, label_list, metrics, f"Noise σ = {sigma:g}: mean ± std over folds", marks))
        table.insert(0, "sigma", sigma)
        table.insert(2, "label", label_list)
        table["significant_vs_reference"] = [",".join(m for m in metrics if (a, m) in marks) for a in arms]
        frames.append(table)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return "\n".join(markdown), "\n".join(latex), frame


def error_detection_auc(uncertainty: np.ndarray, wrong: np.ndarray) -> float:
    """AUROC of ``uncertainty`` as a score for ``wrong`` (1 = the prediction is wrong); NaN with one class.

    >>> error_detection_auc(np.array([0.1, 0.2, 0.9]), np.array([0, 0, 1]))
    1.0
    """
    from sklearn.metrics import roc_auc_score

    wrong = np.asarray(wrong, dtype=int)
    if len(np.unique(wrong)) < 2:
        return float("nan")
    return float(roc_auc_score(wrong, np.asarray(uncertainty, dtype=float)))


def _fmt(value: float, std: float | None = None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:.{digits}f}"
    if std is not None and not math.isnan(std):
        text += f" ± {std:.{digits}f}"
    return text


def uncertainty_table(per_case: pd.DataFrame, folds: pd.DataFrame, arms: Sequence[str],
                      labels: dict[str, str]) -> tuple[str, pd.DataFrame]:
    """(Markdown, CSV frame) of calibration and uncertainty; empty when no arm classifies or has uncertainty."""
    rows = []
    sigmas = sorted(per_case["sigma"].unique())
    for arm in arms:
        cases = per_case[per_case["arm"] == arm]
        has_cls = "prob_nmosd" in cases and cases["prob_nmosd"].notna().any()
        has_unc = "uncertainty" in cases and cases["uncertainty"].notna().any()
        has_voxel = "voxel_unc_wrong" in cases and cases["voxel_unc_right"].notna().any()
        if not (has_cls or has_voxel):
            continue
        clean_folds = fold_means(folds[(folds["arm"] == arm) & (folds["sigma"] == 0)], ("ece", "brier"))
        clean = cases[(cases["sigma"] == 0) & (cases["label"] >= 0)] if has_cls else cases[cases["sigma"] == 0]
        row: dict = {"arm": arm, "label": labels[arm]}
        if has_cls:
            for m in ("ece", "brier"):
                row[f"{m}_mean"], row[f"{m}_std"] = float(clean_folds[m].mean()), float(clean_folds[m].std(ddof=1))
        if has_unc:
            wrong = clean["pred"] != clean["label"]
            row["u_correct"] = float(clean.loc[~wrong, "uncertainty"].mean())
            row["u_wrong"] = float(clean.loc[wrong, "uncertainty"].mean()) if wrong.any() else float("nan")
            row["u_error_auc"] = error_detection_auc(clean["uncertainty"], wrong)
        if has_voxel:
            row["voxel_u_wrong"] = float(clean["voxel_unc_wrong"].mean())
            row["voxel_u_right"] = float(clean["voxel_unc_right"].mean())
        for sigma in sigmas:
            at = cases[cases["sigma"] == sigma]
            if has_unc:
                row[f"u_sigma_{sigma:g}"] = float(at["uncertainty"].mean())
            if has_voxel:
                row[f"voxel_u_wrong_sigma_{sigma:g}"] = float(at["voxel_unc_wrong"].mean())
        rows.append(row)
    if not rows:
        return "", pd.DataFrame()
    frame = pd.DataFrame(rows)
    lines = ["| Method | ECE | Brier | U (correct) | U (wrong) | U error-detection AUROC | voxel U (wrong) | "
             "voxel U (right) |", "|---|:---:|:---:|:---:|:---:|:---:|:---:|:---:|"]
    for _, r in frame.iterrows():
        lines.append(f"| {r['label']} | {_fmt(r.get('ece_mean'), r.get('ece_std'))} | "
                     f"{_fmt(r.get('brier_mean'), r.get('brier_std'))} | {_fmt(r.get('u_correct'))} | "
                     f"{_fmt(r.get('u_wrong'))} | {_fmt(r.get('u_error_auc'))} | {_fmt(r.get('voxel_u_wrong'))} | "
                     f"{_fmt(r.get('voxel_u_right'))} |")
    text = "\n".join(lines) + "\n"
    if len(sigmas) > 1 and any(c.startswith(("u_sigma", "voxel_u_wrong_sigma")) for c in frame):
        header = ["Method"] + [f"U (σ = {s:g})" for s in sigmas] + [f"voxel U wrong (σ = {s:g})" for s in sigmas]
        lines = ["| " + " | ".join(header) + " |", "|---|" + ":---:|" * (len(header) - 1)]
        for _, r in frame.iterrows():
            cells = [_fmt(r.get(f"u_sigma_{s:g}")) for s in sigmas] + \
                    [_fmt(r.get(f"voxel_u_wrong_sigma_{s:g}")) for s in sigmas]
            if any(c != "–" for c in cells):  # evidential arms only
                lines.append("| " + " | ".join([r["label"], *cells]) + " |")
        text += "\n" + "\n".join(lines) + "\n"
    return text, frame
