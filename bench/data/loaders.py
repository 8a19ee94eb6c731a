"""Loaders that turn real dataset layouts into the manifest format (docs/data.md).

| layout | files |
|---|---|
| ISBI 2015 | ``training/trainingNN/preprocessed/trainingNN_TT_flair_pp.nii`` and ``.../masks/trainingNN_TT_mask{1,2}.nii`` |
| MSSEG-2016 | ``Center_XX/Patient_YY/Preprocessed_Data/FLAIR_preprocessed.nii.gz`` and ``.../Masks/Consensus.nii.gz`` |
| BIDS | ``sub-*/[ses-*/]anat/*_FLAIR.nii.gz``; masks ``derivatives/*/sub-*/[ses-*/]anat/*_label-lesion_mask.nii.gz``; |
|      | diagnosis in ``participants.tsv`` |

Each loader returns manifest rows with absolute paths; :func:`write_loader_manifest` writes them under
the cache so a study can name the layout directly (``dataset: {name: isbi2015, options: {path: …}}``).
ISBI's two raters are combined as ``mask1`` (default), ``mask2``, ``union`` or ``intersection`` (the joint-model paper
used the intersection); combined masks are written next to the manifest.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from bench.data.manifest import write_manifest
from bench.errors import ConfigError, DataError, did_you_mean

__all__ = ["isbi2015_rows", "msseg2016_rows", "bids_rows", "LOADERS", "detect_layout", "write_loader_manifest"]

ISBI_MASKS = ("mask1", "mask2", "union", "intersection")
_ISBI_FLAIR = re.compile(r"training(\d+)_(\d+)_flair_pp\.nii(\.gz)?$")


def _row(scan_id, patient, timepoint, label, site, image, mask) -> dict[str, str]:
    return {"scan_id": scan_id, "patient_id": patient, "timepoint": str(timepoint), "label": label, "site": site,
            "image_path": str(Path(image).resolve()), "mask_path": str(Path(mask).resolve()) if mask else ""}


def _combine(mask1: Path, mask2: Path, mode: str, out: Path) -> Path:
    a, b = (nib.load(str(p)) for p in (mask1, mask2))
    if a.shape != b.shape:
        raise DataError(f"{mask2}: shape {b.shape} differs from {mask1.name} {a.shape}")
    x, y = np.asarray(a.dataobj) > 0, np.asarray(b.dataobj) > 0
    combined = (x | y) if mode == "union" else (x & y)
    out.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(combined.astype(np.uint8), a.affine), str(out))
    return out


def isbi2015_rows(root: Path, *, mask: str = "mask1", derived: Path | None = None) -> list[dict[str, str]]:
    """ISBI 2015 training set: 5 MS patients, 4–5 time points each, two raters' masks."""
    if mask not in ISBI_MASKS:
        raise ConfigError(f"ISBI 2015 mask '{mask}' unknown{did_you_mean(mask, ISBI_MASKS)}; expected one of {', '.join(ISBI_MASKS)}")
    root = Path(root)
    flairs = sorted(root.glob("training/training*/preprocessed/training*_flair_pp.nii*"))
    if not flairs:
        raise DataError(f"{root}: no ISBI 2015 scans (expected training/trainingNN/preprocessed/trainingNN_TT_flair_pp.nii)")
    rows = []
    for flair in flairs:
        match = _ISBI_FLAIR.search(flair.name)
        if not match:
            continue
        patient, tp = match.group(1), match.group(2)
        masks_dir = flair.parent.parent / "masks"
        found = {}
        for rater in ("mask1", "mask2"):
            candidates = sorted(masks_dir.glob(f"training{patient}_{tp}_{rater}.nii*"))
            if not candidates and (mask == rater or mask in ("union", "intersection")):
                raise DataError(f"{flair}: no {rater} found (expected {masks_dir}/training{patient}_{tp}_{rater}.nii)")
            found[rater] = candidates[0] if candidates else None
        if mask in ("mask1", "mask2"):
            mask_path = found[mask]
        else:
            mask_path = _combine(found["mask1"], found["mask2"], mask,
                                 (derived or masks_dir) / f"training{patient}_{tp}_{mask}.nii.gz")
        rows.append(_row(f"isbi{patient}_{tp}", f"isbi{patient}", int(tp), "MS", "ISBI", flair, mask_path))
    return rows


