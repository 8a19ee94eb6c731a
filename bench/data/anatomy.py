"""Real brain anatomy for the synthetic cohort, from nilearn's shipped ICBM152 2009a templates (docs/data.md).

The symmetric ICBM152 2009a T1, grey- and white-matter maps (197 × 233 × 189, 1 mm, origin
(−98, −134, −72) mm) are read from the installed nilearn package at run time — never copied into the
repository. Derived at 1 mm:

- brain = T1 > 0.2 (1.88 L); CSF ≈ clip(1 − GM − WM) inside the brain; "CSF-like" = CSF > 0.5 and T1 < 0.45;
- lateral ventricles: CSF-like voxels deeper than 10 mm, connected components > 3 mL whose centroid
  has 5 < |x| < 25 mm and z > −5 mm (≈ 15 mL);
- 3rd ventricle = CSF-like ∩ ellipsoid((0, −12, −2), (3, 14, 10)) (≈ 0.6 mL); 4th ventricle = CSF-like ∩
  ellipsoid((0, −44, −30), (8, 7, 11)) (≈ 1.3 mL); aqueduct = ellipsoid((0, −32, −10), (2, 4, 8));
- corpus callosum: WM > 0.6, |x| ≤ 10, 4 < z < 32, −42 < y < 32, within 12 mm of the lateral ventricles;
- distance maps (mm) to the lateral ventricles, to the 3rd/4th ventricles and aqueduct, to cortex
  (GM > 0.5) and to the brain surface.

:func:`load_anatomy` caches the result per grid size under the user cache (``$BENCH_CACHE/anatomy``):
``size=None`` is the 1 mm grid; ``size=S`` resamples onto an S³ cube centred on the brain (fractions and
distances linearly; structures as resampled fractions ≥ 0.5, so small ones such as the 4th ventricle
can vanish at 64³, as docs/data.md warns). Arrays are indexed (x, y, z) in RAS orientation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = ["ANATOMY_VERSION", "MNI_POINTS", "CST_POLYLINE", "REGIONS", "Anatomy", "derive_anatomy", "load_anatomy",
           "derive_regions", "load_regions"]

ANATOMY_VERSION = "2"
MARGIN_MM = 12.0  # each side of the brain's bounding box on the S³ grids (room for the generator's warps)
MNI_ORIGIN = np.array([-98.0, -134.0, -72.0])
#: Named points (MNI mm); bilateral points are given for the right side (+x) and mirrored by the generator.
MNI_POINTS = {
    "thalamus": (12, -18, 6), "hypothalamus": (4, -4, -10), "internal_capsule_posterior_limb": (22, -12, 8),
    "cerebral_peduncle": (14, -18, -12), "pons": (0, -25, -30), "area_postrema": (0, -42, -47),
    "cerebellar_wm": (18, -55, -30),
}
#: Corticospinal tract, right side, from the corona radiata to the medulla (MNI mm); mirror x for the left.
CST_POLYLINE = ((24, -20, 52), (24, -16, 32), (22, -13, 10), (16, -18, -8), (11, -22, -20), (7, -26, -32), (4, -34, -46))


@dataclass(frozen=True)
class Anatomy:
    """Tissue fractions, structures and distance maps on one grid. Arrays [X, Y, Z]; ``origin`` = MNI mm of voxel 0."""

    spacing: float
    origin: np.ndarray
    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray
    lateral_ventricles: np.ndarray
    third_ventricle: np.ndarray
    fourth_ventricle: np.ndarray
    aqueduct: np.ndarray
    corpus_callosum: np.ndarray
    dist_lateral: np.ndarray
    dist_periependymal: np.ndarray
    dist_cortex: np.ndarray
    depth: np.ndarray

    def volume_ml(self, name: str) -> float:
        return float(np.asarray(getattr(self, name), bool).sum() * self.spacing**3 / 1000.0)

    def mni_to_voxel(self, point) -> np.ndarray:
        """Voxel coordinates (float) of an MNI point in mm."""
        return (np.asarray(point, float) - self.origin) / self.spacing

    def coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """MNI mm of every voxel centre (x, y, z grids)."""
        axes = [self.origin[i] + self.spacing * np.arange(self.t1.shape[i]) for i in range(3)]
        return np.meshgrid(*axes, indexing="ij")


def _templates() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from nilearn.datasets import load_mni152_gm_template, load_mni152_template, load_mni152_wm_template

    return tuple(np.asarray(f(resolution=1).dataobj, np.float32)
                 for f in (load_mni152_template, load_mni152_gm_template, load_mni152_wm_template))


def _ellipsoid(x, y, z, centre, radii) -> np.ndarray:
    return ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((z - centre[2]) / radii[2]) ** 2 <= 1


def _lateral_ventricles(csf_like: np.ndarray, depth: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(csf_like & (depth > 10))
    index = np.arange(1, n + 1)
    sizes = ndimage.sum(np.ones_like(labels), labels, index)
    centres = np.asarray(ndimage.center_of_mass(np.ones_like(labels), labels, index)) + MNI_ORIGIN
    keep = [i for i, s, c in zip(index, sizes, centres) if s > 3000 and 5 < abs(c[0]) < 25 and c[2] > -5]
    return np.isin(labels, keep)


def derive_anatomy() -> Anatomy:
    """All structures at 1 mm (about 5 s)."""
    t1, gm, wm = _templates()
    brain = t1 > 0.2
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0) * brain
    axes = [MNI_ORIGIN[i] + np.arange(t1.shape[i]) for i in range(3)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    depth = ndimage.distance_transform_edt(brain)
    csf_like = (csf > 0.5) & (t1 < 0.45)
    lateral = _lateral_ventricles(csf_like, depth)
    third = csf_like & _ellipsoid(x, y, z, (0, -12, -2), (3, 14, 10))
    fourth = csf_like & _ellipsoid(x, y, z, (0, -44, -30), (8, 7, 11))
    aqueduct = _ellipsoid(x, y, z, (0, -32, -10), (2, 4, 8))
    dist_lateral = ndimage.distance_transform_edt(~lateral)
    callosum = (wm > 0.6) & (np.abs(x) <= 10) & (z > 4) & (z < 32) & (y > -42) & (y < 32) & (dist_lateral <= 12)
    return Anatomy(
        spacing=1.0, origin=MNI_ORIGIN.copy(), t1=t1, gm=gm * brain, wm=wm * brain, csf=csf, brain=brain,
        lateral_ventricles=lateral, third_ventricle=third, fourth_ventricle=fourth, aqueduct=aqueduct,
        corpus_callosum=callosum, dist_lateral=dist_lateral.astype(np.float32),
        dist_periependymal=ndimage.distance_transform_edt(~(third | fourth | aqueduct)).astype(np.float32),
        dist_cortex=ndimage.distance_transform_edt(~(gm > 0.5)).astype(np.float32), depth=depth.astype(np.float32),
    )


def _resample(anatomy: Anatomy, size: int) -> Anatomy:
    """Onto an S³ cube centred on the brain's bounding box, covering it with a 12 mm margin.

    Tissue fractions and T1 are low-pass filtered first (Gaussian, FWHM ≈ the new spacing) so that a coarse voxel holds
    the partial-volume average of its neighbourhood instead of one aliased 1 mm sample.
    """
    nz = np.argwhere(anatomy.brain)
    lo, hi = nz.min(axis=0), nz.max(axis=0) + 1
    side = float((hi - lo).max() + 2 * MARGIN_MM)  # mm at 1 mm spacing
    spacing = side / size
    centre = (lo + hi) / 2.0
    start = centre - side / 2.0 + spacing / 2.0 - 0.5  # voxel coordinate of the first output centre
    grid = [start[i] + spacing * np.arange(size) for i in range(3)]
    coords = np.stack(np.meshgrid(*grid, indexing="ij"))
    out = {}
    for f in fields(Anatomy):
        if f.name in ("spacing", "origin"):
            continue
        source = getattr(anatomy, f.name).astype(np.float32)
        if f.name in ("t1", "gm", "wm", "csf") and spacing > 1.0:
            source = ndimage.gaussian_filter(source, sigma=0.42 * np.sqrt(spacing**2 - 1.0))
        resampled = ndimage.map_coordinates(source, coords, order=1, mode="constant",
                                            cval=float(source.max()) if f.name.startswith("dist") else 0.0)
        out[f.name] = resampled >= 0.5 if getattr(anatomy, f.name).dtype == bool else resampled.astype(np.float32)
    origin = MNI_ORIGIN + start  # input voxel i sits at MNI origin + i mm, so output voxel 0 sits at origin + start
    return Anatomy(spacing=spacing, origin=origin, **out)


#: Candidate lesion sites (MNI mm), each a rule on the 1 mm anatomy; the generator samples lesion centres from them.
REGIONS = (
    "periventricular", "ventricle_wall", "juxtacortical", "deep_wm", "infratentorial", "callosal_undersurface",
    "subcortical", "periependymal", "corpus_callosum", "area_postrema", "thalamus", "hypothalamus",
)


def _near(x, y, z, points, radius: float) -> np.ndarray:
    out = np.zeros(x.shape, bool)
    for p in points:
        out |= (x - p[0]) ** 2 + (y - p[1]) ** 2 + (z - p[2]) ** 2 <= radius**2
    return out


def _bilateral(name: str) -> list[tuple]:
    x, y, z = MNI_POINTS[name]
    return [(x, y, z), (-x, y, z)] if x else [(x, y, z)]


def derive_regions(anatomy: Anatomy, *, max_points: int = 20000) -> dict[str, np.ndarray]:
    """Candidate centres per region (float32 [N, 3], MNI mm), at most ``max_points`` each (a fixed subsample).

    The rules encode docs/data.md's lesion sites: e.g. ``periventricular`` = WM > 0.5 at 1–5 mm from the lateral
    ventricles; ``deep_wm`` = WM > 0.8 more than 8 mm from the ventricles and 6 mm from cortex, supratentorial;
    ``subcortical`` = WM > 0.5 at 2–12 mm from cortex (NMOSD's punctate dots); ``infratentorial`` = WM > 0.5 within
    12 mm of the pons, cerebral peduncles or cerebellar WM and below z = −12 mm.
    """
    if anatomy.spacing != 1.0:
        raise ValueError("derive_regions needs the 1 mm anatomy")
    x, y, z = anatomy.coordinates()
    wm, gm = anatomy.wm, anatomy.gm
    parenchyma = (wm + gm) > 0.5
    csf_like = (anatomy.csf > 0.5) & (anatomy.t1 < 0.45)
    ventricles = anatomy.third_ventricle | anatomy.fourth_ventricle | anatomy.aqueduct
    dl, dc, dp = anatomy.dist_lateral, anatomy.dist_cortex, anatomy.dist_periependymal
    rules = {
        "periventricular": (wm > 0.5) & (dl > 1) & (dl <= 5) & ~csf_like,
        "ventricle_wall": (dl > 0) & (dl <= 2) & parenchyma,
        "juxtacortical": (wm > 0.4) & (dc > 0) & (dc <= 3) & (z > -10) & (anatomy.depth > 4),
        "deep_wm": (wm > 0.8) & (dl > 8) & (dc > 6) & (z > -5),
        "infratentorial": (wm > 0.5) & (z < -12) & _near(
            x, y, z, [*_bilateral("pons"), *_bilateral("cerebral_peduncle"), *_bilateral("cerebellar_wm")], 12.0),
        "callosal_undersurface": anatomy.corpus_callosum & (dl <= 3),
        "subcortical": (wm > 0.5) & (dc > 2) & (dc <= 12) & (z > -10),
        "periependymal": (dp > 0) & (dp <= 2.5) & parenchyma & ~ventricles & ~csf_like,
        "corpus_callosum": anatomy.corpus_callosum,
        "area_postrema": _near(x, y, z, _bilateral("area_postrema"), 3.0) & anatomy.brain,
        "thalamus": _near(x, y, z, _bilateral("thalamus"), 5.0) & parenchyma,
        "hypothalamus": _near(x, y, z, _bilateral("hypothalamus"), 3.0) & parenchyma,
    }
    rng = np.random.default_rng(0)
    out = {}
    for name in REGIONS:
        idx = np.argwhere(rules[name])
        if len(idx) == 0:
            raise RuntimeError(f"anatomy region '{name}' is empty; the templates are not what docs/data.md describes")
        if len(idx) > max_points:
            idx = idx[np.sort(rng.choice(len(idx), max_points, replace=False))]
        out[name] = (idx + anatomy.origin).astype(np.float32)
        if name == "periventricular":  # direction away from the ventricles (Dawson's fingers point along it)
            i, j, k = idx.T
            grad = np.stack([dl[i + 1, j, k] - dl[i - 1, j, k], dl[i, j + 1, k] - dl[i, j - 1, k],
                             dl[i, j, k + 1] - dl[i, j, k - 1]], axis=1)
            out["periventricular_dir"] = (grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-6)).astype(np.float32)
    return out


def load_regions(*, cache: Path | None = None) -> dict[str, np.ndarray]:
    """:func:`derive_regions` of the 1 mm anatomy, cached beside it."""
    from bench.data.cache import cache_root

    path = (cache or cache_root()) / "anatomy" / f"v{ANATOMY_VERSION}-regions.npz"
    if path.exists():
        with np.load(path) as z:
            return {name: z[name] for name in z.files}
    regions = derive_regions(load_anatomy(None, cache=cache))
    _save_npz(path, regions)
    return regions


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a cache file atomically (a reader never sees a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_anatomy(size: int | None = None, *, cache: Path | None = None) -> Anatomy:
    """The anatomy at 1 mm (``size=None``) or on an S³ cube, cached under ``$BENCH_CACHE/anatomy``."""
    from bench.data.cache import cache_root

    path = (cache or cache_root()) / "anatomy" / f"v{ANATOMY_VERSION}-{'1mm' if size is None else size}.npz"
    if path.exists():
        with np.load(path) as z:
            return Anatomy(**{f.name: (z[f.name] if f.name != "spacing" else float(z[f.name])) for f in fields(Anatomy)})
    base = derive_anatomy() if size is None else load_anatomy(None, cache=cache)
    anatomy = base if size is None else _resample(base, size)
    _save_npz(path, {f.name: getattr(anatomy, f.name) for f in fields(Anatomy)})
    return anatomy
