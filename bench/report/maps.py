"""Report figures drawn on the volumes themselves (joint-model paper Figs. 10 and 12).

* ``overlays.png`` — segmentation overlays: for a few test cases, the axial slice with the most reference
  lesion voxels, with each segmenting arm's σ = 0 prediction coloured true positive red, false positive
  green, false negative yellow (the joint-model paper's Fig. 10 colours).
* ``cams.png`` — lesion localisation: the same cases' FLAIR slice, reference mask, and the class-activation
  localisation map (``cams.npz``, written by arms whose model emits ``aux["cam"]``) of each such arm,
  for the class the model predicted (the joint-model paper's Fig. 12).
* ``uncertainty_maps.png`` — UML's Fig. 3 for the arms with a pixel-wise uncertainty (``uncertainty.npz``):
  per case, a row at σ = 0 and a row at the largest σ of the grid; the input the network saw (the noisy
  one regenerated from the case's noise seed) with the reference outline, then per arm its segmentation
  (coloured as the overlays, with the image-level NMOSD probability and uncertainty) and its pixel-wise
  uncertainty map.

The figures read the run directories and the preprocessed volume cache their specs name (never a model).
The cases are chosen without looking at any arm's predictions: per class, the test cases with lesions
whose reference lesion volume is closest to the class median, ``per_class`` of them from different patients.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.noise import LEGACY_NOISE_UNITS
from bench.report.style import save_figure
from bench.store import SPEC, done_units, read_json

__all__ = ["plot_maps", "choose_cases", "overlay_colours", "unpack_prediction", "plot_uncertainty"]

CLASS_NAMES = {0: "MS", 1: "NMOSD"}
TP, FP, FN = (0.85, 0.1, 0.1), (0.1, 0.75, 0.2), (1.0, 0.85, 0.0)  # red, green, yellow (paper Fig. 10)


def unpack_prediction(packed: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A bit-packed binary volume from ``predictions.npz`` back to bool ``shape``."""
    n = int(np.prod(shape))
    return np.unpackbits(packed)[:n].reshape(tuple(int(s) for s in shape)).astype(bool)


