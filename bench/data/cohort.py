"""Writing the synthetic cohort to disk, BIDS-like: one FLAIR, lesion mask and lesion-class map per scan, with
``participants.tsv``, ``dataset_description.json`` and the ``manifest.csv`` every loader reads.

Scans come from :func:`bench.data.synthetic.generate_scan`, in parallel worker processes; the output does not
depend on how many.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path

import nibabel as nib
import numpy as np

from bench.data.anatomy import load_anatomy, load_regions
from bench.data.lesions import CLASS_INDEX
from bench.data.manifest import write_manifest
from bench.data.synthetic import GENERATOR_VERSION, SyntheticConfig, cohort_plan, generate_scan
from bench.procs import spawn_pool, usable_cores

__all__ = ["generate_cohort"]

log = logging.getLogger(__name__)


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
        # never forked from the caller, which may already run torch/OpenMP threads (bench.procs)
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
