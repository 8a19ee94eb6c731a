"""The embedded synthetic MS/NMOSD cohort: FLAIR scans built on real MNI anatomy (docs/data.md).

One scan = **plan → render → warp → contrast → nuisance → write**:

1. *Plan* (:func:`subject_plan`, :func:`scan_plan`) — the subject's disease mixture, lesion count and every
   lesion (class, centre drawn from an anatomical region of :func:`bench.data.anatomy.load_regions`, equivalent
   diameter, orientation, lesion T2), its site, its warp and its normal hyperintensity. Everything is in MNI
   millimetres, so a subject's lesions are the same at every grid size.
2. *Render* — each lesion is rasterised on a supersampled grid (≤ 1 mm) around it and block-averaged onto the
   S³ anatomy grid: partial-volume lesion fractions, a lesion-T2 map with ±10 % heterogeneity and a lesion-class
   map. Lesions live in parenchyma only (fraction ≤ WM + GM).
3. *Warp* — a per-subject affine (head size, small rotation and shift) plus a smooth elastic field moves
   anatomy, lesions and mask together.
4. *Contrast* — the FLAIR signal equation S = PD·|1 − 2e^(−TI/T1) + e^(−TR/T1)|·e^(−TE/T2) over the voxel's
   WM, GM, CSF and lesion fractions with the site's TR/TE/TI (GM/WM ≈ 1.1–1.25, CSF ≈ 0, lesion/WM 1.3–1.9),
   and the faint normal hyperintensity along the corticospinal tract and around the 3rd/4th ventricles that
   every subject has (+10–15 %, unlabelled).
5. *Nuisance* — slice-thickness blur, a smooth multiplicative bias field, Rician noise, a global intensity
   scale; the background is zero (skull-stripped). Mask = warped lesion fraction ≥ 0.5, components
   smaller than 3 mm³ dropped (:data:`MIN_COMPONENT_MM3`).

The class signal is only the lesion pattern — location, shape, size and count — taken from the literature
summarised in docs/data.md. Per-lesion appearance (T2, heterogeneity) never depends on the disease.

**Difficulty** d ∈ [0, 1] sets class overlap. Each subject sits at a position b on the path from its own
disease (b = 0) to the other (b = 1) and its lesion mixture, count model and lesion-free probability are blended
linearly by b (the mean count geometrically): a fraction d/2 are *frank mimics* with b ~ U(1 − d, 1), the
others have b ~ U(0, d). At d = 0 every subject is typical; at d = 1 both diseases draw b ~ U(0, 1), so their
lesion plans have the same distribution except that MS is never lesion-free.

**Sites** differ in TR/TE/TI, slice thickness, noise and bias. Site "A" is the ISBI-like site of the
longitudinal patients. ``site_class_coupling`` c: with probability c a patient is assigned like the joint-model paper's data
(longitudinal MS patients at A, everybody else at B/C/D); otherwise its site is drawn independently of its
label with the cohort's site proportions — so c = 0 removes the site shortcut and c = 1 reproduces it.

**Determinism**: the subject's draws come from ``SeedSequence([seed, patient, 0])``, the scan's from
``[seed, patient, 1000 + timepoint]`` and a follow-up's new lesion from ``[seed, patient, 2000 + k]``; one scan
regenerated alone is identical to the same scan in the cohort.

Decisions beyond the design targets (docs/data.md):

- NMOSD's own lesion-free probability is 0.4 (literature 30–45 %), so that after the mimics and blending of
  the default difficulty the cohort's rate stays near 0.35; MS subjects are never lesion-free (a normal brain
  MRI all but rules MS out).
- NMOSD's count is negative binomial with r = 3 and mean 3 (docs/data.md: r = 1.5, mean ≈ 5). With docs/data.md's
  values and its lesion sizes, the median lesion volume of NMOSD scans with lesions came out at 2.0 mL
  (literature: 0.96 mL, vs 7.1 mL in RRMS); with these it is 1.2 mL.
- MS's count has mean 25 (docs/data.md: ≈ 20). After the default difficulty's blending, mean 20 gave a median of 12
  lesions and 4.9 mL (literature: median ~15 lesions, 7.1 mL in RRMS); mean 25 gives 14 lesions and 6.2 mL.
- Periventricular ovoid lesions start at the ventricle wall and point away from it (the centre is moved 0.6
  semi-major axes outward from the sampled point); centred on the sampled point, ~25 % of each fell in CSF.
- Default difficulty 0.25: a logistic regression on count + volume + mean size reaches ≈ 0.78 (band 0.65–0.85).
- Band lesions along the lateral ventricles are corrected for wrapping around the thin ventricles
  (:data:`BAND_WRAP`) and marbled lesions inflated inside the callosum (:data:`MARBLED_INFLATION`) so that
  rendered volumes match planned ones; diameters are truncated at ±2.5 σ of their lognormal.
- The mask is the *rendered* lesion fraction ≥ 0.5 at the output grid, so lesions smaller than a voxel (most
  NMOSD dots at 48³–64³) brighten the image without being in the mask, as on a real coarse scan. docs/data.md's
  "components < 3 voxels dropped" is applied as < 3 mm³ (its size at 1 mm): in voxels it removed most 5 mm
  lesions at 64³ and left 7 of 69 MS masks empty.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from bench.data.anatomy import CST_POLYLINE, Anatomy, load_anatomy, load_regions
from bench.data.cache import DEFAULT_DIFFICULTY
from bench.data.manifest import write_manifest
from bench.procs import spawn_pool, usable_cores

__all__ = [
    "GENERATOR_VERSION", "DEFAULT_DIFFICULTY", "LESION_CLASSES", "MIXTURES", "COUNTS", "SITES", "SyntheticConfig",
    "Scan", "cohort_plan", "subject_plan", "scan_plan", "plan_features", "generate_scan", "generate_cohort",
]

log = logging.getLogger(__name__)
GENERATOR_VERSION = "mni-3"


@dataclass(frozen=True)
class LesionClass:
    """A lesion class: where it sits, its shape and its lognormal equivalent diameter (median mm, σ)."""

    name: str
    region: str  # a region of load_regions(), or "cst" for the corticospinal-tract polyline
    shape: str  # ovoid | band | tube | marbled | cloud
    diameter: float
    sigma: float
    elongation: tuple[float, float] = (1.0, 1.5)
    thickness: tuple[float, float] = (0.0, 0.0)  # band thickness (mm)
    field: str = ""  # distance map a band follows
    irregularity: float = 0.12
    heterogeneity: float = 0.10
    edge_mm: float = 0.0  # extra soft edge (tumefactive "cloud")


LESION_CLASSES: dict[str, LesionClass] = {c.name: c for c in (
    # MS
    LesionClass("pv_ovoid", "periventricular", "ovoid", 8.0, 0.45, elongation=(1.8, 3.0)),
    LesionClass("pv_confluent", "ventricle_wall", "band", 16.0, 0.35, thickness=(3.0, 6.0), field="dist_lateral"),
    LesionClass("juxtacortical", "juxtacortical", "ovoid", 5.0, 0.40),
    LesionClass("deep", "deep_wm", "ovoid", 5.5, 0.45, elongation=(1.0, 1.6)),
    LesionClass("infratentorial", "infratentorial", "ovoid", 5.0, 0.40),
    LesionClass("callosal", "callosal_undersurface", "ovoid", 5.0, 0.35, elongation=(1.5, 2.5)),
    # NMOSD
    LesionClass("dot", "subcortical", "ovoid", 2.8, 0.30, elongation=(1.0, 1.0), irregularity=0.05),
    LesionClass("ependymal", "ventricle_wall", "band", 14.0, 0.35, thickness=(2.0, 4.0), field="dist_lateral"),
    LesionClass("periependymal", "periependymal", "band", 10.0, 0.35, thickness=(2.0, 4.0), field="dist_periependymal"),
    LesionClass("area_postrema", "area_postrema", "ovoid", 7.0, 0.25),
    LesionClass("diencephalic", "thalamus", "ovoid", 8.0, 0.30),
    LesionClass("hypothalamic", "hypothalamus", "ovoid", 6.0, 0.30),
    LesionClass("cst", "cst", "tube", 5.0, 0.25),
    LesionClass("marbled", "corpus_callosum", "marbled", 18.0, 0.30, elongation=(2.0, 3.0), heterogeneity=0.25),
    LesionClass("tumefactive", "deep_wm", "cloud", 25.0, 0.25, irregularity=0.30, heterogeneity=0.15, edge_mm=3.0),
)}
#: A marbled callosal lesion is an ellipsoid cut by the corpus callosum (a slab ~8 mm thick), which keeps about a third
#: of it; the ellipsoid is enlarged by this factor so the callosal part has the planned volume.
MARBLED_INFLATION = 1.7
#: Mask components smaller than this are dropped: docs/data.md's "3 voxels" at 1 mm, kept in physical units so that a
#: coarse grid does not lose real lesions (at 64³ one voxel is 33 mm³, and 3 voxels would drop most 5 mm lesions).
MIN_COMPONENT_MM3 = 3.0
#: A band is the shell within ``thickness`` of a structure, inside a ball of radius ρ = √(V / (π·thickness)) around its
#: centre. Around the thin lateral ventricles the ball meets the wall on both sides, which made bands 1.6× their
#: planned volume (measured at 32³ and 64³); ρ is divided by √1.6 there.
BAND_WRAP = {"dist_lateral": math.sqrt(1.6)}
#: Index of each class in the lesion-class map (0 = no lesion).
CLASS_INDEX = {name: i + 1 for i, name in enumerate(LESION_CLASSES)}

MIXTURES: dict[str, dict[str, float]] = {
    "MS": {"pv_ovoid": 0.30, "pv_confluent": 0.06, "juxtacortical": 0.20, "deep": 0.28, "infratentorial": 0.09,
           "callosal": 0.07},
    "NMOSD": {"dot": 0.56, "ependymal": 0.09, "periependymal": 0.07, "area_postrema": 0.06, "diencephalic": 0.05,
              "hypothalamic": 0.03, "cst": 0.06, "marbled": 0.04, "tumefactive": 0.02, "deep": 0.02},
}


@dataclass(frozen=True)
class CountModel:
    """Lesion count: 0 with probability ``p_free``, else max(minimum, negative binomial(r, mean))."""

    p_free: float
    r: float
    mean: float
    minimum: int


COUNTS = {"MS": CountModel(0.0, 2.0, 25.0, 2), "NMOSD": CountModel(0.4, 3.0, 3.0, 1)}


@dataclass(frozen=True)
class Site:
    """An acquisition protocol (ms, mm) and its nuisance levels (noise σ as a fraction of WM; bias amplitude)."""

    name: str
    tr: float
    te: float
    ti: float
    slice_mm: float
    noise: float
    bias: float


SITES = (
    Site("A", 10000, 120, 2500, 2.2, 0.030, 0.12),  # the ISBI-like site of the longitudinal patients
    Site("B", 9000, 110, 2450, 3.0, 0.040, 0.15),
    Site("C", 11000, 125, 2650, 1.5, 0.025, 0.10),
    Site("D", 8500, 115, 2400, 4.0, 0.050, 0.20),
)
#: (PD, T1 ms, T2 ms) — literature-typical values at 1.5–3 T; lesion T2 is drawn per lesion (112–150 ms).
TISSUES = {"wm": (0.69, 830.0, 80.0), "gm": (0.80, 1330.0, 100.0), "csf": (1.0, 4200.0, 2000.0)}
LESION_PD_T1 = (0.80, 1300.0)
LESION_T2 = (112.0, 150.0)


@dataclass(frozen=True)
class SyntheticConfig:
    """Cohort parameters; everything that changes the output is here (and in the cache key)."""

    n_ms: int = 69
    n_nmosd: int = 62
    size: int = 64
    difficulty: float = DEFAULT_DIFFICULTY
    seed: int = 0
    longitudinal: tuple[int, ...] = (4, 4, 5, 4, 4)
    site_class_coupling: float = 1.0

    def __post_init__(self) -> None:
        if self.n_ms < 0 or self.n_nmosd < 0 or self.n_ms + self.n_nmosd < 2:
            raise ValueError(f"need at least 2 scans, got n_ms={self.n_ms}, n_nmosd={self.n_nmosd}")
        if not 0.0 <= self.difficulty <= 1.0:
            raise ValueError(f"difficulty must be in [0, 1], got {self.difficulty}")
        if not 0.0 <= self.site_class_coupling <= 1.0:
            raise ValueError(f"site_class_coupling must be in [0, 1], got {self.site_class_coupling}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16, got {self.size}")
        if any(int(n) < 1 for n in self.longitudinal):
            raise ValueError(f"longitudinal time points must be >= 1, got {self.longitudinal}")


@dataclass(frozen=True)
class Scan:
    """One generated scan. Arrays are [X, Y, Z] (RAS); ``affine`` maps voxels to MNI-like mm.

    ``lesion_class`` holds :data:`CLASS_INDEX` values (0 = none); ``fractions`` the warped partial-volume maps
    (wm, gm, csf, lesion) and normal-hyperintensity map (0..1) the image was computed from.
    """

    patient_id: str
    timepoint: int
    label: str
    site: str
    image: np.ndarray
    mask: np.ndarray
    lesion_class: np.ndarray
    affine: np.ndarray
    params: dict
    fractions: dict = field(repr=False, default_factory=dict)

    @property
    def spacing(self) -> float:
        return float(self.affine[0, 0])


@lru_cache(maxsize=1)
def _regions() -> dict[str, np.ndarray]:
    return load_regions()


@lru_cache(maxsize=8)
def _anatomy(size: int) -> Anatomy:
    return load_anatomy(size)


# ----------------------------------------------------------------------------------------------- cohort plan
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


@lru_cache(maxsize=8)
def _longitudinal_patients(config: SyntheticConfig) -> tuple[frozenset[int], float]:
    """Ids of the longitudinal (site A) patients and their share of the cohort's scans."""
    plan = cohort_plan(config)
    counts: dict[int, int] = {}
    for pid, _, _ in plan:
        counts[int(pid)] = counts.get(int(pid), 0) + 1
    longitudinal = frozenset(p for p, n in counts.items() if n > 1)
    share = sum(counts[p] for p in longitudinal) / len(plan)
    return longitudinal, share


