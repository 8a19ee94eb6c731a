"""Width multipliers: every network scales its channel counts so CPU profiles can shrink it."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["scaled_channels"]


def scaled_channels(channels: Sequence[int], width: float, *, minimum: int = 4) -> tuple[int, ...]:
    """Scale channel counts by ``width``, rounding to a multiple of 2 and never below ``minimum``.

    >>> scaled_channels((16, 32, 64), 0.25)
    (4, 8, 16)
    """
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return tuple(max(minimum, int(round(c * width / 2.0)) * 2) for c in channels)
