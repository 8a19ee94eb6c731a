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

The generator's decisions beyond the design targets, and the measurements behind them, are in docs/data.md
("The generator's decisions").
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage

from bench.data.anatomy import Anatomy, load_anatomy, load_regions
from bench.data.cache import DEFAULT_DIFFICULTY
from bench.data.lesions import (
    CLASS_INDEX,
    LESION_CLASSES,
    LESION_T2,
    MIN_COMPONENT_MM3,
    cst_samples,
    polyline_distance,
    ramp,
    render_lesions,
    semi_axes,
)

__all__ = [
    "GENERATOR_VERSION", "DEFAULT_DIFFICULTY", "MIXTURES", "COUNTS", "SITES", "SyntheticConfig",
    "Scan", "cohort_plan", "subject_plan", "scan_plan", "plan_features", "generate_scan",
]

log = logging.getLogger(__name__)
GENERATOR_VERSION = "mni-3"


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
        _, arc = cst_samples(side)
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
        lesion["centre"] = [float(v) for v in centre + 0.6 * semi_axes(lesion)[0] * axis]
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


@lru_cache(maxsize=4)
def normal_hyperintensity(size: int) -> np.ndarray:
    """Where normal FLAIR is faintly bright (0..1): the corticospinal tracts and a rim around the 3rd/4th ventricles."""
    anatomy = _anatomy(size)
    x, y, z = anatomy.coordinates()
    pts = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    dist = np.minimum(*(polyline_distance(pts, cst_samples(side)[0]) for side in (1.0, -1.0)))
    cst = ramp(dist.reshape(x.shape) - 3.0, anatomy.spacing)  # a tract ~6 mm across, one voxel of soft edge
    rim = ramp(anatomy.dist_periependymal - 2.5, anatomy.spacing) * (anatomy.dist_periependymal > 0)
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
    bright = warp(normal_hyperintensity(size))
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