def overlay_colours(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """RGBA [..., 4]: TP red, FP green, FN yellow, transparent elsewhere."""
    rgba = np.zeros(prediction.shape + (4,), dtype=float)
    for mask, colour in ((prediction & reference, TP), (prediction & ~reference, FP), (~prediction & reference, FN)):
        rgba[mask, :3] = colour
        rgba[mask, 3] = 1.0
    return rgba


def _units_by_arm(study_root: Path, arms: Sequence[str]) -> dict[str, list[Path]]:
    units: dict[str, list[Path]] = {arm: [] for arm in arms}
    for unit in done_units(study_root):
        arm = unit.parent.parent.name
        if arm in units:
            units[arm].append(unit)
    return units


def choose_cases(per_case: pd.DataFrame, volumes: dict[str, np.ndarray], per_class: int = 2) -> list[str]:
    """Per class, the test cases with lesions whose lesion volume (voxels) is closest to the class median,
    one scan per patient."""
    clean = per_case[per_case["sigma"] == 0].drop_duplicates("case_id")
    patient_of = dict(zip(clean["case_id"], clean["patient_id"]))
    chosen: list[str] = []
    for label in sorted(clean["label"].unique()):
        ids = [c for c in clean.loc[clean["label"] == label, "case_id"] if c in volumes and volumes[c] > 0]
        if not ids:
            continue
        sizes = np.array([volumes[c] for c in ids], dtype=float)
        order = np.argsort(np.abs(sizes - np.median(sizes)), kind="stable")
        patients: set[str] = set()
        picked = 0
        for i in order:  # one scan per patient
            patient = patient_of[ids[i]]
            if patient in patients:
                continue
            patients.add(patient)
            chosen.append(ids[i])
            picked += 1
            if picked == per_class:
                break
    return chosen


def plot_maps(per_case: pd.DataFrame, study_root: Path, arms: Sequence[str], labels: dict[str, str], out: Path,
              *, per_class: int = 2) -> list[Path]:
    """Write ``overlays.png/pdf`` and ``cams.png/pdf`` when the study's units have what they need; returns the
    files written (none for classification-only studies or when the volume cache is gone)."""
    from bench.data.preprocess import load_volume

    units = _units_by_arm(study_root, arms)
    if not any(units.values()):
        return []
    spec = read_json(next(u for us in units.values() for u in us) / SPEC)
    if not spec.get("cache_dir"):
        return []
    cache = Path(spec["cache_dir"])
    case_ids = per_case.loc[per_case["sigma"] == 0, "case_id"].unique()
    if not cache.is_dir() or not all((cache / f"{c}.npz").exists() for c in case_ids):
        return []  # the volume cache was cleared: the figures are skipped, the rest of the report is written
    lesion_voxels = {}
    for case_id in case_ids:
        vol = load_volume(cache, case_id)
        if vol.mask is None:
            return []
        lesion_voxels[case_id] = int(vol.mask.sum())
    chosen = choose_cases(per_case, lesion_voxels, per_class)
    if not chosen:
        return []
    volumes = {case_id: load_volume(cache, case_id) for case_id in chosen}
    # the σ = 0 prediction and localisation map of each chosen case, from the unit that tested it
    preds = {arm: _first_found(units[arm], "predictions.npz", chosen, _read_mask) for arm in arms}
    cams = {arm: _first_found(units[arm], "cams.npz", chosen, _read_uint8) for arm in arms}
    files: list[Path] = plot_uncertainty(per_case, units, spec, arms, labels, out, chosen, volumes)
    seg_arms = [a for a in arms if len(preds[a]) == len(chosen)]
    if seg_arms:
        files += _draw(volumes, chosen, per_case, seg_arms, labels, out, preds, None, "overlays",
                       "Segmentation at σ = 0 — true positive red, false positive green, false negative yellow")
    cam_arms = [a for a in arms if len(cams[a]) == len(chosen)]
    if cam_arms:
        files += _draw(volumes, chosen, per_case, cam_arms, labels, out, None, cams, "cams",
                       "Lesion localisation maps (CAM of the predicted class) beside the reference mask")
    return files


def _draw(volumes, chosen, per_case, arms, labels, out, preds, cams, stem: str, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    extra = 1 if preds is not None else 2  # FLAIR (+ reference mask for the CAM figure)
    cols = extra + len(arms)
    fig, axes = plt.subplots(len(chosen), cols, figsize=(1.9 * cols, 2.0 * len(chosen) + 0.5), dpi=150, squeeze=False)
    first = per_case[per_case["sigma"] == 0].drop_duplicates("case_id").set_index("case_id")
    for r, case_id in enumerate(chosen):
        vol = volumes[case_id]
        image, reference = vol.image[0], vol.mask[0].astype(bool)
        z = int(np.argmax(reference.sum(axis=(0, 1))))  # the axial slice with the most lesion voxels
        flair = image[:, :, z].T
        label = CLASS_NAMES.get(int(first.loc[case_id, "label"]), str(first.loc[case_id, "label"]))
        row = axes[r]
        row[0].imshow(flair, cmap="gray", origin="lower")
        row[0].set_ylabel(f"{case_id}\n{label}", fontsize=7)
        if cams is not None:
            row[1].imshow(flair, cmap="gray", origin="lower")
            row[1].imshow(np.ma.masked_where(~reference[:, :, z].T, reference[:, :, z].T), cmap="autumn", origin="lower",
                          alpha=0.9, vmin=0, vmax=1)
        for c, arm in enumerate(arms):
            ax = row[extra + c]
            ax.imshow(flair, cmap="gray", origin="lower")
            if preds is not None:
                ax.imshow(overlay_colours(preds[arm][case_id][:, :, z].T, reference[:, :, z].T), origin="lower")
            else:
                ax.imshow(cams[arm][case_id][:, :, z].T, cmap="jet", origin="lower", alpha=0.45, vmin=0, vmax=1)
        if r == 0:
            row[0].set_title("FLAIR", fontsize=8)
            if cams is not None:
                row[1].set_title("reference", fontsize=8)
            for c, arm in enumerate(arms):
                row[extra + c].set_title(labels.get(arm, arm), fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, stem)


def _read_mask(z, key: str) -> np.ndarray:
    return unpack_prediction(z[key], z["shape"])


def _read_uint8(z, key: str) -> np.ndarray:
    return z[key].astype(float) / 255.0


def _first_found(units: list[Path], filename: str, keys: Sequence[str], read) -> dict[str, np.ndarray]:
    """``key → read(npz, key)`` from the first unit (in path order) whose ``filename`` holds the key."""
    found: dict[str, np.ndarray] = {}
    for unit in sorted(units):
        if not (unit / filename).exists():
            continue
        with np.load(unit / filename) as z:
            for key in keys:
                if key in z.files and key not in found:
                    found[key] = read(z, key)
    return found


def plot_uncertainty(per_case: pd.DataFrame, units: dict[str, list[Path]], spec: dict, arms: Sequence[str],
                     labels: dict[str, str], out: Path, chosen: list[str], volumes: dict) -> list[Path]:
    """``uncertainty_maps.png/pdf`` (see the module docstring); none when no arm has pixel-wise uncertainty."""
    from bench.noise import input_noise, noisy_key

    sigmas = sorted({0.0, float(per_case["sigma"].max())})
    keys = [noisy_key(c, s) for c in chosen for s in sigmas]
    maps = {arm: (_first_found(units.get(arm, []), "predictions.npz", keys, _read_mask),
                  _first_found(units.get(arm, []), "uncertainty.npz", keys, _read_uint8)) for arm in arms}
    shown = [a for a in arms if len(maps[a][1]) == len(keys) and len(maps[a][0]) == len(keys)]
    if not shown:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units_of_noise = spec.get("noise_units", LEGACY_NOISE_UNITS)
    rows = [(c, s) for c in chosen for s in sigmas]
    cols = 1 + 2 * len(shown)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.9 * cols, 2.0 * len(rows) + 0.6), dpi=150, squeeze=False)
    info = per_case.sort_values("seed")  # the first training seed's prediction when there are several
    for r, (case_id, sigma) in enumerate(rows):
        vol = volumes[case_id]
        reference = vol.mask[0].astype(bool)
        z = int(np.argmax(reference.sum(axis=(0, 1))))
        image = vol.image[0] + input_noise(case_id, sigma, vol.image, units_of_noise)[0]
        row = axes[r]
        row[0].imshow(image[:, :, z].T, cmap="gray", origin="lower")
        row[0].contour(reference[:, :, z].T, levels=[0.5], colors=["#D55E00"], linewidths=0.6, origin="lower")
        label = CLASS_NAMES.get(int(per_case.loc[per_case["case_id"] == case_id, "label"].iloc[0]), "?")
        row[0].set_ylabel(f"{case_id} ({label})\nσ = {sigma:g}", fontsize=7)
        key = noisy_key(case_id, sigma)
        for c, arm in enumerate(shown):
            preds, uncertainty = maps[arm]
            ax_seg, ax_unc = row[1 + 2 * c], row[2 + 2 * c]
            ax_seg.imshow(vol.image[0][:, :, z].T, cmap="gray", origin="lower")
            ax_seg.imshow(overlay_colours(preds[key][:, :, z].T, reference[:, :, z].T), origin="lower")
            unc = ax_unc.imshow(uncertainty[key][:, :, z].T, cmap="magma", origin="lower", vmin=0, vmax=1)
            found = info[(info["arm"] == arm) & (info["case_id"] == case_id) & (info["sigma"] == sigma)]
            if len(found) and "prob_nmosd" in found and pd.notna(found["prob_nmosd"].iloc[0]):
                text = f"p(NMOSD) {found['prob_nmosd'].iloc[0]:.2f}"
                if "uncertainty" in found and pd.notna(found["uncertainty"].iloc[0]):
                    text += f", u {found['uncertainty'].iloc[0]:.2f}"
                ax_seg.set_xlabel(text, fontsize=6)
            if r == 0:
                ax_seg.set_title(f"{labels.get(arm, arm)}: segmentation", fontsize=7)
                ax_unc.set_title(f"{labels.get(arm, arm)}: pixel uncertainty", fontsize=7)
        if r == 0:
            row[0].set_title("input (reference outline)", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(unc, ax=axes.ravel().tolist(), shrink=0.3, fraction=0.04, label="pixel-wise uncertainty u = 2 / S")
    when = "clean and with the largest noise σ" if len(sigmas) > 1 else "σ = 0"
    fig.suptitle(f"Segmentation and uncertainty, {when} (UML Fig. 3): true positive red, false positive green, "
                 "false negative yellow", fontsize=8)
    return save_figure(fig, out, "uncertainty_maps")
