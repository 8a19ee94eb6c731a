"""The synthetic cohort's lesion model: the lesion classes of MS and NMOSD, their geometry, and their rendering
onto the anatomy (a soft membership, a binary mask after the smallest components are dropped, a class map).

:mod:`bench.data.synthetic` plans each subject's lesions from these classes and renders them here; the
literature behind every class is in docs/data.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bench.data.anatomy import CST_POLYLINE, Anatomy

__all__ = ["LesionClass", "LESION_CLASSES", "CLASS_INDEX", "MARBLED_INFLATION", "MIN_COMPONENT_MM3", "BAND_WRAP", "LESION_T2",
           "cst_samples", "semi_axes", "polyline_distance", "ramp", "render_lesions"]


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
LESION_T2 = (112.0, 150.0)
#: Index of each class in the lesion-class map (0 = no lesion).
CLASS_INDEX = {name: i + 1 for i, name in enumerate(LESION_CLASSES)}

def _rotation(axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Orthonormal columns whose first column is ``axis``."""
    a = np.asarray(axis, float) / max(np.linalg.norm(axis), 1e-9)
    helper = rng.normal(size=3)
    b = helper - helper @ a * a
    b /= max(np.linalg.norm(b), 1e-9)
    return np.stack([a, b, np.cross(a, b)], axis=1)


def cst_samples(side: float) -> tuple[np.ndarray, np.ndarray]:
    """The corticospinal-tract polyline on one side and the arc length of its vertices (mm)."""
    points = np.array(CST_POLYLINE, float) * np.array([side, 1.0, 1.0])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    return points, arc


def semi_axes(lesion: dict) -> np.ndarray:
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


def polyline_distance(pts: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Distance (mm) from points [N, 3] to a polyline [M, 3]."""
    return np.min([_segment_distance(pts, a, b) for a, b in zip(polyline[:-1], polyline[1:])], axis=0)


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


def ramp(signed: np.ndarray, width: float) -> np.ndarray:
    """Membership from a signed distance (negative inside) with a linear edge ``width`` mm wide."""
    return np.clip(0.5 - signed / width, 0.0, 1.0)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(ab @ ab, 1e-9), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def _tube_points(lesion: dict) -> np.ndarray:
    points, arc = cst_samples(lesion["side"])
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
        reach = semi_axes(lesion)[0] * (1 + 2 * cls.irregularity) + cls.edge_mm + 2
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
        dist = polyline_distance(pts, tube)
        return ramp(dist - r * (1 + cls.irregularity * _noise(q, seed, 3 * r)), width)
    q = pts - np.asarray(lesion["centre"])
    wobble = 1 + cls.irregularity * _noise(q, seed, max(2 * r, 4.0))
    if cls.shape == "band":
        dist = ndimage.map_coordinates(getattr(anatomy, cls.field), _index(anatomy, pts), order=1, mode="nearest")
        outside = np.clip(dist / width, 0, 1)  # not inside the ventricle itself
        return (ramp(dist - lesion["thickness_mm"] * wobble, width) * outside
                * ramp(np.linalg.norm(q, axis=1) - _band_radius(lesion) * wobble, width))
    axes = semi_axes(lesion)
    local = q @ _rotation(lesion["axis"], np.random.default_rng(seed))
    rn = np.sqrt(((local / axes) ** 2).sum(axis=1))
    norm = np.linalg.norm(q, axis=1)
    signed = norm * (1 - wobble / np.maximum(rn, 1e-6))  # distance to the surface along the ray from the centre
    member = ramp(signed, width + cls.edge_mm)
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
