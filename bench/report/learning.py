"""Learning curves and the learnability verdict in a study's report (from the run directories only).

* **Learning curves** — every finished unit's ``history.csv``: the training loss per epoch and, for a
  study with ``training.validate: k``, the validation metrics (``val_auc``, ``val_dsc_lesion``, ...) measured
  after every epoch on the validation split held out of the unit's *training* fold (never its test fold).
  Mean ± std over folds per arm, each fold's seeds averaged first: ``learning.csv`` and ``learning.png``/``.pdf``.
* **Learnability** — for a study with ``pass_criteria`` (metric → value), each arm's test-fold mean of
  every criterion its heads produce (AUC needs a classifier, DSC a segmenter), the value it must reach
  (≥, or ≤ for a lower-is-better metric) and the verdict: ``learnability.md``/``.csv``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.metrics import METRICS
from bench.report.style import OKABE_ITO, save_figure
from bench.report.tables import fold_means

__all__ = ["learning_section", "collect_history", "learnability_table"]


def collect_history(study_root: Path, arms: list[str]) -> pd.DataFrame:
    """Every finished unit's history rows with ``arm``, ``fold`` and ``seed`` columns (empty when none)."""
    frames = []
    for arm in arms:
        for done in sorted((study_root / arm).glob("fold_*/seed_*/DONE.json")):
            path = done.parent / "history.csv"
            if not path.exists():
                continue
            frame = pd.read_csv(path)
            frame.insert(0, "arm", arm)
            frame.insert(1, "fold", int(done.parent.parent.name.split("_")[1]))
            frame.insert(2, "seed", int(done.parent.name.split("_")[1]))
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _curves(history: pd.DataFrame, arms: list[str], labels: dict[str, str]) -> tuple[pd.DataFrame, list[str]]:
    columns = ["loss"] + [c for c in history.columns if c.startswith("val_")]
    # a fold's seeds are averaged first, so the band is the spread over folds (as the tables)
    grouped = fold_means(history, columns, by=("arm", "epoch")).groupby(level=["arm", "epoch"])
    mean, std = grouped.mean(), grouped.std(ddof=1)
    frame = mean.add_suffix("_mean").join(std.add_suffix("_std")).reset_index()
    frame.insert(1, "label", frame["arm"].map(labels))
    frame["arm"] = pd.Categorical(frame["arm"], categories=arms, ordered=True)
    return frame.sort_values(["arm", "epoch"]).reset_index(drop=True), columns


def _panel_title(column: str) -> str:
    if column == "loss":
        return "training loss (weighted total)"
    metric = column[len("val_"):]
    return f"validation {METRICS[metric].header.split(' (')[0]}" if metric in METRICS else column