def _other(label: str) -> str:
    return "NMOSD" if label == "MS" else "MS"


def _blend_counts(own: CountModel, other: CountModel, b: float, *, allow_free: bool) -> CountModel:
    return CountModel(
        p_free=((1 - b) * own.p_free + b * other.p_free) if allow_free else 0.0,
        r=(1 - b) * own.r + b * other.r,
        mean=math.exp((1 - b) * math.log(own.mean) + b * math.log(other.mean)),
        minimum=own.minimum if b < 0.5 else other.minimum,
    )


def _draw_count(rng: np.random.Generator, model: CountModel) -> int:
    if rng.random() < model.p_free:
        return 0
    return max(model.minimum, int(rng.negative_binomial(model.r, model.r / (model.r + model.mean))))


def _rotation(axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Orthonormal columns whose first column is ``axis``."""
    a = np.asarray(axis, float) / max(np.linalg.norm(axis), 1e-9)
    helper = rng.normal(size=3)
    b = helper - helper @ a * a
    b /= max(np.linalg.norm(b), 1e-9)
    return np.stack([a, b, np.cross(a, b)], axis=1)


def _cst_samples(side: float) -> tuple[np.ndarray, np.ndarray]:
    """The corticospinal-tract polyline on one side and the arc length of its vertices (mm)."""
    points = np.array(CST_POLYLINE, float) * np.array([side, 1.0, 1.0])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    return points, arc


def _semi_axes(lesion: dict) -> np.ndarray:
    """Semi-axes (mm) of an ovoid lesion: volume of the equivalent-diameter sphere, the long one ``elongation`` times
    the others (a marbled lesion is enlarged by :data:`MARBLED_INFLATION` before the callosum cuts it)."""
    e = lesion.get("elongation", 1.0)
    inflate = MARBLED_INFLATION if LESION_CLASSES[lesion["class"]].shape == "marbled" else 1.0
    b = lesion["diameter_mm"] / 2 / e ** (1 / 3) * inflate
    return np.array([e * b, b, b])


def _band_radius(lesion: dict, *, wrap_corrected: bool = True) -> float:
    """Radius ρ of the ball that bounds a band lesion: V = π ρ² × thickness, divided by :data:`BAND_WRAP` unless
    ``wrap_corrected`` is false (the uncorrected ρ is a safe bounding-box reach)."""
    rho = math.sqrt(lesion["volume_ml"] * 1000 / (math.pi * lesion["thickness_mm"]))
    return rho / BAND_WRAP.get(LESION_CLASSES[lesion["class"]].field, 1.0) if wrap_corrected else rho


def _polyline_distance(pts: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Distance (mm) from points [N, 3] to a polyline [M, 3]."""
    return np.min([_segment_distance(pts, a, b) for a, b in zip(polyline[:-1], polyline[1:])], axis=0)


def _draw_classes(rng: np.random.Generator, mixture: dict[str, float], n: int | None = None):
    """Lesion classes drawn from a mixture (``n`` of them, or one when ``n`` is None)."""
    names = sorted(mixture)
    weights = np.array([mixture[name] for name in names])
    return rng.choice(names, size=n, p=weights / weights.sum())


def _draw_lesion(rng: np.random.Generator, name: str, regions: dict[str, np.ndarray]) -> dict:
    cls = LESION_CLASSES[name]
    diameter = cls.diameter * math.exp(cls.sigma * float(np.clip(rng.normal(), -2.5, 2.5)))
    lesion: dict = {"class": name, "diameter_mm": diameter, "shape_seed": int(rng.integers(2**31)),
                    "t2_ms": float(rng.uniform(*LESION_T2))}
    if cls.shape == "tube":
        side = 1.0 if rng.random() < 0.5 else -1.0
        _, arc = _cst_samples(side)
        length = float(rng.uniform(20.0, 60.0))
        start = float(rng.uniform(0.0, arc[-1] - length))
        lesion.update(side=side, arc_mm=[start, start + length], centre=None,
                      volume_ml=math.pi * (diameter / 2) ** 2 * length / 1000.0)
        return lesion
    candidates = regions[cls.region]
    i = int(rng.integers(len(candidates)))
    centre = candidates[i] + rng.uniform(-0.5, 0.5, size=3)
    lesion["centre"] = [float(v) for v in centre]
    lesion["volume_ml"] = math.pi / 6 * diameter**3 / 1000.0
    if cls.shape == "band":
        lesion["thickness_mm"] = float(rng.uniform(*cls.thickness))
        return lesion
    if name == "pv_ovoid":
        axis = regions["periventricular_dir"][i] + rng.normal(scale=0.15, size=3)
    elif name in ("callosal", "area_postrema"):
        axis = np.array([0.0, rng.normal(scale=0.3), 1.0])  # radiating up from the callosum / along the medulla
    elif name == "marbled":
        axis = np.array([rng.normal(scale=0.1), 1.0, rng.normal(scale=0.1)])  # along the callosal body
    else:
        axis = rng.normal(size=3)
    axis = axis / max(np.linalg.norm(axis), 1e-9)
    lesion["axis"] = [float(v) for v in axis]
    lesion["elongation"] = float(rng.uniform(*cls.elongation))
    if name == "pv_ovoid":  # a Dawson's finger starts at the ventricle wall and points away from it
        lesion["centre"] = [float(v) for v in centre + 0.6 * _semi_axes(lesion)[0] * axis]
    return lesion


def subject_plan(config: SyntheticConfig, patient: int | str, label: str) -> dict:
    """Everything about a subject that does not change between its time points (size-independent)."""
    if label not in MIXTURES:
        raise ValueError(f"label must be MS or NMOSD, got {label!r}")
    pid = int(patient)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, pid, 0]))
    d = config.difficulty
    mimic = bool(rng.random() < 0.5 * d)
    blend = float(rng.uniform(1.0 - d, 1.0) if mimic else rng.uniform(0.0, d))  # 0 = own disease, 1 = the other
    own, other = label, _other(label)
    names = sorted(set(MIXTURES["MS"]) | set(MIXTURES["NMOSD"]))
    mixture = {n: (1 - blend) * MIXTURES[own].get(n, 0.0) + blend * MIXTURES[other].get(n, 0.0) for n in names}
    counts = _blend_counts(COUNTS[own], COUNTS[other], blend, allow_free=(label == "NMOSD"))
    n_lesions = _draw_count(rng, counts)
    regions = _regions()
    lesions = [_draw_lesion(rng, str(k), regions) for k in _draw_classes(rng, mixture, n_lesions)]
    longitudinal, share_a = _longitudinal_patients(config)
    if rng.random() < config.site_class_coupling:
        site = "A" if pid in longitudinal else str(rng.choice(["B", "C", "D"]))
    else:
        site = str(rng.choice(["A", "B", "C", "D"], p=[share_a, *([(1 - share_a) / 3] * 3)]))
    scale = float(rng.uniform(0.93, 1.04)) * rng.uniform(0.98, 1.02, size=3)
    return {
        "patient": pid, "label": label, "mimic": mimic, "blend": blend, "mixture": mixture, "count_model": asdict(counts),
        "site": site, "lesions": lesions,
        "warp": {"scale": scale.tolist(), "angles_rad": rng.uniform(-0.07, 0.07, size=3).tolist(),
                 "shift_mm": rng.uniform(-3, 3, size=3).tolist(), "elastic_mm": 2.0, "elastic_seed": int(rng.integers(2**31))},
        "tissue_jitter": rng.uniform(0.97, 1.03, size=(3, 2)).tolist(),  # T1, T2 scale per tissue (wm, gm, csf)
        "normal_hyperintensity": float(rng.uniform(0.10, 0.15)),
    }


