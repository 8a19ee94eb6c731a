"""Placeholder synthetic MS/NMOSD cohort: ellipsoid "lesions" in a brain-shaped volume.

This is the *interface* the realistic generator (real MNI anatomy, DATA.md) will implement:
``SyntheticConfig`` → ``generate_scan(config, patient, timepoint)`` → ``generate_cohort(config, out)``
writing a BIDS-like tree, ``participants.tsv`` and ``manifest.csv``. Here the anatomy is analytic
(ellipsoidal brain, WM core, GM shell, two lateral ventricles) and the class signal is the lesion
pattern: MS has more, larger, ovoid lesions, many of them periventricular; NMOSD has fewer, small
punctate lesions (about 30 % of NMOSD brains are lesion-free). ``difficulty`` blends the two
patterns. Every draw comes from ``SeedSequence([seed, patient, timepoint])``: a scan regenerated
alone equals the same scan in the cohort.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from bench.data.manifest import write_manifest

__all__ = ["GENERATOR_VERSION", "SyntheticConfig", "Scan", "generate_scan", "generate_cohort", "cohort_plan"]

GENERATOR_VERSION = "placeholder-1"
FOV_MM = 192.0  # field of view of the cube, mm


@dataclass(frozen=True)
class SyntheticConfig:
    """Cohort parameters; everything that changes the output is here (and in the cache key)."""

    n_ms: int = 69
    n_nmosd: int = 62
    size: int = 64
    difficulty: float = 0.3
    seed: int = 0
    longitudinal: tuple[int, ...] = (4, 4, 5, 4, 4)

    def __post_init__(self) -> None:
        if self.n_ms < 0 or self.n_nmosd < 0 or self.n_ms + self.n_nmosd < 2:
            raise ValueError(f"need at least 2 scans, got n_ms={self.n_ms}, n_nmosd={self.n_nmosd}")
        if not 0.0 <= self.difficulty <= 1.0:
            raise ValueError(f"difficulty must be in [0, 1], got {self.difficulty}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16, got {self.size}")


@dataclass(frozen=True)
class Scan:
    """One generated scan: FLAIR-like image [D, H, W], binary mask, and every sampled parameter."""

    patient_id: str
    timepoint: int
    label: str
    site: str
    image: np.ndarray
    mask: np.ndarray
    spacing: float
    params: dict


def cohort_plan(config: SyntheticConfig) -> list[tuple[str, int, str]]:
    """(patient_id, timepoint, label) for every scan. Longitudinal MS patients take at most a third of the MS scans."""
    plan: list[tuple[str, int, str]] = []
    budget = config.n_ms // 3
    patient = 0
    for n_tp in config.longitudinal:
        if n_tp > budget:
            break
        plan += [(f"{patient:03d}", tp, "MS") for tp in range(n_tp)]
        budget -= n_tp
        patient += 1
    while sum(1 for p in plan if p[2] == "MS") < config.n_ms:
        plan.append((f"{patient:03d}", 0, "MS"))
        patient += 1
    for _ in range(config.n_nmosd):
        plan.append((f"{patient:03d}", 0, "NMOSD"))
        patient += 1
    return plan


def _grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    spacing = FOV_MM / size
    axis = (np.arange(size) - (size - 1) / 2.0) * spacing
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    return z, y, x, spacing


def _ellipsoid(z, y, x, centre, radii) -> np.ndarray:
    """Soft ellipsoid membership in [0, 1] (one voxel of smooth edge)."""
    r = np.sqrt(((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2)
    edge = 1.0 / max(min(radii), 1e-3)
    return np.clip((1.0 - r) / edge + 0.5, 0.0, 1.0)


def _lesions(rng: np.random.Generator, label: str, difficulty: float) -> list[dict]:
    """Lesion list: centre (mm, relative to the ventricles or brain), radii (mm), kind."""
    ms_like = rng.random() < (1.0 - 0.5 * difficulty if label == "MS" else 0.5 * difficulty)
    if ms_like:
        count = max(2, int(rng.negative_binomial(2, 2 / (2 + 12))))
        kinds = rng.choice(["periventricular", "deep", "juxtacortical"], size=count, p=[0.45, 0.35, 0.2])
    else:
        count = 0 if rng.random() < 0.3 else 1 + int(rng.negative_binomial(1.5, 1.5 / (1.5 + 3)))
        kinds = rng.choice(["dot", "deep", "periventricular"], size=count, p=[0.7, 0.15, 0.15])
    lesions = []
    for kind in kinds:
        if kind == "dot":
            radius = float(rng.lognormal(np.log(3.0), 0.25))
            radii = [radius] * 3
        else:
            radius = float(rng.lognormal(np.log(4.0 if kind != "periventricular" else 5.0), 0.35))
            elong = float(rng.uniform(1.5, 2.5)) if kind == "periventricular" else float(rng.uniform(1.0, 1.5))
            radii = [radius * elong, radius, radius]
        lesions.append({"kind": str(kind), "radii": radii, "u": rng.random(3).tolist(), "gain": float(rng.uniform(1.35, 1.8))})
    return lesions


def _place(lesion: dict, brain_radii: np.ndarray) -> list[float]:
    """Lesion centre (mm) from its kind and uniform draws ``u``."""
    u = np.asarray(lesion["u"])
    side = 1.0 if u[2] > 0.5 else -1.0
    if lesion["kind"] == "periventricular":
        return [float(8 + 16 * u[0]), float(-20 + 40 * u[1]), side * float(14 + 6 * u[2])]
    shell = {"deep": (0.25, 0.55), "dot": (0.35, 0.8), "juxtacortical": (0.78, 0.86)}[lesion["kind"]]
    theta, phi = np.pi * (0.15 + 0.6 * u[0]), 2 * np.pi * u[1]
    frac = shell[0] + (shell[1] - shell[0]) * (u[2] if u[2] <= 0.5 else u[2] - 0.5) * 2
    direction = np.array([np.cos(theta), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)])
    return (direction * brain_radii * frac).tolist()


def generate_scan(config: SyntheticConfig, patient: int | str, timepoint: int, label: str) -> Scan:
    """Generate one scan deterministically from ``(config.seed, patient, timepoint)``."""
    pid = int(patient)
    subject_rng = np.random.default_rng(np.random.SeedSequence([config.seed, pid, 0]))
    scan_rng = np.random.default_rng(np.random.SeedSequence([config.seed, pid, 1000 + timepoint]))
    z, y, x, spacing = _grid(config.size)
    brain_radii = np.array([62.0, 80.0, 66.0]) * subject_rng.uniform(0.92, 1.08, size=3)
    brain = _ellipsoid(z, y, x, (0, 0, 0), brain_radii)
    wm = _ellipsoid(z, y, x, (0, 0, 0), brain_radii * 0.82)
    vent = np.maximum(_ellipsoid(z, y, x, (14, 0, 9), (9, 24, 5)), _ellipsoid(z, y, x, (14, 0, -9), (9, 24, 5)))
    lesions = _lesions(subject_rng, label, config.difficulty)
    if timepoint:  # longitudinal follow-up: same lesions, slightly changed sizes
        for lesion in lesions:
            lesion["radii"] = [r * float(scan_rng.uniform(0.9, 1.1)) for r in lesion["radii"]]
    lesion_frac = np.zeros_like(brain)
    gain = np.ones_like(brain)
    for lesion in lesions:
        lesion["centre"] = _place(lesion, brain_radii)
        blob = _ellipsoid(z, y, x, lesion["centre"], lesion["radii"]) * wm
        gain = np.where(blob > lesion_frac, lesion["gain"], gain)
        lesion_frac = np.maximum(lesion_frac, blob)
    gm = np.clip(brain - wm, 0, 1)
    csf = vent * wm
    image = 1.0 * (wm - csf) + 1.26 * gm + 0.08 * csf
    image = image * (1 - lesion_frac) + gain * lesion_frac * (wm > 0.5)
    bias = ndimage.zoom(scan_rng.uniform(0.85, 1.15, size=(3, 3, 3)), config.size / 3, order=3)[: config.size, : config.size, : config.size]
    noise = scan_rng.normal(0, 0.04, size=(2, *image.shape))
    image = np.sqrt((image * bias + noise[0]) ** 2 + noise[1] ** 2) * (brain > 0.05)  # Rician magnitude
    mask, n = ndimage.label(lesion_frac >= 0.5)
    sizes = ndimage.sum(np.ones_like(mask), mask, index=np.arange(1, n + 1))
    mask = np.isin(mask, 1 + np.flatnonzero(sizes >= 3))
    site = "ISBI" if label == "MS" and int(patient) < len(config.longitudinal) else f"site{pid % 2}"
    params = {"generator": GENERATOR_VERSION, "config": asdict(config), "brain_radii_mm": brain_radii.tolist(), "lesions": lesions}
    return Scan(f"{pid:03d}", timepoint, label, site, image.astype(np.float32), mask.astype(np.uint8), spacing, params)


def _save(array: np.ndarray, spacing: float, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    nib.save(nib.Nifti1Image(array, affine), str(path))


def generate_cohort(config: SyntheticConfig, out: Path, *, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the cohort under ``out`` (BIDS-like) and return its ``manifest.csv``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = cohort_plan(config)
    rows, participants = [], {}
    for i, (patient, tp, label) in enumerate(plan):
        scan = generate_scan(config, patient, tp, label)
        stem = f"sub-{patient}_ses-{tp:02d}"
        image = Path(f"sub-{patient}/ses-{tp:02d}/anat/{stem}_FLAIR.nii.gz")
        mask = Path(f"derivatives/lesions/sub-{patient}/ses-{tp:02d}/anat/{stem}_label-lesion_mask.nii.gz")
        _save(scan.image, scan.spacing, out / image)
        _save(scan.mask, scan.spacing, out / mask)
        (out / image).with_name(f"{stem}_FLAIR.json").write_text(json.dumps(scan.params, indent=1))
        rows.append({"scan_id": stem, "patient_id": f"sub-{patient}", "timepoint": str(tp), "label": label,
                     "site": scan.site, "image_path": str(image), "mask_path": str(mask)})
        participants[f"sub-{patient}"] = label
        if progress:
            progress(i + 1, len(plan))
    (out / "participants.tsv").write_text(
        "participant_id\tdiagnosis\n" + "".join(f"{p}\t{d}\n" for p, d in participants.items())
    )
    return write_manifest(out / "manifest.csv", rows)
