"""Gaussian-noise robustness (STATS.md): identical noisy inputs for every method and every rerun.

The noise for a (case, σ) pair comes from a generator seeded by both, so two methods evaluated on
the same case at the same σ see the same noise, and different σ give different noise. σ is in units
of the input after preprocessing, i.e. of the brain's intensity standard deviation (z-scored input).
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["noise_seed", "gaussian_noise"]


def noise_seed(case_id: str, sigma: float) -> int:
    digest = hashlib.sha256(f"{case_id}|{sigma:.6g}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def gaussian_noise(case_id: str, sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    """N(0, σ²) noise of ``shape`` (float32), determined by ``(case_id, sigma)``; zeros when σ = 0."""
    if sigma == 0:
        return np.zeros(shape, dtype=np.float32)
    rng = np.random.default_rng(noise_seed(case_id, sigma))
    return (rng.standard_normal(shape) * sigma).astype(np.float32)