def scan_plan(config: SyntheticConfig, patient: int | str, timepoint: int, label: str) -> dict:
    """The subject plan plus this time point's lesion changes and nuisance draws."""
    plan = subject_plan(config, patient, label)
    pid = plan["patient"]
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, pid, 1000 + timepoint]))
    if timepoint:  # follow-up: lesions grow or shrink a little, and a new one may appear (and persists)
        for lesion in plan["lesions"]:
            factor = float(rng.uniform(0.9, 1.1))
            lesion["diameter_mm"] *= factor
            lesion["volume_ml"] *= factor ** (2 if LESION_CLASSES[lesion["class"]].shape == "tube" else 3)
        regions = _regions()
        for k in range(1, timepoint + 1):
            new_rng = np.random.default_rng(np.random.SeedSequence([config.seed, pid, 2000 + k]))
            if new_rng.random() < 0.3:
                lesion = _draw_lesion(new_rng, str(_draw_classes(new_rng, plan["mixture"])), regions)
                lesion["new_at_timepoint"] = k
                plan["lesions"].append(lesion)
        plan["warp"]["angles_rad"] = (np.asarray(plan["warp"]["angles_rad"]) + rng.uniform(-0.017, 0.017, 3)).tolist()
        plan["warp"]["shift_mm"] = (np.asarray(plan["warp"]["shift_mm"]) + rng.uniform(-1, 1, 3)).tolist()
    site = next(s for s in SITES if s.name == plan["site"])
    plan["timepoint"] = timepoint
    plan["protocol"] = {"tr_ms": site.tr * float(rng.uniform(0.98, 1.02)), "te_ms": site.te * float(rng.uniform(0.97, 1.03)),
                        "ti_ms": site.ti * float(rng.uniform(0.99, 1.01)), "slice_mm": site.slice_mm,
                        "noise": site.noise * float(rng.uniform(0.8, 1.2)), "bias": site.bias}
    plan["nuisance"] = {"bias_seed": int(rng.integers(2**31)), "noise_seed": int(rng.integers(2**31)),
                        "scale": float(rng.uniform(0.8, 1.25))}
    return plan


