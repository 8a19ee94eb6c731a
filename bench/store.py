"""The results store: one directory per unit; the files are the record, MLflow mirrors them.

``runs/<study>/<arm>/fold_<k>/seed_<s>/`` holds ``spec.json``, ``history.csv``, ``per_case.parquet``,
``predictions.npz`` (binarised predictions at σ = 0 and at the largest σ), ``cams.npz`` (methods with a
localisation map), ``uncertainty.npz`` (evidential segmenters' pixel-wise uncertainty), an optional
``model.pt`` and, written last and atomically, ``DONE.json``, which records the size and SHA-256 of
``spec.json`` and ``per_case.parquet``. A failed unit leaves ``FAILED.json`` with its traceback instead.

A finished unit whose spec hash no longer matches the plan is moved to ``runs/<study>/.stale/<time>/``;
one whose ``spec.json`` or ``per_case.parquet`` no longer matches its ``DONE.json`` (damaged on disk,
edited, truncated) is *corrupt*: reports and ``bench sync`` skip it with a warning and ``bench run``
moves it to ``runs/<study>/.corrupt/<time>/`` and trains it again. Nothing is ever deleted or mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

__all__ = ["unit_dir", "write_json_atomic", "read_json", "unit_status", "archive_stale", "clear_partial", "clear_unclaimed", "done_units",
           "corrupt_units", "file_digests", "unit_problem", "splits_file", "DONE", "FAILED", "SPEC", "PER_CASE", "SPLITS",
           "CHECKED_FILES"]

DONE, FAILED, SPEC, PER_CASE, SPLITS = "DONE.json", "FAILED.json", "spec.json", "per_case.parquet", "splits.json"
#: The files a finished unit's DONE.json vouches for (size and SHA-256): what reports and MLflow read.
CHECKED_FILES = (SPEC, PER_CASE)


def splits_file(runs_root: Path, study: str) -> Path:
    """``runs/<study>/splits.json``: the study's outer folds (every unit and search of the study reads it)."""
    return Path(runs_root) / study / SPLITS


def unit_dir(runs_root: Path, study: str, arm: str, fold: int, seed: int) -> Path:
    return Path(runs_root) / study / arm / f"fold_{fold}" / f"seed_{seed}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file, fsync, then rename: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w") as fh:
            json.dump(data, fh, indent=1, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:  # a full disk, a kill: no half-written file is left, under either name
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def file_digests(directory: Path, names=CHECKED_FILES) -> dict[str, dict[str, Any]]:
    """``{name: {"bytes": size, "sha256": hex}}`` of the files a DONE.json vouches for."""
    out = {}
    for name in names:
        data = (Path(directory) / name).read_bytes()
        out[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return out


def unit_problem(directory: Path, done: dict[str, Any] | None = None) -> str | None:
    """Why a finished unit cannot be trusted (``"<file>: <what is wrong>"``), or None when it is whole.

    Checks that ``spec.json`` parses and has DONE.json's spec hash, and that every file DONE.json
    vouches for still has its recorded size and SHA-256 (units finished before digests were recorded:
    that ``per_case.parquet`` has a readable footer).
    """
    directory = Path(directory)
    try:
        done = done if done is not None else read_json(directory / DONE)
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as exc:
        return f"{directory / DONE}: unreadable ({type(exc).__name__})"
    try:
        spec = read_json(directory / SPEC)
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as exc:
        return f"{directory / SPEC}: unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(spec, dict) or spec.get("spec_hash") != done.get("spec_hash"):
        found = spec.get("spec_hash") if isinstance(spec, dict) else type(spec).__name__
        return f"{directory / SPEC}: spec_hash {found!r}, but {DONE} was written for {done.get('spec_hash')!r}"
    recorded = done.get("files")
    if recorded:
        for name, expected in recorded.items():
            path = directory / name
            if not path.exists():
                return f"{path}: missing (expected {expected['bytes']} bytes)"
            actual = file_digests(directory, (name,))[name]
            if actual != expected:
                return (f"{path}: {actual['bytes']} bytes, SHA-256 {actual['sha256'][:12]}…, but {DONE} recorded "
                        f"{expected['bytes']} bytes, SHA-256 {expected['sha256'][:12]}…")
        return None
    try:
        import pyarrow.parquet as pq

        pq.read_metadata(directory / PER_CASE)
    except Exception as exc:  # noqa: BLE001 - any failure to read the footer means the file is damaged
        return f"{directory / PER_CASE}: unreadable ({type(exc).__name__}: {exc})"
    return None


def unit_status(directory: Path, spec_hash: str) -> str:
    """``done`` (finished, same spec, files intact), ``stale`` (finished, other spec), ``corrupt`` (finished,
    files damaged: :func:`unit_problem`), ``running`` (claimed by a live invocation), ``failed``, ``partial``
    or ``missing``."""
    done_path = directory / DONE
    if done_path.exists():
        try:
            done = read_json(done_path)
        except (json.JSONDecodeError, OSError, UnicodeDecodeError):
            return "partial"
        if done.get("spec_hash") != spec_hash:
            return "stale"
        return "corrupt" if unit_problem(directory, done) else "done"
    from bench.claims import live_claim

    if live_claim(directory):
        return "running"  # claimed by a live invocation (bench/claims.py)
    if (directory / FAILED).exists():
        return "failed"
    return "partial" if directory.exists() and any(directory.iterdir()) else "missing"


def archive_stale(directory: Path, study_root: Path, *, folder: str = ".stale") -> Path:
    """Move a finished unit made with another spec (or a corrupt one: ``folder=".corrupt"``) to
    ``<study_root>/<folder>/<time>/<relative path>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = study_root / folder / stamp / directory.relative_to(study_root)
    if target.exists():
        target = target.with_name(f"{target.name}.{time.time_ns()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(directory), str(target))
    return target


def clear_partial(directory: Path) -> None:
    """Remove an unfinished unit (interrupted or failed) before it is run again."""
    shutil.rmtree(directory, ignore_errors=True)


def clear_unclaimed(directory: Path) -> None:
    """Remove what an unfinished run left in a unit's directory, but the claim just taken on it."""
    from bench.claims import CLAIM

    for entry in Path(directory).iterdir():
        if entry.name == CLAIM or entry.name.startswith(".claim."):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _finished(study_root: Path) -> list[Path]:
    return sorted(p.parent for p in Path(study_root).glob(f"*/fold_*/seed_*/{DONE}"))


def done_units(study_root: Path) -> list[Path]:
    """Every finished, intact unit directory under a study (stale and corrupt units excluded)."""
    return [d for d in _finished(study_root) if unit_problem(d) is None]


def corrupt_units(study_root: Path) -> list[tuple[Path, str]]:
    """``(directory, problem)`` of every finished unit whose files no longer match its DONE.json."""
    return [(d, problem) for d in _finished(study_root) if (problem := unit_problem(d))]
