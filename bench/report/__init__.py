"""Reports: from run directories only to ``reports/<study>/`` (never imports models or the loop).

Files: ``table.md``, ``table.tex`` (booktabs), ``table.csv`` (means, stds, pooled out-of-fold values),
``folds.csv`` (every fold's metrics at every σ), ``roc.png``/``roc.pdf`` and ``report.md`` with the
study's provenance. ``reports/README.md`` indexes every study with a report.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.study import Study

__all__ = ["build_report", "ReportFiles", "write_index"]


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    files: tuple[Path, ...]


def _provenance(per_case: pd.DataFrame, specs: list[dict]) -> dict:
    first = specs[0]
    return {
        "code version(s)": ", ".join(sorted(per_case["code_version"].unique())),
        "data fingerprint": first["data_fingerprint"],
        "split hash": first["split_hash"],
        "profile": f"{first['profile']['name']} ({first['profile']['size']}³, {first['profile']['epochs']} epochs, "
                   f"batch {first['profile']['batch']}, width {first['profile']['width']}, lr {first['profile']['lr']})",
        "seeds": ", ".join(str(s) for s in sorted({s["seed"] for s in specs})),
        "folds": str(len({s["fold"] for s in specs})),
        "noise σ": ", ".join(f"{s:g}" for s in first["noise"]),
        "hardware": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}",
    }


def build_report(study: Study, runs_root: Path, out_root: Path) -> ReportFiles:
    """Write the study's report from its finished units under ``runs_root``."""
    from bench.aggregate import fold_metrics, pooled_metrics
    from bench.report.collect import collect_per_case, collect_specs
    from bench.report.roc import plot_roc
    from bench.report.tables import summary_table, to_latex, to_markdown

    study_root = Path(runs_root) / study.name
    per_case = collect_per_case(study_root)
    specs = collect_specs(study_root)
    arms = [a.name for a in study.arms if a.name in set(per_case["arm"])]
    labels = [study.arm(a).label for a in arms]
    folds, pooled = fold_metrics(per_case), pooled_metrics(per_case)
    table = summary_table(folds, pooled, arms, study.metrics)
    out = Path(out_root) / study.name
    out.mkdir(parents=True, exist_ok=True)
    caption = f"{study.title}. Mean ± std over {study.folds} folds" + (f" ({study.reproduces})" if study.reproduces else "")
    markdown = to_markdown(table, labels, study.metrics)
    (out / "table.md").write_text(markdown)
    (out / "table.tex").write_text(to_latex(table, labels, study.metrics, caption))
    table.insert(1, "label", labels)
    table.to_csv(out / "table.csv", index=False)
    folds.to_csv(out / "folds.csv", index=False)
    files = [out / f for f in ("table.md", "table.tex", "table.csv", "folds.csv")]
    files += plot_roc(per_case, arms, labels, out, study.title)
    imputed = int(table["n_imputed"].sum())
    provenance = _provenance(per_case, specs)
    missing = sorted({a.name for a in study.arms} - set(arms))
    lines = [f"# {study.title}", "", f"Study `{study.name}`" + (f" — reproduces {study.reproduces}." if study.reproduces else "."),
             "", study.description.strip(), "", "## Results", "", markdown,
             f"Mean ± std over folds at σ = 0 (no noise). Best in **bold**, second <u>underlined</u> "
             f"(lower is better for VD, HD95, ASSD, ECE, Brier). {imputed} segmentation case-evaluations used the "
             "empty-mask policy (empty reference and/or empty prediction; see `bench/metrics/seg.py`).", ""]
    if missing:
        lines += [f"Arms without finished units (not shown): {', '.join(missing)}.", ""]
    versions = sorted(per_case["code_version"].unique())
    if len(versions) > 1:
        lines += [f"**Warning:** these results come from {len(versions)} code versions ({', '.join(versions)}). "
                  "The spec hash does not cover the code, so delete the study's run folder and rerun to compare "
                  "methods under one version.", ""]
    if (out / "roc.png").exists():
        lines += ["## ROC", "", "![ROC](roc.png)", ""]
    lines += ["## Provenance", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in provenance.items()), ""]
    (out / "report.md").write_text("\n".join(lines))
    (out / "provenance.json").write_text(json.dumps(provenance, indent=1))
    files += [out / "report.md", out / "provenance.json"]
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