def plan_features(plan: dict) -> tuple[int, float, float]:
    """(lesion count, total planned volume mL, mean equivalent diameter mm) of a plan — the lesion-load signal."""
    lesions = plan["lesions"]
    if not lesions:
        return 0, 0.0, 0.0
    return len(lesions), float(sum(l["volume_ml"] for l in lesions)), float(np.mean([l["diameter_mm"] for l in lesions]))


# -------------------------------------------------------------------------------------------------- render
def _waves(seed: int, scale_mm: float, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    freq = 2 * np.pi / (scale_mm * rng.uniform(0.6, 1.4, size=(n, 1)))
    return directions * freq, rng.uniform(0, 2 * np.pi, size=n)


def _noise(q: np.ndarray, seed: int, scale_mm: float) -> np.ndarray:
    """Smooth pseudo-random field in about [-1, 1] over local coordinates q [..., 3]."""
    k, phase = _waves(seed, scale_mm)
    return np.cos(q @ k.T + phase).mean(axis=-1) * math.sqrt(2.0)


def _ramp(signed: np.ndarray, width: float) -> np.ndarray:
    """Membership from a signed distance (negative inside) with a linear edge ``width`` mm wide."""
    return np.clip(0.5 - signed / width, 0.0, 1.0)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(ab @ ab, 1e-9), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def _tube_points(lesion: dict) -> np.ndarray:
    points, arc = _cst_samples(lesion["side"])
    start, stop = lesion["arc_mm"]
    inner = [points[i] for i in range(len(arc)) if start < arc[i] < stop]
    at = [np.array([np.interp(s, arc, points[:, j]) for j in range(3)]) for s in (start, stop)]
    return np.array([at[0], *inner, at[1]])


def _lesion_extent(lesion: dict) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (MNI mm) of a lesion."""
    cls = LESION_CLASSES[lesion["class"]]
    r = lesion["diameter_mm"] / 2
    if cls.shape == "tube":
        pts = _tube_points(lesion)
        pad = r * 1.3 + 2
        return pts.min(axis=0) - pad, pts.max(axis=0) + pad
    if cls.shape == "band":
        reach = _band_radius(lesion, wrap_corrected=False) * 1.3 + lesion["thickness_mm"] + 3
    else:
        reach = _semi_axes(lesion)[0] * (1 + 2 * cls.irregularity) + cls.edge_mm + 2
    c = np.asarray(lesion["centre"])
    return c - reach, c + reach


def _membership(lesion: dict, pts: np.ndarray, anatomy: Anatomy, width: float) -> np.ndarray:
    """Lesion membership in [0, 1] at points [N, 3] (MNI mm)."""
    cls = LESION_CLASSES[lesion["class"]]
    r = lesion["diameter_mm"] / 2
    seed = lesion["shape_seed"]
    if cls.shape == "tube":
        tube = _tube_points(lesion)
        q = pts - tube.mean(axis=0)
        dist = _polyline_distance(pts, tube)
        return _ramp(dist - r * (1 + cls.irregularity * _noise(q, seed, 3 * r)), width)
    q = pts - np.asarray(lesion["centre"])
    wobble = 1 + cls.irregularity * _noise(q, seed, max(2 * r, 4.0))
    if cls.shape == "band":
        dist = ndimage.map_coordinates(getattr(anatomy, cls.field), _index(anatomy, pts), order=1, mode="nearest")
        outside = np.clip(dist / width, 0, 1)  # not inside the ventricle itself
        return (_ramp(dist - lesion["thickness_mm"] * wobble, width) * outside
                * _ramp(np.linalg.norm(q, axis=1) - _band_radius(lesion) * wobble, width))
    axes = _semi_axes(lesion)
    local = q @ _rotation(lesion["axis"], np.random.default_rng(seed))
    rn = np.sqrt(((local / axes) ** 2).sum(axis=1))
    norm = np.linalg.norm(q, axis=1)
    signed = norm * (1 - wobble / np.maximum(rn, 1e-6))  # distance to the surface along the ray from the centre
    member = _ramp(signed, width + cls.edge_mm)
    if cls.shape == "marbled":
        cc = ndimage.map_coordinates(anatomy.corpus_callosum.astype(np.float32), _index(anatomy, pts), order=1)
        member = member * np.clip(2 * cc - 0.5, 0, 1)
    return member


def _index(anatomy: Anatomy, pts: np.ndarray) -> np.ndarray:
    return ((pts - anatomy.origin) / anatomy.spacing).T


def render_lesions(lesions: list[dict], anatomy: Anatomy) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Lesion fraction, lesion T2 (ms) and lesion-class maps on the anatomy grid, and each lesion's volume (mL).

    Each lesion is evaluated on a grid of k³ points per voxel (spacing ≤ 1 mm) and averaged: the fraction is the
    partial volume. Overlapping lesions combine as 1 − Π(1 − f).
    """
    shape = anatomy.t1.shape
    s = anatomy.spacing
    k = max(1, math.ceil(s / 1.0))
    h = s / k
    free = np.ones(shape, np.float32)
    t2_weighted = np.zeros(shape, np.float32)
    weight = np.zeros(shape, np.float32)
    best = np.zeros(shape, np.float32)
    classes = np.zeros(shape, np.uint8)
    volumes = []
    offsets = h * (np.arange(k) - (k - 1) / 2)
    for lesion in lesions:
        lo, hi = _lesion_extent(lesion)
        i0 = np.clip(np.floor((lo - anatomy.origin) / s).astype(int), 0, shape)
        i1 = np.clip(np.ceil((hi - anatomy.origin) / s).astype(int) + 1, 0, shape)
        if (i1 <= i0).any():
            volumes.append(0.0)
            continue
        axes = [(anatomy.origin[d] + s * np.arange(i0[d], i1[d])[:, None] + offsets).ravel() for d in range(3)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        pts = grid.reshape(-1, 3)
        member = _membership(lesion, pts, anatomy, h)
        cls = LESION_CLASSES[lesion["class"]]
        t2 = lesion["t2_ms"] * (1 + cls.heterogeneity * np.clip(_noise(pts - pts.mean(axis=0), lesion["shape_seed"] + 1, 4.0), -1, 1))
        n = i1 - i0
        block = lambda a, n=n: a.reshape(n[0], k, n[1], k, n[2], k).mean(axis=(1, 3, 5))  # noqa: E731
        f = block(member).astype(np.float32)
        box = tuple(slice(a, b) for a, b in zip(i0, i1))
        volumes.append(float(f.sum() * s**3 / 1000.0))
        free[box] *= 1 - f
        t2_weighted[box] += block(member * t2).astype(np.float32)
        weight[box] += f
        win = (f > 0.05) & (f > best[box])
        classes[box][win] = CLASS_INDEX[lesion["class"]]
        best[box] = np.maximum(best[box], f)
    fraction = np.minimum(1 - free, anatomy.wm + anatomy.gm)
    t2 = np.where(weight > 0, t2_weighted / np.maximum(weight, 1e-6), LESION_T2[0]).astype(np.float32)
    classes[fraction < 0.25] = 0
    return fraction.astype(np.float32), t2, classes, volumes


@lru_cache(maxsize=4)
def _normal_hyperintensity(size: int) -> np.ndarray:
    """Where normal FLAIR is faintly bright (0..1): the corticospinal tracts and a rim around the 3rd/4th ventricles."""
    anatomy = _anatomy(size)
    x, y, z = anatomy.coordinates()
    pts = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    dist = np.minimum(*(_polyline_distance(pts, _cst_samples(side)[0]) for side in (1.0, -1.0)))
    cst = _ramp(dist.reshape(x.shape) - 3.0, anatomy.spacing)  # a tract ~6 mm across, one voxel of soft edge
    rim = _ramp(anatomy.dist_periependymal - 2.5, anatomy.spacing) * (anatomy.dist_periependymal > 0)
    return np.maximum(cst, rim).astype(np.float32)


# --------------------------------------------------------------------------------------------- warp, contrast
def _warp_coordinates(plan: dict, size: int, spacing: float) -> np.ndarray:
    """Source (anatomy-grid) index of every output voxel: affine + smooth elastic displacement."""
    w = plan["warp"]
    ax, ay, az = w["angles_rad"]
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    matrix = rz @ ry @ rx @ np.diag(1.0 / np.asarray(w["scale"]))
    centre = (size - 1) / 2.0
    grid = np.stack(np.meshgrid(*[np.arange(size, dtype=np.float32)] * 3, indexing="ij")).reshape(3, -1) - centre
    src = matrix @ grid + centre + np.asarray(w["shift_mm"])[:, None] / spacing
    rng = np.random.default_rng(w["elastic_seed"])
    control = rng.normal(scale=w["elastic_mm"] / spacing, size=(3, 5, 5, 5))
    elastic = np.stack([ndimage.zoom(c, size / 5, order=3, mode="nearest") for c in control])
    return (src + elastic.reshape(3, -1)).reshape(3, size, size, size)


def _signal(pd: float, t1: float, t2, protocol: dict):
    tr, te, ti = protocol["tr_ms"], protocol["te_ms"], protocol["ti_ms"]
    return pd * abs(1 - 2 * math.exp(-ti / t1) + math.exp(-tr / t1)) * np.exp(-te / np.asarray(t2))


def _bias_field(seed: int, amplitude: float, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, size=(4, 4, 4))
    smooth = ndimage.zoom(coarse, size / 4, order=3, mode="nearest")
    return (1 + amplitude * smooth / max(np.abs(smooth).max(), 1e-6)).astype(np.float32)


def generate_scan(config: SyntheticConfig, patient: int | str, timepoint: int, label: str) -> Scan:
    """Generate one scan deterministically from ``(config.seed, patient, timepoint)``."""
    plan = scan_plan(config, patient, timepoint, label)
    size = config.size
    anatomy = _anatomy(size)
    s = anatomy.spacing
    lesion_frac, lesion_t2, classes, volumes = render_lesions(plan["lesions"], anatomy)
    for lesion, volume in zip(plan["lesions"], volumes):
        lesion["rendered_volume_ml"] = volume
    coords = _warp_coordinates(plan, size, s)
    warp = lambda a, order=1: ndimage.map_coordinates(a, coords, order=order, mode="constant")  # noqa: E731
    wm, gm, csf = warp(anatomy.wm), warp(anatomy.gm), warp(anatomy.csf)
    lesion = np.minimum(np.clip(warp(lesion_frac), 0, 1), wm + gm)
    t2 = np.where(lesion > 0, warp(lesion_t2), LESION_T2[0])
    classes = warp(classes, order=0)
    bright = warp(_normal_hyperintensity(size))
    support = (wm + gm + csf) >= 0.5
    # contrast: partial volumes of WM, GM, CSF (lesion takes its share of WM and GM) through the signal equation
    protocol = plan["protocol"]
    jitter = np.asarray(plan["tissue_jitter"])
    signal = {name: float(_signal(pd, t1 * jitter[i, 0], t2t * jitter[i, 1], protocol))
              for i, (name, (pd, t1, t2t)) in enumerate(TISSUES.items())}
    parenchyma = np.maximum(wm + gm, 1e-6)
    keep = 1 - lesion / parenchyma
    image = (wm * keep * signal["wm"] * (1 + plan["normal_hyperintensity"] * bright) + gm * keep * signal["gm"]
             + csf * signal["csf"] + lesion * _signal(*LESION_PD_T1, t2, protocol)) / signal["wm"]
    # nuisance: slice thickness (z), bias, Rician noise, global scale; zero background (skull-stripped)
    blur = math.sqrt(max(protocol["slice_mm"] ** 2 - s**2, 0.0)) / 2.355 / s
    if blur > 0.05:
        image = ndimage.gaussian_filter1d(image, blur, axis=2)
    image = image * _bias_field(plan["nuisance"]["bias_seed"], protocol["bias"], size)
    noise = np.random.default_rng(plan["nuisance"]["noise_seed"]).normal(0, protocol["noise"], size=(2, *image.shape))
    image = np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2) * plan["nuisance"]["scale"]
    image = np.where(support, image, 0.0).astype(np.float32)
    labels, n = ndimage.label((lesion >= 0.5) & support, structure=np.ones((3, 3, 3)))
    sizes = ndimage.sum(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    mask = np.isin(labels, 1 + np.flatnonzero(sizes * s**3 >= MIN_COMPONENT_MM3)).astype(np.uint8)
    if classes.any() and (mask & (classes == 0)).any():  # nearest-neighbour class for mask voxels the linear warp added
        _, nearest = ndimage.distance_transform_edt(classes == 0, return_indices=True)
        classes = classes[tuple(nearest)]
    classes = np.where(mask > 0, classes, 0).astype(np.uint8)
    plan["lesion_volume_ml"] = float(lesion[support].sum() * s**3 / 1000.0)
    plan["mask_volume_ml"] = float(mask.sum() * s**3 / 1000.0)
    plan["generator"] = GENERATOR_VERSION
    plan["config"] = asdict(config)
    plan["lesion_class_index"] = CLASS_INDEX
    affine = np.diag([s, s, s, 1.0])
    affine[:3, 3] = anatomy.origin
    fractions = {"wm": wm, "gm": gm, "csf": csf, "lesion": lesion, "normal_hyperintensity": bright}
    return Scan(f"{int(patient):03d}", timepoint, label, plan["site"], image, mask, classes, affine, plan, fractions)


# ------------------------------------------------------------------------------------------------- cohort
def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def _write_scan(args: tuple[SyntheticConfig, str, int, str, str]) -> dict[str, str]:
    config, patient, tp, label, out = args
    scan = generate_scan(config, patient, tp, label)
    root = Path(out)
    stem = f"sub-{patient}_ses-{tp:02d}"
    image = Path(f"sub-{patient}/ses-{tp:02d}/anat/{stem}_FLAIR.nii.gz")
    derivatives = Path(f"derivatives/lesions/sub-{patient}/ses-{tp:02d}/anat")
    mask = derivatives / f"{stem}_label-lesion_mask.nii.gz"
    _save(scan.image, scan.affine, root / image)
    _save(scan.mask, scan.affine, root / mask)
    _save(scan.lesion_class, scan.affine, root / derivatives / f"{stem}_label-lesionclass_dseg.nii.gz")
    (root / image).with_name(f"{stem}_FLAIR.json").write_text(json.dumps(scan.params, indent=1))
    p = scan.params["protocol"]
    return {"scan_id": stem, "patient_id": f"sub-{patient}", "timepoint": str(tp), "label": label, "site": scan.site,
            "image_path": str(image), "mask_path": str(mask), "tr_ms": f"{p['tr_ms']:.0f}", "te_ms": f"{p['te_ms']:.0f}",
            "ti_ms": f"{p['ti_ms']:.0f}", "slice_mm": f"{p['slice_mm']:g}"}


def generate_cohort(config: SyntheticConfig, out: Path, *, progress: Callable[[int, int], None] | None = None,
                    jobs: int | None = None) -> Path:
    """Write the cohort under ``out`` (BIDS-like) and return its ``manifest.csv``.

    ``jobs`` worker processes (default: the CPU count, at most 4) generate scans in parallel; the output does
    not depend on it.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = cohort_plan(config)
    load_anatomy(config.size)  # derive and cache once, before the workers start
    load_regions()
    jobs = max(1, min(jobs or min(usable_cores(), 4), len(plan)))
    tasks = [(config, patient, tp, label, str(out)) for patient, tp, label in plan]
    rows: dict[int, dict[str, str]] = {}

    def done(i: int, row: dict[str, str]) -> None:
        rows[i] = row
        if progress:
            progress(len(rows), len(tasks))

    if jobs > 1:
        # spawn, not fork: the caller may already run torch/OpenMP threads, which a fork would copy in a locked state
        try:
            with spawn_pool(jobs) as pool:
                for i, row in enumerate(pool.map(_write_scan, tasks, chunksize=2)):
                    done(i, row)
        except BrokenProcessPool as exc:  # e.g. a __main__ the workers cannot import (python - < script)
            log.warning("cohort workers failed (%s); generating the remaining %d scans in this process",
                        exc, len(tasks) - len(rows))
    for i, task in enumerate(tasks):
        if i not in rows:
            done(i, _write_scan(task))
    ordered = [rows[i] for i in range(len(tasks))]
    participants = {row["patient_id"]: (row["label"], row["site"]) for row in ordered}
    (out / "participants.tsv").write_text(
        "participant_id\tdiagnosis\tsite\n" + "".join(f"{p}\t{d}\t{s}\n" for p, (d, s) in participants.items())
    )
    (out / "dataset_description.json").write_text(json.dumps({
        "Name": "jointbench synthetic MS/NMOSD cohort", "BIDSVersion": "1.8.0", "DatasetType": "raw",
        "GeneratedBy": [{"Name": "jointbench", "Version": GENERATOR_VERSION}], "config": asdict(config),
        "lesion_class_index": CLASS_INDEX}, indent=1))
    return write_manifest(out / "manifest.csv", ordered)
