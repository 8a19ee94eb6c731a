"""The loss-weight search in a study's report (``bench tune``): tables and a figure from the files only.

Reads ``runs/<study>/tune/best.json``, ``trials.csv`` and ``importances.csv`` (written by
:func:`bench.tune_run.export_results`), never the Optuna storage. Writes ``tuning.md``/``tuning.csv``
(per outer fold: trials, best weights, the best inner objective and the inner objective of the
paper's weights; the spread of the best weights over outer folds next to the paper's fixed
weights; the parameter importances) and ``tuning.png``/``.pdf`` (optimisation history, best weights
per outer fold on the search's axis, importances).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.metrics import METRICS
from bench.report.style import OKABE_ITO, save_figure

__all__ = ["tuning_section", "weight_spread"]


def weight_spread(values: list[float], log: bool) -> dict[str, float]:
    """Centre and spread of one weight's best values over outer folds: geometric mean and geometric SD
    (×/÷) for a log-uniform search, mean and SD otherwise; plus min and max."""
    v = np.asarray(values, dtype=float)
    if log:
        logs = np.log(v)
        centre, spread = float(np.exp(logs.mean())), float(np.exp(logs.std(ddof=1))) if len(v) > 1 else float("nan")
    else:
        centre, spread = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")
    return {"centre": centre, "spread": spread, "min": float(v.min()), "max": float(v.max())}


def _fmt(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _objective_name(record: dict) -> str:
    names = [METRICS[m].header.split(" (")[0] for m in record["objective"]]
    return f"mean of {', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]


def _tables(record: dict, importances: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    space = list(record["space"])
    rows, lines = [], []
    header = ["Outer fold", "Trials (complete / pruned / failed)", *[f"best {w}" for w in space],
              "Inner objective, best", "Inner objective, paper's weights"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for fold, e in sorted(record["folds"].items(), key=lambda kv: int(kv[0])):
        best = [e.get("weights", {}).get(w) for w in space]
        rows.append({"fold": int(fold), "finished": e["finished"], "complete": e["complete"], "pruned": e["pruned"],
                     "failed": e["failed"], **{f"best_{w}": b for w, b in zip(space, best)},
                     "best_objective": e.get("value"), "defaults_objective": e.get("defaults_value")})
        lines.append(f"| {fold} | {e['complete']} / {e['pruned']} / {e['failed']} | "
                     + " | ".join(_fmt(b) for b in best)
                     + f" | {_fmt(e.get('value'))} | {_fmt(e.get('defaults_value'))} |")
    frame = pd.DataFrame(rows)
    spreads = {w: weight_spread(frame[f"best_{w}"].dropna().tolist(), record["log"]) for w in space
               if frame[f"best_{w}"].notna().any()}
    if spreads:
        sign = "×/÷" if record["log"] else "±"
        centre = "geometric mean ×/÷ geometric SD" if record["log"] else "mean ± SD"
        lines.append(f"| {centre} | | " + " | ".join(
            f"{_fmt(spreads[w]['centre'])} {sign} {_fmt(spreads[w]['spread'])}" if w in spreads else "—" for w in space)
            + f" | {_fmt(frame['best_objective'].mean())} | {_fmt(frame['defaults_objective'].mean())} |")
        lines.append("| range over outer folds | | " + " | ".join(
            f"{_fmt(spreads[w]['min'])}–{_fmt(spreads[w]['max'])}" if w in spreads else "—" for w in space) + " | | |")
    lines.append("| paper's fixed weights | | " + " | ".join(_fmt(record["defaults"][w]) for w in space) + " | | |")
    text = "\n".join(lines) + "\n"
    if not importances.empty:
        agg = importances.groupby("weight")["importance"].agg(["mean", "std", "count"]).sort_values("mean", ascending=False)
        text += ("\n| Weight | Importance (fANOVA), mean ± std over outer folds | Folds |\n|---|:---:|:---:|\n"
                 + "".join(f"| {w} | {r['mean']:.2f} ± {0 if pd.isna(r['std']) else r['std']:.2f} | {int(r['count'])} |\n"
                           for w, r in agg.iterrows()))
    return text, frame


def _plot(record: dict, trials: pd.DataFrame, importances: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    space = list(record["space"])
    panels = 3 if not importances.empty else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.6), dpi=150)
    maximise = record["direction"] == "maximize"
    ax = axes[0]
    for k, (fold, part) in enumerate(trials.groupby("fold")):
        colour = OKABE_ITO[k % len(OKABE_ITO)]
        part = part.sort_values("trial")
        done = part[part["state"] == "COMPLETE"]
        pruned = part[part["state"] == "PRUNED"]
        ax.scatter(done["trial"], done["value"], color=colour, s=22, label=f"outer fold {fold}")
        ax.scatter(pruned["trial"], pruned["last_value"], color=colour, marker="x", s=22)
        paper = done[done["defaults"].astype(bool)]
        ax.scatter(paper["trial"], paper["value"], facecolors="none", edgecolors="black", s=70, linewidths=1)
        if len(done):  # best so far, drawn to the fold's last trial
            running = done["value"].cummax() if maximise else done["value"].cummin()
            xs, ys = [*done["trial"], part["trial"].max()], [*running, running.iloc[-1]]
            ax.step(xs, ys, where="post", color=colour, alpha=0.6, linewidth=1)
    ax.set(xlabel="trial", ylabel=f"inner objective ({_objective_name(record)})",
           title="optimisation history\n(• complete, × pruned at its last estimate, ○ paper's weights)")
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    folds = sorted(record["folds"], key=int)
    for i, w in enumerate(space):
        values = [record["folds"][f].get("weights", {}).get(w) for f in folds]
        for k, v in enumerate(values):
            if v is not None:
                ax.scatter(i + (k - (len(folds) - 1) / 2) * 0.08, v, color=OKABE_ITO[k % len(OKABE_ITO)], s=26)
        ax.hlines(record["defaults"][w], i - 0.3, i + 0.3, color="black", linewidth=1.5, linestyles="--")
        low, high = record["space"][w]
        ax.vlines(i + 0.36, low, high, color="grey", linewidth=3, alpha=0.4)
    if record["log"]:
        ax.set_yscale("log")
    ax.set_xticks(range(len(space)), space)
    ax.set(ylabel="loss weight", title="best weights per outer fold\n(-- paper's fixed weight, grey: search range)")
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3, axis="y")
    if not importances.empty:
        ax = axes[2]
        agg = importances.groupby("weight")["importance"].agg(["mean", "std"]).reindex(space).dropna(how="all")
        ax.bar(range(len(agg)), agg["mean"], yerr=agg["std"].fillna(0), color=OKABE_ITO[0], capsize=4)
        ax.set_xticks(range(len(agg)), agg.index)
        ax.set(ylabel="importance (fANOVA)", ylim=(0, 1), title="parameter importance\n(mean ± std over outer folds)")
        ax.title.set_fontsize(8)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save_figure(fig, out, "tuning")


def tuning_section(study_name: str, runs_root: Path, out: Path) -> tuple[list[str], list[Path]]:
    """The report's markdown lines and files for the study's search, or nothing when it has none."""
    directory = Path(runs_root) / study_name / "tune"
    if not (directory / "best.json").exists() or not (directory / "trials.csv").exists():
        return [], []
    record = json.loads((directory / "best.json").read_text())
    trials = pd.read_csv(directory / "trials.csv")
    path = directory / "importances.csv"
    importances = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["fold", "weight", "importance"])
    text, frame = _tables(record, importances)
    (out / "tuning.md").write_text(text)
    frame.to_csv(out / "tuning.csv", index=False)
    files = [out / "tuning.md", out / "tuning.csv", *_plot(record, trials, importances, out)]
    unfinished = [f for f, e in record["folds"].items() if not e["done"]]
    others = {k: v for k, v in record["defaults"].items() if k not in record["space"]}
    fixed = f" ({', '.join(f'{k} = {v:g}' for k, v in others.items())} fixed, as the paper)" if others else ""
    kept = [f for f, e in record["folds"].items() if e.get("weights") == record["defaults"]]
    lines = ["## Loss-weight search", "",
             f"`bench tune` searched {', '.join(record['space'])} of `{record['method']}` (arm `{record['arm']}`) "
             f"{'log-uniformly' if record['log'] else 'uniformly'} in "
             + ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in record["space"].values())
             + f"{fixed} with Optuna's TPE sampler and the "
             f"{record['pruner']} pruner, {record['trials']} finished trials per outer fold, each trial trained on "
             f"{record['inner_folds']} inner folds of the outer fold's training set only and scored by the "
             f"{_objective_name(record)} on their validation scans ({record['direction']}d). The outer test folds "
             "were never seen by the search; the tuned arm above trained each outer fold with that fold's best "
             "weights. The paper's weights were the first trial of every search, so 'paper's weights' is their "
             "inner objective under the same protocol (— when pruned).", "", text]
    if kept:
        lines += [f"In outer fold(s) {', '.join(kept)} no trial beat the paper's weights, so the tuned arm trained "
                  "there exactly as the fixed one (same weights, same seeds) and the two arms' results coincide; "
                  "their differences come from the other folds.", ""]
    if unfinished:
        lines += [f"**Unfinished search**: outer fold(s) {', '.join(unfinished)} have fewer than {record['trials']} "
                  "finished trials; rerun `bench tune` to complete them.", ""]
    lines += ["![Loss-weight search](tuning.png)", ""]
    return lines, files
