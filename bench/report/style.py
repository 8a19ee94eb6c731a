"""Figure conventions shared by every report figure: the Okabe–Ito colour-blind-safe palette and
saving each figure as PNG and PDF, byte-identical when rebuilt from the same runs (no creation date)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["OKABE_ITO", "save_figure"]

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def save_figure(fig, out: Path, stem: str) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` under ``out``, close the figure, return the files."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for f in files:  # without a creation date (PDF) the same runs give the same bytes
        fig.savefig(f, bbox_inches="tight", metadata={"CreationDate": None} if f.suffix == ".pdf" else None)
    plt.close(fig)
    return files
