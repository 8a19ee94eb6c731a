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
A rebuild deletes the files of these kinds that it did not write again (:func:`remove_stale`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.metrics import METRICS
from bench.noise import LEGACY_NOISE_UNITS
from bench.study_types import Study

__all__ = ["build_report", "ReportFiles", "write_index"]


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    files: tuple[Path, ...]


def _hardware_text(hardware: dict[str, int]) -> str:
    """One machine: its line; several: each with its number of units (results differ across processor kinds)."""
    if len(hardware) == 1:
        return next(iter(hardware))
    return "; ".join(f"{name} ({n} unit{'s' if n != 1 else ''})" for name, n in sorted(hardware.items()))


def _provenance(per_case: pd.DataFrame, specs: list[dict], hardware: dict[str, int]) -> dict:
    from bench.spec import code_version

    first = specs[0]
    prof = first["profile"]
    return {
        "code version(s)": ", ".join(sorted(per_case["code_version"].unique())),
        # the tests and tables are the report's code: a report rebuilt later from the same units can differ
        "code version (report)": code_version(),
        "data fingerprint": first["data_fingerprint"],
        "split hash": first["split_hash"],
        "profile": f"{prof['name']} ({prof['size']}³, {prof['epochs']} epochs, batch {prof['batch']}, "
                   f"width {prof['width']}, lr {prof['lr']})",
        "seeds": ", ".join(str(s) for s in sorted({s["seed"] for s in specs})),
        "folds": str(len({s["fold"] for s in specs})),
        "noise σ": ", ".join(f"{s:g}" for s in first["noise"]) + f" ({_NOISE_UNITS[first.get('noise_units', LEGACY_NOISE_UNITS)][0]})",
        "hardware (training)": _hardware_text(hardware),
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


@dataclass
class _Report:
    """What every section of a report reads: the study, the collected results and the output folder."""

    study: Study
    runs_root: Path
    study_root: Path
    out: Path
    per_case: pd.DataFrame
    specs: list[dict]
    arms: list[str]
    labels: dict[str, str]
    folds: pd.DataFrame
    pooled: pd.DataFrame
    vs_ref: pd.DataFrame
    pairwise: pd.DataFrame
    methods: pd.DataFrame  # the fold-level corrected t of each arm against the reference (method_level)
    map_files: list[Path]
    hardware: dict[str, int]  # finished units per training machine (bench.machine.describe_hardware)

    @property
    def label_list(self) -> list[str]:
        return [self.labels[a] for a in self.arms]

    @property
    def correction(self) -> str:
        return {"holm": "Holm", "fdr_bh": "Benjamini–Hochberg"}[self.study.correction]

    @property
    def noise_units(self) -> str:
        return self.specs[0].get("noise_units", LEGACY_NOISE_UNITS)


Section = tuple[list[str], list[Path]]  # a section's Markdown lines and the files it wrote


def _collect(study: Study, runs_root: Path, out_root: Path) -> _Report:
    """Step 1: read the finished units, aggregate per fold and pooled, run every test, draw the maps."""
    from bench.aggregate import fold_metrics, pooled_metrics
    from bench.report.collect import collect_hardware, collect_per_case, collect_specs
    from bench.report.maps import plot_maps
    from bench.report.significance import method_level, pairwise_table, versus_reference
    from bench.store import done_units

    study_root = Path(runs_root) / study.name
    units = done_units(study_root)  # once: the table, the specs and the machines come from the same units
    per_case = collect_per_case(study_root, units)
    if study.repeats > 1:  # fold j of repeated cross-validation belongs to repeat j // k
        per_case = per_case.assign(repeat=per_case["fold"] // study.folds)
    specs = collect_specs(units)
    arms = [a.name for a in study.arms if a.name in set(per_case["arm"])]
    labels = {a: study.arm(a).label for a in arms}
    folds, pooled = fold_metrics(per_case), pooled_metrics(per_case)
    vs_ref = versus_reference(per_case, arms, study.reference, study.metrics, study.correction,
                              unit=study.analysis_unit) \
        if study.reference in arms else pd.DataFrame(columns=["metric", "arm_a", "p_adj", "test", "effect"])
    pairwise = pairwise_table(per_case, arms, study.metrics, study.correction, unit=study.analysis_unit)
    methods = method_level(per_case, folds, arms, study.reference, study.metrics, study.correction) \
        if study.reference in arms else pd.DataFrame()
    out = Path(out_root) / study.name
    out.mkdir(parents=True, exist_ok=True)
    map_files = plot_maps(per_case, study_root, arms, labels, out)
    return _Report(study, Path(runs_root), study_root, out, per_case, specs, arms, labels, folds, pooled, vs_ref,
                   pairwise, methods, map_files, collect_hardware(units))


def _results_section(r: _Report) -> Section:
    """The table in the papers' layout (Markdown, LaTeX, CSV), the fold table and the pooled AUC intervals."""
    from bench.report.significance import unit_sentence
    from bench.report.tables import auc_intervals, summary_table, to_latex, to_markdown

    study, out = r.study, r.out
    table = summary_table(r.folds, r.pooled, r.arms, study.metrics)
    marks = {(row["arm_a"], row["metric"]) for _, row in r.vs_ref.iterrows() if row["p_adj"] < study.alpha}
    n_seeds = int(table["n_seeds"].max()) if len(table) else 1
    seeds = f" (each fold's {n_seeds} training seeds averaged first)" if n_seeds > 1 else ""
    over = f"{study.folds} folds" + (f" × {study.repeats} repeats" if study.repeats > 1 else "") + seeds
    caption = f"{study.title}. Mean ± std over {over}" + (f" ({study.reproduces})" if study.reproduces else "")
    markdown = to_markdown(table, r.label_list, study.metrics, marks)
    (out / "table.md").write_text(markdown)
    (out / "table.tex").write_text(to_latex(table, r.label_list, study.metrics, caption, marks))
    table.insert(1, "label", r.label_list)
    auc_lines, auc_frame = auc_intervals(r.per_case, r.arms, r.labels) if "auc" in study.metrics else ([], pd.DataFrame())
    if len(auc_frame) and auc_frame["seed"].nunique() == 1:
        table = table.merge(auc_frame[["arm", "auc_ci_low", "auc_ci_high"]], on="arm", how="left")
    table.to_csv(out / "table.csv", index=False)
    r.folds.to_csv(out / "folds.csv", index=False)
    imputed = int(table["n_imputed"].sum())
    n_comparisons = int(r.vs_ref.groupby("metric").size().max()) if len(r.vs_ref) else 0
    lines = [f"# {study.title}", "", f"Study `{study.name}`" + (f" — reproduces {study.reproduces}." if study.reproduces else "."),
             "", study.description.strip(), "", "## Results", "", markdown,
             f"Mean ± std over folds{seeds} at σ = 0 (no noise). Best in **bold**, second <u>underlined</u> "
             "(lower is better for VD, HD95, ASSD, ECE and Brier). "
             f"† = significantly different from the reference {r.labels.get(study.reference, study.reference)} at α = {study.alpha} "
             f"after {r.correction} correction per metric (at most {n_comparisons} comparison(s) each): these trained "
             "models on these patients (whether the methods differ: the method-level table under Significance). "
             f"Tests: {_tests_used(r.vs_ref, study.metrics) or 'none applicable'}. "
             f"{unit_sentence(study.analysis_unit, study.repeats, r.per_case['seed'].nunique())} "
             f"{imputed} segmentation case-evaluations used the empty-mask policy (empty reference and/or empty "
             "prediction; see `bench/metrics/seg.py`).", "", *auc_lines]
    missing = sorted({a.name for a in study.arms} - set(r.arms))
    if missing:
        lines += [f"Arms without finished units (not shown): {', '.join(missing)}.", ""]
    versions = sorted(r.per_case["code_version"].unique())
    if len(versions) > 1:
        lines += [f"**Warning:** these results come from {len(versions)} code versions ({', '.join(versions)}). "
                  "The spec hash does not cover the code, so delete the study's run folder and rerun to compare "
                  "methods under one version.", ""]
    dirty = [v for v in versions if v.endswith("-dirty")]
    if dirty:
        lines += [f"**Warning:** {', '.join(dirty)}: trained from a working tree with uncommitted changes, so these "
                  "numbers may not be reproducible from any commit. For a publishable table, rerun from a clean "
                  "checkout (`git status` empty).", ""]
    if len(r.hardware) > 1:
        lines += [f"**Warning:** these units trained on {len(r.hardware)} different machines (see the provenance). "
                  "A unit's numbers are reproducible bit for bit only on the processor kind it trained on, and "
                  "the spread between kinds can be as large as a difference between methods at a short budget "
                  "(docs/design.md, \"Reproducibility\"); rerun on one machine kind to compare methods.", ""]
    return lines, [out / f for f in ("table.md", "table.tex", "table.csv", "folds.csv")]


def _significance_section(r: _Report) -> Section:
    """Every pairwise test, the comparison with the reference in words, Friedman tests and CD diagrams, ROC."""
    from bench.report.figures import plot_cd
    from bench.report.roc import plot_roc
    from bench.report.significance import friedman_summary

    study, out = r.study, r.out
    r.pairwise.to_csv(out / "significance.csv", index=False)
    r.vs_ref.to_csv(out / "versus_reference.csv", index=False)
    significance_md = _significance_md(r.pairwise, r.labels, study.alpha)
    (out / "significance.md").write_text(significance_md)
    files = [out / f for f in ("significance.md", "significance.csv", "versus_reference.csv")]
    if len(r.methods):
        r.methods.to_csv(out / "method_level.csv", index=False)
        files.append(out / "method_level.csv")
    files += plot_roc(r.per_case, r.arms, r.label_list, out, study.title)
    cd_figures = []
    for task in ("seg", "cls"):
        metric = next((m for m in study.metrics if METRICS[m].task == task), None)
        summary = friedman_summary(r.per_case, r.folds, r.arms, metric, study.correction, study.analysis_unit) \
            if metric else None
        if summary:
            cd_figures.append((summary, plot_cd(summary, r.labels, out, study.alpha, study.correction)))
            files += cd_figures[-1][1]
    lines = ["## Significance", "", _summary_sentences(r.vs_ref, r.labels, study.reference, study.alpha, study.correction)
             if study.reference in r.arms else "The reference arm has no finished units; nothing was tested.", ""]
    for summary, _ in cd_figures:
        header = METRICS[summary["metric"]].header
        lines += [f"Friedman test on {header} over {len(summary['arms'])} arms and {summary['n_blocks']} blocks: "
                  f"χ² = {summary['test'].statistic:.2f}, p = {summary['test'].p:.3g}.", ""]
    lines += [f"Every pairwise comparison ({r.correction}-adjusted over all pairs per metric; adjusted p < {study.alpha} in bold):",
              "", significance_md]
    if len(r.methods):
        repeats = f" × {study.repeats} repeats" if study.repeats > 1 else ""
        lines += ["### Method level: corrected resampled t over folds", "",
                  f"The tests above compare the arms' trained models on these patients. Whether one *method* beats "
                  f"another is asked of the per-fold values ({study.folds} folds{repeats}, training seeds averaged) "
                  "by Nadeau and Bengio's corrected resampled t-test, against the reference "
                  f"({r.correction}-adjusted per metric; not used for the table's †). Its error rate depends on how "
                  "much a trained model depends on the scans it was trained on, which one dataset cannot tell: "
                  "`bench calibrate` measures it near α or conservative at one repeat with a moderate dependence, and "
                  "anti-conservative with repeated cross-validation or a strong dependence (reports/calibration/).",
                  "",
                  _significance_md(r.methods, r.labels, study.alpha)]
    for summary, figure_files in cd_figures:
        lines += [f"![Critical-difference diagram, {METRICS[summary['metric']].header}]({figure_files[0].name})", ""]
    if (out / "roc.png").exists():
        lines += ["## ROC", "", "![ROC](roc.png)", ""]
    return lines, files


def _noise_section(r: _Report) -> Section:
    """The noise grid: tables with their tests and the metric-against-σ figure."""
    from bench.report.figures import plot_noise
    from bench.report.reliability import noise_tables

    study, out = r.study, r.out
    files = plot_noise(r.folds, r.arms, r.label_list, study.metrics, out, xlabel=f"noise σ ({_NOISE_UNITS[r.noise_units][1]})")
    figures = list(files)
    noise_md, noise_tex, noise_frame = noise_tables(r.per_case, r.folds, r.pooled, r.arms, r.labels, study.metrics,
                                                    study.reference, study.correction, study.alpha, study.analysis_unit)
    if noise_md:
        (out / "noise_table.md").write_text(noise_md)
        (out / "noise_table.tex").write_text(noise_tex)
        noise_frame.to_csv(out / "noise_table.csv", index=False)
        files += [out / "noise_table.md", out / "noise_table.tex", out / "noise_table.csv"]
    if not (noise_md or figures):
        return [], files
    lines = ["## Robustness to Gaussian noise", "",
             f"Every trained fold model evaluated again on its own test cases with N(0, σ²) noise added to the "
             f"network input (σ in {_NOISE_UNITS[r.noise_units][0]}); no retraining; the noise of a (case, σ) pair is drawn from a seed "
             "of both, so every arm sees identical noisy inputs. Mean ± std over folds at each σ; best in "
             "**bold**, second <u>underlined</u>; † = significantly different from the reference at that σ "
             f"(same tests and {r.correction} correction as the clean table).", "", noise_md]
    if figures:
        lines += ["Mean ± std over folds of each metric (and of the evidential arms' mean uncertainties) against σ:",
                  "", "![Noise](noise.png)", ""]
    return lines, files


def _uncertainty_section(r: _Report) -> Section:
    """Calibration (ECE, Brier) and, for evidential arms, how well their uncertainty flags errors."""
    from bench.report.reliability import uncertainty_table

    out = r.out
    uncertainty_md, uncertainty_frame = uncertainty_table(r.per_case, r.folds, r.arms, r.labels)
    if not uncertainty_md:
        return [], []
    (out / "uncertainty.md").write_text(uncertainty_md)
    uncertainty_frame.to_csv(out / "uncertainty.csv", index=False)
    lines = ["## Calibration and uncertainty", "",
             "ECE (10 bins of the predicted class's confidence) and Brier score of the NMOSD probability, mean ± "
             "std over folds at σ = 0. For evidential arms: the mean image-level uncertainty u = K / S of correctly "
             "and wrongly classified cases and its AUROC as a detector of wrong predictions (pooled out-of-fold), "
             "and the mean pixel-wise uncertainty of wrongly and correctly labelled brain voxels. A reliable "
             "uncertainty is higher on errors (AUROC > 0.5)"
             + (" and rises with the noise (second table)." if r.per_case["sigma"].nunique() > 1 else "."), "",
             uncertainty_md]
    if out / "uncertainty_maps.png" in r.map_files:
        lines += ["![Uncertainty maps](uncertainty_maps.png)", ""]
    return lines, [out / "uncertainty.md", out / "uncertainty.csv"]


def _maps_section(r: _Report) -> Section:
    """Segmentation overlays and CAM localisation maps (drawn in :func:`_collect`)."""
    lines = []
    if r.out / "overlays.png" in r.map_files:
        lines += ["## Segmentation overlays", "", "Test cases chosen per class by median reference lesion volume "
                  "(not by any arm's result); the axial slice with the most reference lesion voxels; each arm's "
                  "prediction at σ = 0 from the fold that held the case out. True positive red, false positive "
                  "green, false negative yellow (joint-model paper Fig. 10).", "", "![Overlays](overlays.png)", ""]
    if r.out / "cams.png" in r.map_files:
        lines += ["## Lesion localisation maps", "", "The class-activation localisation map of the predicted "
                  "class (η-weighted mean of the three classification blocks' min–max-normalised CAMs) beside the "
                  "reference lesion mask, same cases and slices (joint-model paper Fig. 12).", "", "![CAM maps](cams.png)", ""]
    return lines, list(r.map_files)


def _learning_section(r: _Report) -> Section:
    from bench.report.learning import learning_section

    return learning_section(r.study, r.study_root, r.out, r.folds, r.arms, r.labels)


def _tuning_section(r: _Report) -> Section:
    from bench.report.tuning import tuning_section

    return tuning_section(r.study.name, r.runs_root, r.out)


def _efficiency_section(r: _Report) -> Section:
    """The `bench perf` tables saved beside the report, if any."""
    efficiency = sorted(r.out.glob("efficiency_*.md"))
    if not efficiency:
        return [], []
    lines = ["## Efficiency", "", "Measured by `bench perf` (a separate benchmark, not the training runs).", ""]
    for path in efficiency:
        lines += [path.read_text(), ""]
    return lines, []


# Every file name a build may write (the module docstring); report.md, report.html and provenance.json are
# rewritten by every build. Other files in the folder (``bench perf``'s efficiency_*.md, a user's notes) are not
# the report's and are never touched.
OWNED = ("table.*", "significance.*", "versus_reference.csv", "folds.csv", "method_level.csv", "roc.*", "cd_*.*",
         "noise.*", "noise_table.*", "uncertainty.*", "overlays.*", "cams.*", "uncertainty_maps.*", "tuning.*",
         "learning.*", "learnability.*")


def remove_stale(out: Path, written) -> list[Path]:
    """Delete the files an earlier build wrote that this one did not (a CD diagram of a metric no longer in the
    study, a noise table after the grid was dropped, the method-level table without a reference...), so that a
    rebuilt folder never mixes in outputs of older results. Returns what it deleted."""
    keep = {Path(p).resolve() for p in written}
    stale = sorted({p for pattern in OWNED for p in out.glob(pattern) if p.is_file() and p.resolve() not in keep})
    for path in stale:
        path.unlink()
    return stale


SECTIONS = (_results_section, _significance_section, _noise_section, _uncertainty_section, _maps_section,
            _learning_section, _tuning_section, _efficiency_section)


def build_report(study: Study, runs_root: Path, out_root: Path) -> ReportFiles:
    """Write the study's report from its finished units under ``runs_root``: collect, then each of
    :data:`SECTIONS` (its Markdown lines and files), then report.md / .html and the provenance."""
    from bench.report.html import markdown_to_html

    report = _collect(study, runs_root, out_root)
    lines, files = [], []
    for section in SECTIONS:
        section_lines, section_files = section(report)
        lines += section_lines
        files += section_files
    provenance = _provenance(report.per_case, report.specs, report.hardware)
    lines += ["## Provenance", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in provenance.items()), ""]
    out = report.out
    report_md = "\n".join(lines)
    (out / "report.md").write_text(report_md)
    (out / "report.html").write_text(markdown_to_html(report_md, study.title))
    (out / "provenance.json").write_text(json.dumps(provenance, indent=1))
    files += [out / "report.md", out / "report.html", out / "provenance.json"]
    remove_stale(out, files)
    write_index(Path(out_root))
    return ReportFiles(out, tuple(files))


def write_index(out_root: Path) -> Path:
    """``reports/README.md``: one line per study folder that has a ``report.md``, and the calibration report."""
    entries = []
    for report in sorted(out_root.glob("*/report.md")):
        title = report.read_text().splitlines()[0].lstrip("# ").strip()
        entries.append(f"- [{report.parent.name}]({report.parent.name}/report.md) — {title}")
    if (out_root / "calibration" / "calibration.md").exists():  # `bench calibrate`: the tests' error rates
        entries.append("- [calibration](calibration/calibration.md) — Calibration of the significance tests "
                       "(`bench calibrate`)")
    index = out_root / "README.md"
    index.write_text("# Reports\n\nGenerated by `bench report`; one folder per study.\n\n" + "\n".join(entries) + "\n")
    return index