def _plot(curves: pd.DataFrame, columns: list[str], arms: list[str], labels: dict[str, str], out: Path,
          title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(columns), figsize=(3.6 * len(columns), 3.2), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for i, arm in enumerate(arms):
            part = curves[curves["arm"] == arm]
            values = part[f"{column}_mean"].to_numpy(dtype=float)
            if part.empty or np.isnan(values).all():
                continue
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            spread = part[f"{column}_std"].fillna(0.0).to_numpy(dtype=float)
            style = ("-", "--", ":")[(i // len(OKABE_ITO)) % 3]  # more arms than colours: vary the line
            ax.plot(part["epoch"], values, color=colour, linestyle=style, label=labels[arm], linewidth=1.4)
            ax.fill_between(part["epoch"], values - spread, values + spread, color=colour, alpha=0.15, linewidth=0)
        ax.set_title(_panel_title(column), fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), fontsize=7, frameon=False)
    fig.suptitle(f"{title} — learning curves (mean ± std over folds)", fontsize=10)
    fig.tight_layout(rect=(0, 0.08 + 0.04 * math.ceil(len(names) / 4), 1, 0.95))
    return save_figure(fig, out, "learning")


def learnability_table(folds: pd.DataFrame, arms: list[str], labels: dict[str, str],
                       criteria: dict[str, float]) -> tuple[str, pd.DataFrame]:
    """Each arm's test-fold mean ± std (σ = 0) of every criterion it produces, the target and the verdict
    (the spread over folds, each fold's seeds averaged first, as the tables)."""
    clean = folds[folds["sigma"] == 0] if "sigma" in folds else folds
    rows = []
    for arm in arms:
        part = clean[clean["arm"] == arm]
        row: dict = {"arm": arm, "label": labels[arm]}
        verdicts = []
        for metric, target in criteria.items():
            values = fold_means(part, [metric])[metric].dropna() if metric in part else pd.Series(dtype=float)
            if values.empty:
                continue
            mean = float(values.mean())
            passed = mean <= target if METRICS[metric].direction == "min" else mean >= target
            row.update({f"{metric}_mean": mean, f"{metric}_std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                        f"{metric}_target": target, f"{metric}_pass": passed})
            verdicts.append(passed)
        row["passes"] = bool(verdicts) and all(verdicts)
        rows.append(row)
    frame = pd.DataFrame(rows)
    header = ["Method", *(f"{METRICS[m].header} (target {'≤' if METRICS[m].direction == 'min' else '≥'} "
                          f"{_pct(m, t)})" for m, t in criteria.items()), "Learns"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + ":---:|" * (len(header) - 1)]
    for row in rows:
        cells = []
        for metric in criteria:
            if f"{metric}_mean" not in row:
                cells.append("—")
                continue
            std = row[f"{metric}_std"]
            text = f"{_pct(metric, row[f'{metric}_mean'])}" + ("" if math.isnan(std) else f" ± {_pct(metric, std)}")
            cells.append(text if row[f"{metric}_pass"] else f"{text} ✗")
        cells.append("yes" if row["passes"] else "**no**")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", frame


def _pct(metric: str, value: float) -> str:
    return f"{100 * value:.1f}" if METRICS[metric].percent else f"{value:.3g}"


def learning_section(study, study_root: Path, out: Path, folds: pd.DataFrame, arms: list[str],
                     labels: dict[str, str]) -> tuple[list[str], list[Path]]:
    """The report's "Learning" section (lines) and the files it wrote; nothing for a study without
    validation curves or pass criteria."""
    history = collect_history(study_root, arms)
    has_curves = not history.empty and any(c.startswith("val_") for c in history.columns)
    criteria = dict(getattr(study, "pass_criteria", {}) or {})
    if not has_curves and not criteria:
        return [], []
    lines, files = ["## Learning", ""], []
    if criteria:
        table_md, frame = learnability_table(folds, arms, labels, criteria)
        (out / "learnability.md").write_text(table_md)
        frame.to_csv(out / "learnability.csv", index=False)
        files += [out / "learnability.md", out / "learnability.csv"]
        failing = [labels[a] for a, ok in zip(frame["arm"], frame["passes"]) if not ok]
        lines += ["Can each method learn? Mean ± std over the test folds (σ = 0) of each criterion the method's heads "
                  "produce, against the value it must reach; ✗ marks a miss. "
                  + (f"{len(arms) - len(failing)} of {len(arms)} methods reach every target; not reached: "
                     f"{', '.join(failing)}." if failing else f"All {len(arms)} methods reach every target."), "",
                  table_md]
    if has_curves:
        curves, columns = _curves(history, arms, labels)
        curves.to_csv(out / "learning.csv", index=False)
        files += [out / "learning.csv"] + _plot(curves, columns, arms, labels, out, study.title)
        lines += ["Learning curves: the training loss and the metrics on the validation split held out of each unit's "
                  f"training fold (1/{study.training.validate} of its patients, grouped and stratified; never the test "
                  "fold) after every epoch, mean ± std over folds. The test-fold tables above use the models after "
                  "the last epoch.", "", "![Learning curves](learning.png)", ""]
    return lines, files
