"""``reports/calibration/``: the type-I error and power tables and figure of ``bench calibrate``.

Every number comes from the simulation's rows (:func:`bench.calibrate.calibrate`); the text says which
tests fall inside the acceptance band of type-I error [0.03, 0.07] at α = 0.05 under the null they test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.calibrate import ALPHA, TESTS
from bench.report.style import OKABE_ITO, save_figure

__all__ = ["write_calibration", "BAND", "OWN_NULL"]

BAND = (0.03, 0.07)
#: the null each test of the tables is calibrated under (module docstring of bench.calibrate)
OWN_NULL = {name: ("method null", "method null, strong training-set dependence")
            if name.startswith(("corrected_t", "plain_t")) else ("trained-model null",) for name in TESTS}


def _cell(row) -> str:
    text = f"{row['rate']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    inside = BAND[0] <= row["rate"] <= BAND[1]
    return text if inside else f"**{text}**"


def _type1_table(frame: pd.DataFrame, null: str) -> str:
    part = frame[frame["null"] == null]
    designs = list(dict.fromkeys(part["design"]))
    lines = ["| Test | Kind | " + " | ".join(designs) + " |", "|---|---|" + "---|" * len(designs)]
    for name in TESTS:
        rows = part[part["test"] == name].set_index("design")
        if rows.empty:
            continue
        cells = [_cell(rows.loc[d]) if d in rows.index else "–" for d in designs]
        lines.append(f"| {TESTS[name][0]} | {TESTS[name][1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _verdict(frame: pd.DataFrame) -> list[str]:
    """Per table test and null it tests: inside the band on every design, or where not."""
    lines = []
    for name, (what, kind) in TESTS.items():
        for null in OWN_NULL[name] if kind in ("suite", "method") else ():
            own = frame[(frame["test"] == name) & (frame["null"] == null)]
            if own.empty:
                continue
            outside = own[(own["rate"] < BAND[0]) | (own["rate"] > BAND[1])]
            if outside.empty:
                lines.append(f"- {what}, {null}: inside [{BAND[0]}, {BAND[1]}] on every design "
                             f"({own['rate'].min():.3f}–{own['rate'].max():.3f}).")
            else:
                where = "; ".join(f"{r['design']}: {r['rate']:.3f}" for _, r in outside.iterrows())
                lines.append(f"- {what}, {null}: **outside** the band on {where}.")
    return lines


def _plot_power(power: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    designs = list(dict.fromkeys(power["design"]))
    fig, axes = plt.subplots(len(designs), 2, figsize=(10, 3.4 * len(designs)), squeeze=False)
    for row, design in enumerate(designs):
        part = power[power["design"] == design]
        for col, (effect, tests, xlabel) in enumerate((
                ("seg_effect", ("wilcoxon_patient", "wilcoxon_scan", "holm_family"), "planted DSC difference"),
                ("cls_effect", ("delong_clustered", "delong_scan", "mcnemar_clustered", "permutation_patient",
                                "corrected_t"),
                 "planted class-separation gain (logit units)"))):
            ax = axes[row, col]
            for i, name in enumerate(tests):
                curve = part[part["test"] == name].sort_values(effect)
                ax.plot(curve[effect], curve["rate"], marker="o", color=OKABE_ITO[i % len(OKABE_ITO)],
                        linestyle={"suite": "-", "method": ":"}.get(TESTS[name][1], "--"), label=TESTS[name][0])
            ax.axhline(ALPHA, color="grey", linewidth=0.8)
            ax.set_ylim(0, 1)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("rejection rate")
            ax.set_title(design, fontsize=9)
            ax.legend(fontsize=6.5, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, out, "power")


def write_calibration(rows: list[dict], out: Path, *, replicates: int, seed: int, seconds: float, workers: int,
                      model: dict) -> list[Path]:
    """Write ``type1.md``/``.csv``, ``power.csv``/``.png``/``.pdf``, ``model.json`` and ``calibration.md``."""
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    type1 = frame[frame["null"] != "planted effect"]
    zero = type1.assign(seg_effect=0.0, cls_effect=0.0)
    power = pd.concat([zero[zero["null"] == "trained-model null"], frame[frame["null"] == "planted effect"]],
                      ignore_index=True)
    type1.to_csv(out / "type1.csv", index=False)
    power.to_csv(out / "power.csv", index=False)
    (out / "model.json").write_text(json.dumps(model, indent=1) + "\n")
    tables = {null: _type1_table(type1, null) for null in dict.fromkeys(type1["null"])}
    (out / "type1.md").write_text("\n".join(f"### {null}\n\n{table}" for null, table in tables.items()))
    files = [out / f for f in ("type1.csv", "type1.md", "power.csv", "model.json")] + _plot_power(power, out)
    lines = [
        "# Calibration of the significance tests", "",
        f"`bench calibrate --replicates {replicates} --seed {seed}`: {replicates:,} simulated studies per design and "
        f"null, {len(frame):,} rates, {seconds / 60:.1f} min on {workers} worker(s). The model, its two nulls and how "
        "to read this page: `bench/calibrate.py` and docs/statistics.md (\"Calibration\"); its parameters: "
        "`model.json`.", "",
        f"Type-I error at α = {ALPHA} with a Clopper–Pearson 95 % interval; **bold**: outside [{BAND[0]}, {BAND[1]}]. "
        "*suite* = the test the tables use (and their † markers), *method* = the method-level test each report "
        "gives beside them, *naive* = a variant (per-scan instead of per-patient, training seeds counted as "
        "repeats, no variance correction, the exact conditional McNemar).", "",
        "## Verdict: each test of the reports under the null it tests", "", *_verdict(type1), "",
        *[f"## Type-I error, {null}\n\n{table}" for null, table in tables.items()],
        "Per-case tests (Wilcoxon, DeLong, McNemar, permutation) compare the trained models on the cases at hand. "
        "Under the method null each trained model is better or worse by chance, so they find that difference; the "
        "fold-level corrected t-test is the one for a claim about the methods, and its error rate depends on how "
        "much a trained model depends on its training scans (Bengio and Grandvalet 2004: no cross-validation "
        "estimates that from one dataset).", "",
        "## Power", "", "![Power against effect size](power.png)", "",
    ]
    (out / "calibration.md").write_text("\n".join(lines))
    return files + [out / "calibration.md"]
