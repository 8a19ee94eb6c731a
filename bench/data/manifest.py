"""The manifest: one CSV row per scan, the format every dataset is normalised to (docs/data.md).

Columns: ``scan_id, patient_id, timepoint, label (MS|NMOSD|empty), site, image_path, mask_path``;
optional scanner parameters and a fixed ``fold`` are kept as extra columns. Relative paths are
relative to the manifest's folder.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from bench.errors import DataError

__all__ = ["Case", "LABELS", "REQUIRED_COLUMNS", "read_manifest", "write_manifest", "manifest_fingerprint"]

LABELS = {"MS": 0, "NMOSD": 1}
LABEL_NAMES = {v: k for k, v in LABELS.items()}
REQUIRED_COLUMNS = ("scan_id", "patient_id", "timepoint", "label", "site", "image_path", "mask_path")


@dataclass(frozen=True)
class Case:
    """One scan. ``label`` is 0 (MS), 1 (NMOSD) or None; ``mask_path`` may be None (classification-only data)."""

    scan_id: str
    patient_id: str
    timepoint: str
    label: int | None
    site: str
    image_path: Path
    mask_path: Path | None


def _path(root: Path, value: str) -> Path | None:
    value = value.strip()
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else root / path


def read_manifest(path: Path, *, check_files: bool = True) -> list[Case]:
    """Read and validate a manifest; every problem names the file, the row and the column.

    Besides each row, checks that scan ids are unique and that every patient's scans share one label.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"manifest '{path}' not found")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(REQUIRED_COLUMNS)}")
        rows = list(reader)
    if not rows:
        raise DataError(f"{path}: no rows")
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        where = f"{path}:{line}"
        scan_id = (row["scan_id"] or "").strip()
        if not scan_id:
            raise DataError(f"{where}: scan_id is empty")
        if scan_id in seen:
            raise DataError(f"{where}: duplicate scan_id '{scan_id}' (first on line {seen[scan_id]})")
        seen[scan_id] = line
        label_text = (row["label"] or "").strip()
        if label_text and label_text not in LABELS:
            raise DataError(f"{where}: label '{label_text}' unknown; expected MS, NMOSD or empty")
        patient = (row["patient_id"] or "").strip()
        if not patient:
            raise DataError(f"{where}: patient_id is empty")
        image = _path(path.parent, row["image_path"] or "")
        if image is None:
            raise DataError(f"{where}: image_path is empty")
        mask = _path(path.parent, row["mask_path"] or "")
        if check_files:
            for column, file in (("image_path", image), ("mask_path", mask)):
                if file is not None and not file.exists():
                    raise DataError(f"{where}: {column} '{file}' does not exist")
        cases.append(
            Case(
                scan_id=scan_id,
                patient_id=patient,
                timepoint=(row["timepoint"] or "").strip(),
                label=LABELS[label_text] if label_text else None,
                site=(row["site"] or "").strip(),
                image_path=image,
                mask_path=mask,
            )
        )
    labels_by_patient: dict[str, set] = {}
    for case in cases:
        labels_by_patient.setdefault(case.patient_id, set()).add(case.label)
    mixed = sorted(p for p, labels in labels_by_patient.items() if len(labels) > 1)
    if mixed:
        raise DataError(f"{path}: patient(s) {', '.join(mixed[:5])} have scans with different labels")
    return cases


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write manifest rows (dicts with at least the required columns), paths relative to ``path``'s folder."""
    extra = sorted({k for row in rows for k in row} - set(REQUIRED_COLUMNS))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*REQUIRED_COLUMNS, *extra])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def manifest_fingerprint(cases: list[Case]) -> str:
    """Content fingerprint: ids, labels, sites and each file's name and size."""
    digest = hashlib.sha256()
    for c in sorted(cases, key=lambda c: c.scan_id):
        parts = [c.scan_id, c.patient_id, c.timepoint, str(c.label), c.site]
        for file in (c.image_path, c.mask_path):
            parts += ["-", "-"] if file is None else [file.name, str(file.stat().st_size)]
        digest.update("|".join(parts).encode())
    return digest.hexdigest()[:16]
