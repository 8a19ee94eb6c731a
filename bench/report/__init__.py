"""Reports: from run directories only to ``reports/<study>/`` (never imports models or the loop).

Files: ``table.md``/``table.tex``/``table.csv`` (the papers' layout: mean ± std over folds, best bold,
second underlined, † for arms significantly different from the reference), ``significance.md``/``.csv``
(every pairwise test), ``versus_reference.csv``, ``folds.csv``, ``roc.png``/``.pdf``,
``cd_<metric>.png``/``.pdf`` (three or more arms), ``noise.png``/``.pdf`` and ``noise_table.md``/``.tex``/``.csv``
(noise grid; :mod:`bench.report.reliability`), ``uncertainty.md``/``.csv`` (calibration and uncertainty),
``overlays.png``/``.pdf``, ``cams.png``/``.pdf`` and ``uncertainty_maps.png``/``.pdf`` (:mod:`bench.report.maps`),
``tuning.md``/``.csv`` and ``tuning.png``/``.pdf`` (a study's loss-weight search; :mod:`bench.report.tuning`),
``learning.csv``/``learning.png``/``.pdf`` and ``learnability.md``/``.csv`` (learning curves on validation splits
and the pass / fail of ``pass_criteria``; :mod:`bench.report.learning`),
``report.md``, ``report.html`` and ``provenance.json``. ``reports/README.md`` indexes every study with a report.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.metrics import METRICS
from bench.study import Study

__all__ = ["build_report", "ReportFiles", "write_index"]


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    files: tuple[Path, ...]


def _provenance(per_case: pd.DataFrame, specs: list[dict]) -> dict:
    first = specs[0]
    prof = first["profile"]
    return {
        "code version(s)": ", ".join(sorted(per_case["code_version"].unique())),
        "data fingerprint": first["data_fingerprint"],
        "split hash": first["split_hash"],
        "profile": f"{prof['name']} ({prof['size']}³, {prof['epochs']} epochs, batch {prof['batch']}, "
                   f"width {prof['width']}, lr {prof['lr']})",
        "seeds": ", ".join(str(s) for s in sorted({s["seed"] for s in specs})),
        "folds": str(len({s["fold"] for s in specs})),
        "noise σ": ", ".join(f"{s:g}" for s in first["noise"]) + f" ({_NOISE_UNITS[first.get('noise_units', 'zscore')][0]})",
        "hardware": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}",
    }


# what σ means, per study noise_units: (report text, figure axis)
_NOISE_UNITS = {"range": ("fraction of each normalised volume's intensity range, i.e. σ on the [0, 1]-scaled image",
                          "of the [0, 1]-scaled image"),
                "zscore": ("units of the brain's intensity standard deviation", "units of the z-scored input")}


def _fmt_effect(metric: str, row) -> str:
    scale = 100 if METRICS[metric].percent else 1
    text = f"{row['effect'] * scale:+.2f}"
    if pd.notna(row["ci_low"]):
        text += f" [{row['ci_low'] * scale:+.2f}, {row['ci_high'] * scale:+.2f}]"
    return text


def _significance_md(table: pd.DataFrame, labels: dict[str, str], alpha: float) -> str:
    if table.empty:
        return "No two arms share a metric, so there is nothing to compare.\n"
    lines = ["| Metric | A | B | Test | A − B [95 % CI] | p | p (adjusted) |", "|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        adj = f"**{r['p_adj']:.3g}**" if r["p_adj"] < alpha else f"{r['p_adj']:.3g}"
        lines.append(f"| {METRICS[r['metric']].header} | {labels[r['arm_a']]} | {labels[r['arm_b']]} | {r['test']} | "
                     f"{_fmt_effect(r['metric'], r)} | {r['p']:.3g} | {adj} |")
    return "\n".join(lines) + "\n"


def _tests_used(vs_ref: pd.DataFrame, metrics) -> str:
    by_test: dict[str, list[str]] = {}
    for metric in metrics:
        tests = vs_ref.loc[vs_ref["metric"] == metric, "test"].unique()
        for test in tests:
            by_test.setdefault(test, []).append(METRICS[metric].header.split(" (")[0])
    return "; ".join(f"{test} ({', '.join(names)})" for test, names in by_test.items())


def _summary_sentences(vs_ref: pd.DataFrame, labels, reference: str, alpha: float, correction: str) -> str:
    if vs_ref.empty:
        return f"No arm shares a metric with the reference {labels[reference]}, so no difference was tested."
    significant = vs_ref[vs_ref["p_adj"] < alpha]
    name = {"holm": "Holm", "fdr_bh": "Benjamini–Hochberg"}[correction]
    if significant.empty:
        return (f"No arm differs significantly from the reference {labels[reference]} on any metric "
                f"(α = {alpha}, {name}-adjusted per metric over {vs_ref['arm_a'].nunique()} comparison(s)).")
    parts = []
    for _, r in significant.iterrows():
        direction = "higher" if r["effect"] > 0 else "lower"
        parts.append(f"{labels[r['arm_a']]} has a {direction} {METRICS[r['metric']].header.split(' (')[0]} "
                     f"({_fmt_effect(r['metric'], r)}, adjusted p = {r['p_adj']:.3g}, {r['test']})")
    rest = len(vs_ref) - len(significant)
    tail = f" The other {rest} comparison(s) are not significant." if rest else " Every comparison made is significant."
    return (f"Compared with the reference {labels[reference]} (α = {alpha}, {name}-adjusted per metric): "
            + "; ".join(parts) + "." + tail)


def build_report(study: Study, runs_root: Path, out_root: Path) -> ReportFiles:
    """Write the study's report from its finished units under ``runs_root``."""
    from bench.aggregate import fold_metrics, pooled_metrics
    from bench.report.collect import collect_per_case, collect_specs
    from bench.report.figures import plot_cd, plot_noise
    from bench.report.html import markdown_to_html
    from bench.report.maps import plot_maps
    from bench.report.reliability import noise_tables, uncertainty_table
    from bench.report.roc import plot_roc
    from bench.report.significance import friedman_summary, pairwise_table, versus_reference
    from bench.report.tables import auc_intervals, summary_table, to_latex, to_markdown

    study_root = Path(runs_root) / study.name
    per_case = collect_per_case(study_root)
    specs = collect_specs(study_root)
    arms = [a.name for a in study.arms if a.name in set(per_case["arm"])]
    labels = {a: study.arm(a).label for a in arms}
    label_list = [labels[a] for a in arms]
    folds, pooled = fold_metrics(per_case), pooled_metrics(per_case)
    table = summary_table(folds, pooled, arms, study.metrics)
    vs_ref = versus_reference(per_case, folds, arms, study.reference, study.metrics, study.correction) \
        if study.reference in arms else pd.DataFrame(columns=["metric", "arm_a", "p_adj", "test", "effect"])
    pairwise = pairwise_table(per_case, folds, arms, study.metrics, study.correction)
    marks = {(r["arm_a"], r["metric"]) for _, r in vs_ref.iterrows() if r["p_adj"] < study.alpha}

    out = Path(out_root) / study.name
    out.mkdir(parents=True, exist_ok=True)
    caption = f"{study.title}. Mean ± std over {study.folds} folds" + (f" ({study.reproduces})" if study.reproduces else "")
    markdown = to_markdown(table, label_list, study.metrics, marks)
    (out / "table.md").write_text(markdown)
    (out / "table.tex").write_text(to_latex(table, label_list, study.metrics, caption, marks))
    table.insert(1, "label", label_list)
    auc_lines, auc_frame = auc_intervals(per_case, arms, labels) if "auc" in study.metrics else ([], pd.DataFrame())
    if len(auc_frame) and auc_frame["seed"].nunique() == 1:
        table = table.merge(auc_frame[["arm", "auc_ci_low", "auc_ci_high"]], on="arm", how="left")
    table.to_csv(out / "table.csv", index=False)
    folds.to_csv(out / "folds.csv", index=False)
    pairwise.to_csv(out / "significance.csv", index=False)
    vs_ref.to_csv(out / "versus_reference.csv", index=False)
    significance_md = _significance_md(pairwise, labels, study.alpha)
    (out / "significance.md").write_text(significance_md)
    files = [out / f for f in ("table.md", "table.tex", "table.csv", "folds.csv", "significance.md", "significance.csv",
                               "versus_reference.csv")]
    files += plot_roc(per_case, arms, label_list, out, study.title)
    cd_figures = []
    for task in ("seg", "cls"):
        metric = next((m for m in study.metrics if METRICS[m].task == task), None)
        summary = friedman_summary(per_case, folds, arms, metric, study.correction) if metric else None
        if summary:
            cd_figures.append((summary, plot_cd(summary, labels, out, study.alpha, study.correction)))
            files += cd_figures[-1][1]
    units = specs[0].get("noise_units", "zscore")
    noise_files = plot_noise(folds, arms, label_list, study.metrics, out, xlabel=f"noise σ ({_NOISE_UNITS[units][1]})")
    files += noise_files
    noise_md, noise_tex, noise_frame = noise_tables(per_case, folds, pooled, arms, labels, study.metrics,
                                                    study.reference, study.correction, study.alpha)
    if noise_md:
        (out / "noise_table.md").write_text(noise_md)
        (out / "noise_table.tex").write_text(noise_tex)
        noise_frame.to_csv(out / "noise_table.csv", index=False)
        files += [out / "noise_table.md", out / "noise_table.tex", out / "noise_table.csv"]
    uncertainty_md, uncertainty_frame = uncertainty_table(per_case, folds, arms, labels)
    if uncertainty_md:
        (out / "uncertainty.md").write_text(uncertainty_md)
        uncertainty_frame.to_csv(out / "uncertainty.csv", index=False)
        files += [out / "uncertainty.md", out / "uncertainty.csv"]
    map_files = plot_maps(per_case, study_root, arms, labels, out)
    files += map_files

    correction = {"holm": "Holm", "fdr_bh": "Benjamini–Hochberg"}[study.correction]
    imputed = int(table["n_imputed"].sum())
    n_comparisons = int(vs_ref.groupby("metric").size().max()) if len(vs_ref) else 0
    provenance = _provenance(per_case, specs)
    lines = [f"# {study.title}", "", f"Study `{study.name}`" + (f" — reproduces {study.reproduces}." if study.reproduces else "."),
             "", study.description.strip(), "", "## Results", "", markdown,
             f"Mean ± std over folds at σ = 0 (no noise). Best in **bold**, second <u>underlined</u> "
             "(lower is better for VD, HD95, ASSD, ECE and Brier). "
             f"† = significantly different from the reference {labels.get(study.reference, study.reference)} at α = {study.alpha} "
             f"after {correction} correction per metric (at most {n_comparisons} comparison(s) each). "
             f"Tests: {_tests_used(vs_ref, study.metrics) or 'none applicable'}. "
             f"{imputed} segmentation case-evaluations used the empty-mask policy (empty reference and/or empty "
             "prediction; see `bench/metrics/seg.py`).", "", *auc_lines]
    missing = sorted({a.name for a in study.arms} - set(arms))
    if missing:
        lines += [f"Arms without finished units (not shown): {', '.join(missing)}.", ""]
    versions = sorted(per_case["code_version"].unique())
    if len(versions) > 1:
        lines += [f"**Warning:** these results come from {len(versions)} code versions ({', '.join(versions)}). "
                  "The spec hash does not cover the code, so delete the study's run folder and rerun to compare "
                  "methods under one version.", ""]
    lines += ["## Significance", "", _summary_sentences(vs_ref, labels, study.reference, study.alpha, study.correction)
              if study.reference in arms else "The reference arm has no finished units; nothing was tested.", ""]
    for summary, _ in cd_figures:
        header = METRICS[summary["metric"]].header
        lines += [f"Friedman test on {header} over {len(summary['arms'])} arms and {summary['n_blocks']} blocks: "
                  f"χ² = {summary['test'].statistic:.2f}, p = {summary['test'].p:.3g}.", ""]
    lines += [f"Every pairwise comparison ({correction}-adjusted over all pairs per metric; adjusted p < {study.alpha} in bold):",
              "", significance_md]
    for summary, figure_files in cd_figures:
        lines += [f"![Critical-difference diagram, {METRICS[summary['metric']].header}]({figure_files[0].name})", ""]
    if (out / "roc.png").exists():
        lines += ["## ROC", "", "![ROC](roc.png)", ""]
    if noise_md or noise_files:
        lines += ["## Robustness to Gaussian noise", "",
                  f"Every trained fold model evaluated again on its own test cases with N(0, σ²) noise added to the "
                  f"network input (σ in {_NOISE_UNITS[units][0]}); no retraining; the noise of a (case, σ) pair is drawn from a seed "
                  "of both, so every arm sees identical noisy inputs. Mean ± std over folds at each σ; best in "
                  "**bold**, second <u>underlined</u>; † = significantly different from the reference at that σ "
                  f"(same tests and {correction} correction as the clean table).", "", noise_md]
        if noise_files:
            lines += ["Mean ± std over folds of each metric (and of the evidential arms' mean uncertainties) against σ:",
                      "", "![Noise](noise.png)", ""]
    if uncertainty_md:
        lines += ["## Calibration and uncertainty", "",
                  "ECE (10 bins of the predicted class's confidence) and Brier score of the NMOSD probability, mean ± "
                  "std over folds at σ = 0. For evidential arms: the mean image-level uncertainty u = K / S of correctly "
                  "and wrongly classified cases and its AUROC as a detector of wrong predictions (pooled out-of-fold), "
                  "and the mean pixel-wise uncertainty of wrongly and correctly labelled brain voxels. A reliable "
                  "uncertainty is higher on errors (AUROC > 0.5)"
                  + (" and rises with the noise (second table)." if per_case["sigma"].nunique() > 1 else "."), "",
                  uncertainty_md]
        if out / "uncertainty_maps.png" in map_files:
            lines += ["![Uncertainty maps](uncertainty_maps.png)", ""]
    if out / "overlays.png" in map_files:
        lines += ["## Segmentation overlays", "", "Test cases chosen per class by median reference lesion volume "
                  "(not by any arm's result); the axial slice with the most reference lesion voxels; each arm's "
                  "prediction at σ = 0 from the fold that held the case out. True positive red, false positive "
                  "green, false negative yellow (joint-model paper Fig. 10).", "", "![Overlays](overlays.png)", ""]
    if out / "cams.png" in map_files:
        lines += ["## Lesion localisation maps", "", "The class-activation localisation map of the predicted "
                  "class (η-weighted mean of the three classification blocks' min–max-normalised CAMs) beside the "
                  "reference lesion mask, same cases and slices (joint-model paper Fig. 12).", "", "![CAM maps](cams.png)", ""]
    from bench.report.learning import learning_section
    from bench.report.tuning import tuning_section

    learning_lines, learning_files = learning_section(study, study_root, out, folds, arms, labels)
    lines += learning_lines
    files += learning_files
    tuning_lines, tuning_files = tuning_section(study.name, runs_root, out)
    lines += tuning_lines
    files += tuning_files
    efficiency = sorted(out.glob("efficiency_*.md"))
    if efficiency:
        lines += ["## Efficiency", "", "Measured by `bench perf` (a separate benchmark, not the training runs).", ""]
        for path in efficiency:
            lines += [path.read_text(), ""]
    lines += ["## Provenance", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in provenance.items()), ""]
    report_md = "\n".join(lines)
    (out / "report.md").write_text(report_md)
    (out / "report.html").write_text(markdown_to_html(report_md, study.title))
    (out / "provenance.json").write_text(json.dumps(provenance, indent=1))
    files += [out / "report.md", out / "report.html", out / "provenance.json"]
    write_index(Path(out_root))
    return ReportFiles(out, tuple(files))


def write_index(out_root: Path) -> Path:
    """``reports/README.md``: one line per study folder that has a ``report.md``."""
    entries = []
    for report in sorted(out_root.glob("*/report.md")):
        title = report.read_text().splitlines()[0].lstrip("# ").strip()
        entries.append(f"- [{report.parent.name}]({report.parent.name}/report.md) — {title}")
    index = out_root / "README.md"
    index.write_text("# Reports\n\nGenerated by `bench report`; one folder per study.\n\n" + "\n".join(entries) + "\n")
    return index