def msseg2016_rows(root: Path, **_: object) -> list[dict[str, str]]:
    """MSSEG-2016: every patient has MS; the consensus mask is the reference; the centre is the site."""
    root = Path(root)
    flairs = sorted(root.glob("Center_*/Patient_*/Preprocessed_Data/FLAIR_preprocessed.nii*"))
    if not flairs:
        raise DataError(f"{root}: no MSSEG-2016 scans (expected Center_XX/Patient_YY/Preprocessed_Data/FLAIR_preprocessed.nii.gz)")
    rows = []
    for flair in flairs:
        patient_dir = flair.parent.parent
        centre, patient = patient_dir.parent.name, patient_dir.name
        masks = sorted((patient_dir / "Masks").glob("Consensus.nii*"))
        if not masks:
            raise DataError(f"{patient_dir}: no Masks/Consensus.nii.gz")
        pid = f"{centre}-{patient}"
        rows.append(_row(pid, pid, 0, "MS", centre, flair, masks[0]))
    return rows


def _participants(root: Path) -> dict[str, dict[str, str]]:
    path = root / "participants.tsv"
    if not path.exists():
        raise DataError(f"{root}: participants.tsv not found (it holds each subject's diagnosis)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        columns = reader.fieldnames or []
        column = next((c for c in ("diagnosis", "group", "label") if c in columns), None)
        if column is None or "participant_id" not in columns:
            raise DataError(f"{path}: needs columns participant_id and diagnosis (or group/label); found {', '.join(columns)}")
        out = {}
        for line, row in enumerate(reader, start=2):
            value = (row[column] or "").strip()
            label = {"ms": "MS", "nmosd": "NMOSD", "": "", "n/a": ""}.get(value.lower())
            if label is None:
                raise DataError(f"{path}:{line}: {column} '{value}' unknown; expected MS, NMOSD or empty")
            out[row["participant_id"].strip()] = {"label": label, "site": (row.get("site") or "").strip()}
    return out


def bids_rows(root: Path, **_: object) -> list[dict[str, str]]:
    """BIDS: FLAIR images per subject/session, lesion masks from any derivatives pipeline."""
    root = Path(root)
    people = _participants(root)
    flairs = sorted(p for p in root.glob("sub-*/**/anat/*_FLAIR.nii*"))
    if not flairs:
        raise DataError(f"{root}: no sub-*/[ses-*/]anat/*_FLAIR.nii.gz files")
    masks = {}
    for m in root.glob("derivatives/*/sub-*/**/anat/*_label-lesion_mask.nii*"):
        masks.setdefault(m.name.split("_label-lesion_mask")[0], m)
    rows = []
    for flair in flairs:
        stem = flair.name.split("_FLAIR")[0]
        entities = dict(part.split("-", 1) for part in stem.split("_") if "-" in part)
        subject = f"sub-{entities['sub']}"
        if subject not in people:
            raise DataError(f"{flair}: subject {subject} is not in participants.tsv")
        mask_key = "_".join(p for p in stem.split("_") if p.split("-")[0] in ("sub", "ses"))
        mask = masks.get(stem) or masks.get(mask_key)
        rows.append(_row(stem, subject, entities.get("ses", "0"), people[subject]["label"],
                         people[subject]["site"] or "unknown", flair, mask))
    return rows


LOADERS: dict[str, Callable[..., list[dict[str, str]]]] = {"isbi2015": isbi2015_rows, "msseg2016": msseg2016_rows,
                                                           "bids": bids_rows}


def detect_layout(root: Path) -> str:
    """``manifest``, ``isbi2015``, ``msseg2016`` or ``bids`` from the files under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"'{root}' is not a directory")
    if (root / "manifest.csv").exists():
        return "manifest"
    if any(root.glob("training/training*/preprocessed")):
        return "isbi2015"
    if any(root.glob("Center_*/Patient_*")):
        return "msseg2016"
    if (root / "participants.tsv").exists() or any(root.glob("sub-*")):
        return "bids"
    raise DataError(f"{root}: not a known layout (manifest.csv, ISBI 2015 training/, MSSEG-2016 Center_*/, or BIDS sub-*/)")


def write_loader_manifest(layout: str, root: Path, cache: Path, **options: str) -> Path:
    """Run a loader and write its manifest under ``cache/manifests/`` (keyed by layout, path and options)."""
    if layout not in LOADERS:
        raise ConfigError(f"unknown layout '{layout}'{did_you_mean(layout, LOADERS)}; expected one of {', '.join(LOADERS)}")
    key = hashlib.sha256(f"{layout}|{Path(root).resolve()}|{sorted(options.items())}".encode()).hexdigest()[:12]
    out = cache / "manifests" / f"{layout}-{key}"
    out.mkdir(parents=True, exist_ok=True)
    rows = LOADERS[layout](Path(root), derived=out / "masks", **options) if layout == "isbi2015" else LOADERS[layout](Path(root), **options)
    return write_manifest(out / "manifest.csv", rows)
