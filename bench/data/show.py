"""``bench data show``: a figure of a few subjects per class — axial FLAIR slices through their lesions, lesion
outlines coloured by lesion class (synthetic cohorts carry a lesion-class map; real data get one colour).

Subjects are chosen without looking at anything but the reference masks: per class, the scans (one per patient)
at evenly spaced quantiles of lesion volume among those with lesions, plus the first lesion-free scan if the
class has any. Slices are the ones with the most lesion voxels, at least a few slices apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from bench.data.check import summarise
from bench.data.manifest import LABEL_NAMES, Case, read_manifest

__all__ = ["show_dataset", "choose_subjects", "axial_slices"]

#: Colours of the synthetic lesion classes (MS classes warm, NMOSD classes cool).
CLASS_COLOURS = {
    "pv_ovoid": "#e41a1c", "pv_confluent": "#ff7f00", "juxtacortical": "#ffd92f", "deep": "#f781bf",
    "infratentorial": "#a65628", "callosal": "#fb9a99", "dot": "#00ffff", "ependymal": "#377eb8",
    "periependymal": "#4daf4a", "area_postrema": "#984ea3", "diencephalic": "#66c2a5", "hypothalamic": "#8da0cb",
    "cst": "#b3de69", "marbled": "#1f78b4", "tumefactive": "#6a3d9a",
}
LESION_COLOUR = "#ff3030"


def _canonical(path: Path) -> np.ndarray:
    return np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)


def _class_map(case: Case) -> tuple[np.ndarray | None, dict[int, str]]:
    """The synthetic lesion-class map beside the mask, and its index → class name table (from the sidecar)."""
    if case.mask_path is None:
        return None, {}
    name = case.mask_path.name.replace("_label-lesion_mask", "_label-lesionclass_dseg")
    path = case.mask_path.with_name(name)
    sidecar = case.image_path.with_name(case.image_path.name.replace(".nii.gz", ".json").replace(".nii", ".json"))
    if not path.exists() or not sidecar.exists():
        return None, {}
    index = json.loads(sidecar.read_text()).get("lesion_class_index", {})
    return _canonical(path).astype(int), {int(v): k for k, v in index.items()}


def choose_subjects(cases: list[Case], volumes: dict[str, float], per_class: int) -> list[Case]:
    """Per class: scans at the centred lesion-volume quantiles (i + ½)/n (one per patient), then one lesion-free scan."""
    chosen: list[Case] = []
    for label in sorted({c.label for c in cases}, key=lambda v: (v is None, v)):
        first_per_patient: dict[str, Case] = {}
        for case in cases:
            if case.label == label:
                first_per_patient.setdefault(case.patient_id, case)
        pool = sorted(first_per_patient.values(), key=lambda c: (volumes[c.scan_id], c.scan_id))
        with_lesions = [c for c in pool if volumes[c.scan_id] > 0]
        free = [c for c in pool if volumes[c.scan_id] == 0]
        n = min(per_class - (1 if free else 0), len(with_lesions)) if per_class > 1 else min(1, len(with_lesions))
        if n > 0:
            picks = np.floor((np.arange(n) + 0.5) * len(with_lesions) / n).astype(int)  # centred quantiles, distinct
            chosen += [with_lesions[i] for i in picks]
        if free and len([c for c in chosen if c.label == label]) < per_class:
            chosen.append(free[0])
    return chosen


def axial_slices(mask: np.ndarray | None, n: int, gap: int) -> list[int]:
    """The ``n`` axial slices with the most lesion voxels, at least ``gap`` apart (central slices if none)."""
    if mask is None or not mask.any():
        return []
    counts = mask.reshape(-1, mask.shape[2]).sum(axis=0)
    picked: list[int] = []
    for z in np.argsort(-counts, kind="stable"):
        if counts[z] == 0:
            break
        if all(abs(int(z) - p) >= gap for p in picked):
            picked.append(int(z))
        if len(picked) == n:
            break
    return sorted(picked)


def show_dataset(manifest: Path, out: Path, *, per_class: int = 3, slices: int = 3,
                 progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the figure (PNG, and PDF beside it) and return the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    cases = read_manifest(manifest)
    volumes = summarise(manifest, progress=progress).scan_lesion_ml  # validates every image and mask on the way
    chosen = choose_subjects(cases, volumes, per_class)
    fig, axes = plt.subplots(len(chosen), slices, figsize=(2.4 * slices, 2.5 * len(chosen)), squeeze=False,
                             facecolor="black")
    seen: dict[str, str] = {}
    for row, case in enumerate(chosen):
        image = _canonical(case.image_path).astype(np.float32)
        mask = _canonical(case.mask_path) > 0 if case.mask_path is not None else None
        classes, names = _class_map(case)
        zs = axial_slices(mask, slices, gap=max(2, image.shape[2] // 16))
        if len(zs) < slices:  # fill with evenly spaced brain slices
            brain_z = np.flatnonzero(image.reshape(-1, image.shape[2]).any(axis=0))
            spread = [int(v) for v in np.linspace(brain_z.min(), brain_z.max(), slices + 2)[1:-1]]
            zs = sorted(zs + [z for z in dict.fromkeys(spread) if z not in zs][: slices - len(zs)])
        top = np.percentile(image[image > 0], 99.5) if (image > 0).any() else 1.0
        for col, z in enumerate(zs):
            ax = axes[row, col]
            ax.imshow(image[:, :, z].T, cmap="gray", origin="lower", vmin=0, vmax=top, interpolation="nearest")
            if mask is not None and mask[:, :, z].any():
                if classes is not None:
                    for index in np.unique(classes[:, :, z][mask[:, :, z]]):
                        name = names.get(int(index), "lesion")
                        colour = CLASS_COLOURS.get(name, LESION_COLOUR)
                        seen[name] = colour
                        ax.contour((classes[:, :, z] == index).T, levels=[0.5], colors=[colour], linewidths=0.8)
                else:
                    seen["lesion"] = LESION_COLOUR
                    ax.contour(mask[:, :, z].T, levels=[0.5], colors=[LESION_COLOUR], linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"z={z}", color="white", fontsize=7, pad=2)
        label = LABEL_NAMES.get(case.label, "unlabelled")
        axes[row, 0].set_ylabel(f"{label}\n{case.scan_id}\n{volumes[case.scan_id]:.1f} mL", color="white", fontsize=8)
    if seen:
        handles = [Line2D([0], [0], color=c, lw=2, label=n.replace("_", " ")) for n, c in sorted(seen.items())]
        fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), fontsize=7, frameon=False,
                   labelcolor="white")
    fig.tight_layout(rect=(0, 0.06 if seen else 0, 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, facecolor="black")
    fig.savefig(out.with_suffix(".pdf"), facecolor="black")
    plt.close(fig)
    return out
