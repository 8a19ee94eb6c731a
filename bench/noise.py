"""Gaussian-noise robustness (docs/statistics.md): identical noisy inputs for every method and every rerun.

The noise for a (case, σ) pair comes from a generator seeded by both, so two methods evaluated on
the same case at the same σ see the same noise, and different σ give different noise. It is added
to the network's input, the preprocessed (cropped, resized, z-scored) volume, and never retrained on.

What σ is measured in (a study's ``noise_units``):

* ``range`` (default) — a fraction of the volume's intensity range, ``σ_abs = σ · (max − min)`` of the
  normalised volume: the paper's protocol (UML Table 2 adds σ = 0.03 and 0.05 to images scaled to
  [0, 1]; adding ``σ·(max − min)`` to the z-scored volume is exactly that noise, seen after min–max
  scaling).
* ``zscore`` — units of the brain's intensity standard deviation (the z-scored input itself).

Example:
    >>> import numpy as np
    >>> image = np.zeros((4, 4), dtype=np.float32); image[0, 0] = 10.0
    >>> noise = input_noise("case1", 0.05, image, "range")
    >>> bool(np.allclose(noise, gaussian_noise("case1", 0.05, image.shape) * 10.0))
    True
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["NOISE_UNITS", "DEFAULT_NOISE_UNITS", "LEGACY_NOISE_UNITS", "noise_seed", "gaussian_noise", "noise_scale", "input_noise",
           "noisy_key"]

NOISE_UNITS = ("range", "zscore")
#: What σ means when a study does not say (its ``noise_units``).
DEFAULT_NOISE_UNITS = "range"
#: What σ meant in unit specs written before ``noise_units`` existed (reports read such runs this way).
LEGACY_NOISE_UNITS = "zscore"


def noise_seed(case_id: str, sigma: float) -> int:
    digest = hashlib.sha256(f"{case_id}|{sigma:.6g}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def gaussian_noise(case_id: str, sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    """N(0, σ²) noise of ``shape`` (float32), determined by ``(case_id, sigma)``; zeros when σ = 0."""
    if sigma == 0:
        return np.zeros(shape, dtype=np.float32)
    rng = np.random.default_rng(noise_seed(case_id, sigma))
    return (rng.standard_normal(shape) * sigma).astype(np.float32)


def noise_scale(image: np.ndarray, units: str) -> float:
    """What σ = 1 means for ``image`` in ``units``: its intensity range (``range``) or 1 (``zscore``)."""
    if units == "range":
        return float(image.max() - image.min())
    if units == "zscore":
        return 1.0
    raise ValueError(f"unknown noise units '{units}'; expected one of {', '.join(NOISE_UNITS)}")


def input_noise(case_id: str, sigma: float, image: np.ndarray, units: str) -> np.ndarray:
    """The noise added to ``image`` (a case's clean network input) at grid value ``sigma``."""
    return gaussian_noise(case_id, sigma, image.shape) * np.float32(noise_scale(image, units))


def noisy_key(case_id: str, sigma: float) -> str:
    """The key of a case's map at σ > 0 in ``predictions.npz`` / ``uncertainty.npz`` (σ = 0 maps use the case id)."""
    return case_id if sigma == 0 else f"{case_id}@sigma={sigma:g}"
