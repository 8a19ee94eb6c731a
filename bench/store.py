"""The results store: one directory per unit; the files are the record, MLflow mirrors them.

``runs/<study>/<arm>/fold_<k>/seed_<s>/`` holds ``spec.json``, ``history.csv``, ``per_case.parquet``,
``predictions.npz`` (binarised predictions at σ = 0 and at the largest σ), ``cams.npz`` (methods with a
localisation map), ``uncertainty.npz`` (evidential segmenters' pixel-wise uncertainty), an optional
``model.pt`` and, written last and atomically, ``DONE.json``. A
failed unit leaves ``FAILED.json`` with its traceback instead. A finished unit whose spec hash no
longer matches the plan is moved to ``runs/<study>/.stale/<time>/`` (never deleted, never mixed in).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

__all__ = ["unit_dir", "write_json_atomic", "read_json", "unit_status", "archive_stale", "clear_partial", "done_units",
           "DONE", "FAILED", "SPEC"]

DONE, FAILED, SPEC = "DONE.json", "FAILED.json", "spec.json"


def unit_dir(runs_root: Path, study: str, arm: str, fold: int, seed: int) -> Path:
    return Path(runs_root) / study / arm / f"fold_{fold}" / f"seed_{seed}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file, fsync, then rename: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh, indent=1, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def unit_status(directory: Path, spec_hash: str) -> str:
    """``done`` (finished, same spec), ``stale`` (finished, other spec), ``failed``, ``partial`` or ``missing``."""
    done = directory / DONE
    if done.exists():
        try:
            return "done" if read_json(done).get("spec_hash") == spec_hash else "stale"
        except (json.JSONDecodeError, OSError):
            return "partial"
    if (directory / FAILED).exists():
        return "failed"
    return "partial" if directory.exists() and any(directory.iterdir()) else "missing"


def archive_stale(directory: Path, study_root: Path) -> Path:
    """Move a finished unit made with another spec to ``<study_root>/.stale/<time>/<relative path>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = study_root / ".stale" / stamp / directory.relative_to(study_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(directory), str(target))
    return target


def clear_partial(directory: Path) -> None:
    """Remove an unfinished unit (interrupted or failed) before it is run again."""
    shutil.rmtree(directory, ignore_errors=True)


def done_units(study_root: Path) -> list[Path]:
    """Every finished unit directory under a study (stale archives excluded)."""
    return sorted(p.parent for p in Path(study_root).glob(f"*/fold_*/seed_*/{DONE}"))
