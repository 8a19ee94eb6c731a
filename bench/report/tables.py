"""The study table: mean ± std over folds (a fold's training seeds averaged first) at σ = 0, best in bold and
second underlined by each metric's direction, in Markdown, LaTeX (booktabs) and CSV."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.metrics import METRICS

__all__ = ["fold_means", "summary_table", "rank_marks", "to_markdown", "to_latex", "auc_intervals"]


def fold_means(part: pd.DataFrame, metrics: Sequence[str], by: Sequence[str] = ()) -> pd.DataFrame:
    """One row per fold (per repeat and fold with repeated cross-validation) of one arm's fold rows: the mean
    of the fold's training seeds for each of ``metrics`` present. ``by`` names further keys that stay apart
    (``("sigma",)``: one row per noise level and fold); they lead the index."""
    keys = [*by, *(k for k in ("repeat", "fold") if k in part)]
    present = [m for m in metrics if m in part]
    return part.groupby(keys)[present].mean() if keys else part[present]


def summary_table(folds: pd.DataFrame, pooled: pd.DataFrame, arms: Sequence[str], metrics: Sequence[str],
                  sigma: float = 0.0) -> pd.DataFrame:
    """One row per arm at noise ``sigma``: ``<m>_mean``, ``<m>_std`` over folds, ``<m>_pooled``, ``n_folds``,
    ``n_seeds``, ``n_imputed``.

    A fold trained with several seeds counts once, at the mean of its seeds: the seeds share the fold's
    patients, so the spread is the folds' (as the method-level test, which averages seeds too). The folds of
    repeated cross-validation (a ``repeat`` column) are different partitions and each counts.
    """
    clean, pooled_clean = folds[folds["sigma"] == sigma], pooled[pooled["sigma"] == sigma]
    rows = []
    for arm in arms:
        part, pooled_part = clean[clean["arm"] == arm], pooled_clean[pooled_clean["arm"] == arm]
        per_fold = fold_means(part, metrics)
        row: dict = {"arm": arm, "n_folds": len(per_fold),
                     "n_seeds": int(part["seed"].nunique()) if "seed" in part else 1}
        for m in metrics:
            values = per_fold[m].dropna() if m in per_fold else pd.Series(dtype=float)
            row[f"{m}_mean"] = float(values.mean()) if len(values) else np.nan
            row[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
            row[f"{m}_pooled"] = float(pooled_part[m].mean()) if m in pooled_part and len(pooled_part) else np.nan
        row["n_imputed"] = int(part["n_imputed"].sum()) if "n_imputed" in part else 0
        rows.append(row)
    return pd.DataFrame(rows)


def rank_marks(values: Sequence[float], direction: str) -> list[str]:
    """``"best"``, ``"second"`` or ``""`` per value (NaN never ranks; ties share the mark)."""
    finite = sorted({v for v in values if not (v is None or math.isnan(v))}, reverse=direction == "max")
    marks = []
    for v in values:
        if v is None or math.isnan(v) or not finite:
            marks.append("")
        elif v == finite[0]:
            marks.append("best")
        elif len(finite) > 1 and v == finite[1]:
            marks.append("second")
        else:
            marks.append("")
    return marks


def _cells(table: pd.DataFrame, metrics: Sequence[str], bold, underline, pm: str, marks=None, marker: str = "") -> dict[str, list[str]]:
    """Cell texts per header; ``marks`` = {(arm, metric)} significantly different from the reference."""
    marks = marks or set()
    columns = {}
    for m in metrics:
        info = METRICS[m]
        scale = 100.0 if info.percent else 1.0
        means = [round(v * scale, 2) if not math.isnan(v) else math.nan for v in table[f"{m}_mean"]]
        rank = rank_marks(means, info.direction)
        cells = []
        for arm, mean, std, mark in zip(table["arm"], means, table[f"{m}_std"], rank):
            if math.isnan(mean):
                cells.append("–")
                continue
            text = f"{mean:.2f}" + ("" if math.isnan(std) else f"{pm}{std * scale:.2f}")
            text = bold(text) if mark == "best" else underline(text) if mark == "second" else text
            cells.append(text + (marker if (arm, m) in marks else ""))
        columns[info.header] = cells
    return columns


def to_markdown(table: pd.DataFrame, labels: Sequence[str], metrics: Sequence[str], marks=None) -> str:
    cols = _cells(table, metrics, lambda t: f"**{t}**", lambda t: f"<u>{t}</u>", " ± ", marks, " †")
    header = ["Method", *cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * len(cols)) + "|"]
    for i, label in enumerate(labels):
        lines.append("| " + " | ".join([label, *(cols[h][i] for h in cols)]) + " |")
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("±", r"$\pm$"),
                 ("³", r"$^3$"), ("σ", r"$\sigma$"), ("×", r"$\times$"), ("−", "-"), ("–", "--"), ("—", "---"),
                 ("β", r"$\beta$"), ("α", r"$\alpha$"), ("→", r"$\rightarrow$"), ("≤", r"$\leq$"), ("≥", r"$\geq$"),
                 ("†", r"$^{\dagger}$")):
        text = text.replace(a, b)
    return text


def to_latex(table: pd.DataFrame, labels: Sequence[str], metrics: Sequence[str], caption: str, marks=None) -> str:
    """A booktabs table (``\\toprule``/``\\midrule``/``\\bottomrule``) through pandas' Styler; compiles in a
    plain ``article`` with ``\\usepackage{booktabs}``."""
    cols = _cells(table, metrics, lambda t: rf"\textbf{{{t}}}", lambda t: rf"\underline{{{t}}}", r" $\pm$ ", marks,
                  r"$^{\dagger}$")
    frame = pd.DataFrame({"Method": [latex_escape(lab) for lab in labels],
                          **{latex_escape(h): v for h, v in cols.items()}}).replace("–", "--")
    return frame.style.hide(axis="index").to_latex(hrules=True, caption=latex_escape(caption), position="t",
                                column_format="l" + "c" * len(cols), position_float="centering")


def auc_intervals(per_case: pd.DataFrame, arms: Sequence[str], labels: dict[str, str], *, sigma: float = 0.0,
                  n_boot: int = 2000) -> tuple[list[str], pd.DataFrame]:
    """Each classifying arm's pooled out-of-fold AUC with a patient-level bootstrap 95 % CI
    (:func:`bench.stats.cluster_bootstrap_auc`): the report's lines and a frame (arm, auc_pooled, ci_low, ci_high)."""
    from bench.stats import cluster_bootstrap_auc

    rows = []
    for arm in arms:
        part = per_case[(per_case["arm"] == arm) & (per_case["sigma"] == sigma)].dropna(subset=["prob_nmosd"])
        part = part[part["label"].isin([0, 1])]
        if "repeat" in part:  # one prediction per scan: the first cross-validation of a repeated one
            part = part[part["repeat"] == 0]
        if part.empty or part["label"].nunique() < 2:
            continue
        for seed, rows_seed in part.groupby("seed", sort=True):
            auc, low, high = cluster_bootstrap_auc(rows_seed["label"], rows_seed["prob_nmosd"], rows_seed["patient_id"],
                                                   n_boot=n_boot)
            rows.append({"arm": arm, "seed": seed, "auc_pooled": auc, "auc_ci_low": low, "auc_ci_high": high,
                         "n_cases": len(rows_seed), "n_patients": rows_seed["patient_id"].nunique()})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return [], frame
    several = frame["seed"].nunique() > 1
    cells = [f"{labels[r.arm]}{f' (seed {r.seed})' if several else ''} {100 * r.auc_pooled:.1f} "
             f"[{100 * r.auc_ci_low:.1f}, {100 * r.auc_ci_high:.1f}]" for r in frame.itertuples()]
    n = frame.iloc[0]
    lines = [f"Pooled out-of-fold AUC (%) with a 95 % CI from {n_boot:,} bootstrap resamples of patients (all of a "
             f"patient's scans together; {int(n.n_cases)} scans of {int(n.n_patients)} patients): " + "; ".join(cells) + ".", ""]
    return lines, frame
