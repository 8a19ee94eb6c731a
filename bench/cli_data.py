"""``bench data``: check, preprocess, generate and look at datasets (registered on :mod:`bench.cli`).

Heavy imports live inside the commands so ``bench --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli_options import console as _console
from bench.data import DEFAULT_DIFFICULTY
from bench.errors import BenchError

__all__ = ["data_group"]



LAYOUT_OPTION = click.option("--format", "layout", type=click.Choice(["auto", "manifest", "isbi2015", "msseg2016", "bids"]),
                             default="auto", show_default=True, help="Dataset layout (auto-detected by default).")
MASK_OPTION = click.option("--mask", default="mask1", show_default=True,
                           help="ISBI 2015 only: mask1 | mask2 | union | intersection.")

@click.group(name="data")
def data_group() -> None:
    """Inspect datasets (real layouts or manifests)."""


@data_group.command("check")
@click.argument("path", type=click.Path(path_type=Path))
@LAYOUT_OPTION
@MASK_OPTION
def data_check(path: Path, layout: str, mask: str) -> None:
    """Validate a dataset and print a summary: cases, patients, labels, sites, shapes, spacings, lesion volumes.

    \b
    PATH is a dataset folder (ISBI 2015, MSSEG-2016, BIDS, or one holding manifest.csv) or a manifest CSV.
    Example: bench data check /data/ISBI2015 --mask intersection
    """
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from bench.data.check import summarise
    from bench.progress import counter_bar

    manifest, layout = _resolve_dataset(path, layout, mask)
    update, _ = counter_bar(_console(), "reading scans")
    summary = summarise(manifest, progress=update)
    table = Table(title=f"{path} ({layout}) — valid")
    table.add_column("field")
    table.add_column("value")
    fmt = lambda counter: ", ".join(f"{k}: {v}" for k, v in counter.most_common())  # noqa: E731
    table.add_row("scans / patients", f"{summary.cases} / {summary.patients}")
    table.add_row("labels", fmt(summary.labels))
    table.add_row("sites", fmt(summary.sites))
    table.add_row("shapes", fmt(summary.shapes))
    table.add_row("spacings (mm)", fmt(summary.spacings))
    for label, volumes in sorted(summary.lesion_ml.items()):
        v = np.asarray(volumes)
        table.add_row(f"lesion volume, {label} (mL)", f"median {np.median(v):.2f}, IQR {np.percentile(v, 25):.2f}–"
                      f"{np.percentile(v, 75):.2f}, lesion-free {int((v == 0).sum())} of {len(v)}")
    if summary.without_mask:
        table.add_row("scans without a mask", str(summary.without_mask))
    table.add_row("manifest", str(manifest))
    Console().print(table)


def _resolve_dataset(path: Path, layout: str, mask: str) -> tuple[Path, str]:
    """The manifest of a dataset folder or CSV (real layouts are converted under the cache)."""
    from bench.data import cache_root
    from bench.data.loaders import detect_layout, write_loader_manifest

    if path.suffix == ".csv":
        return path, "manifest"
    layout = detect_layout(path) if layout == "auto" else layout
    if layout == "manifest":
        return path / "manifest.csv", layout
    return write_loader_manifest(layout, path, cache_root(), **({"mask": mask} if layout == "isbi2015" else {})), layout


@data_group.command("preprocess")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--size", type=click.IntRange(min=8), default=160, show_default=True, help="Cube side after resizing.")
@click.option("--n4/--no-n4", default=True, show_default=True, help="N4 bias-field correction (SimpleITK).")
@LAYOUT_OPTION
@MASK_OPTION
def data_preprocess(path: Path, out: Path, size: int, n4: bool, layout: str, mask: str) -> None:
    """Apply the joint-model paper's preprocessing (N4, crop background, resize, z-score) and write a manifest dataset.

    \b
    Skull stripping is expected upstream. Example:
      bench data preprocess /data/raw_bids --out /data/prep160 --size 160
    """
    from bench.data.export import preprocess_dataset
    from bench.progress import counter_bar

    manifest, layout = _resolve_dataset(path, layout, mask)
    update, _ = counter_bar(_console(), f"preprocessing ({'N4, ' if n4 else ''}{size}³)")
    result = preprocess_dataset(manifest, out, size=size, n4=n4, progress=update)
    click.echo(f"wrote {result}; use it with dataset: {{name: manifest, options: {{path: {result}}}}}")


@data_group.command("synth")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--size", type=click.IntRange(min=16), default=64, show_default=True, help="Cube side (voxels).")
@click.option("--n-ms", type=click.IntRange(min=0), default=69, show_default=True)
@click.option("--n-nmosd", type=click.IntRange(min=0), default=62, show_default=True)
@click.option("--difficulty", type=click.FloatRange(0, 1), default=DEFAULT_DIFFICULTY, show_default=True,
              help="Class overlap, 0 (typical MS vs typical NMOSD) .. 1 (same lesion patterns).")
@click.option("--coupling", "site_class_coupling", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Site-class coupling: 1 = like the joint-model paper (the ISBI-like site is all MS), 0 = site independent of class.")
@click.option("--longitudinal", default="4,4,5,4,4", show_default=True,
              help="Time points of each longitudinal (ISBI-like) MS patient; '' for none.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: cores, at most 4).")
def data_synth(out: Path, size: int, n_ms: int, n_nmosd: int, difficulty: float, site_class_coupling: float,
               longitudinal: str, seed: int, jobs: int | None) -> None:
    """Generate the synthetic MS/NMOSD cohort on MNI anatomy (BIDS-like tree, participants.tsv, manifest.csv).

    \b
    Studies generate and cache it on first use; this writes a copy where you want it.
    Example: bench data synth --out cohort64 --size 64 --difficulty 0.5 --coupling 0
    """
    import time

    from bench.data.cohort import generate_cohort
    from bench.data.synthetic import SyntheticConfig
    from bench.progress import counter_bar

    try:
        timepoints = tuple(int(v) for v in longitudinal.split(",") if v.strip())
        config = SyntheticConfig(n_ms=n_ms, n_nmosd=n_nmosd, size=size, difficulty=difficulty, seed=seed,
                                 longitudinal=timepoints, site_class_coupling=site_class_coupling)
    except ValueError as exc:
        raise BenchError(f"--longitudinal/--n-ms/--n-nmosd: {exc}") from None
    update, _ = counter_bar(_console(), "generating scans")
    start = time.perf_counter()
    manifest = generate_cohort(config, out, progress=update, jobs=jobs)
    elapsed = time.perf_counter() - start
    n = n_ms + n_nmosd
    click.echo(f"wrote {manifest} ({n} scans at {size}³ in {elapsed:.1f} s, {elapsed / n:.2f} s per scan)")


@data_group.command("show")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("data.png"), show_default=True,
              help="PNG to write (a PDF is written beside it).")
@click.option("--per-class", type=click.IntRange(min=1, max=10), default=3, show_default=True, help="Subjects per class.")
@click.option("--slices", type=click.IntRange(min=1, max=8), default=3, show_default=True, help="Axial slices per subject.")
@click.option("--size", type=click.IntRange(min=16), default=64, show_default=True,
              help="Without PATH: the default synthetic cohort at this size (generated and cached if needed).")
@LAYOUT_OPTION
@MASK_OPTION
def data_show(path: Path | None, out: Path, per_class: int, slices: int, size: int, layout: str, mask: str) -> None:
    """Draw a few subjects per class: axial slices through their lesions, outlines coloured by lesion class.

    \b
    PATH is a dataset folder or manifest CSV; without it, the default synthetic cohort.
    Example: bench data show --out docs/cohort.png
    """
    from bench.data.show import show_dataset
    from bench.progress import counter_bar

    if path is None:
        from dataclasses import replace

        from bench.data import resolve_manifest
        from bench.profiles import PROFILES

        update, _ = counter_bar(_console(), f"generating the default cohort ({size}³, cached)")
        manifest = resolve_manifest("synthetic", {}, replace(PROFILES["cpu"], size=size), progress=update)
    else:
        manifest, layout = _resolve_dataset(path, layout, mask)
    update, _ = counter_bar(_console(), "reading masks")
    click.echo(f"wrote {show_dataset(manifest, out, per_class=per_class, slices=slices, progress=update)}")
