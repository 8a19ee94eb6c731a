"""Read a study's finished run directories into one per-case table (reports read nothing else)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from bench.aggregate import with_derived_columns
from bench.errors import BenchError
from bench.store import DONE, SPEC, read_json

__all__ = ["collect_hardware", "collect_per_case", "collect_specs"]


def collect_per_case(study_root: Path, units: list[Path]) -> pd.DataFrame:
    """All per-case rows of a study's finished ``units`` (:func:`bench.store.done_units`), with the derived
    columns of :mod:`bench.aggregate`; refuses rows from different splits."""
    if not units:
        raise BenchError(f"no finished units under {study_root}; run `bench run --study {study_root.name}` first")
    frame = pd.concat([pd.read_parquet(u / "per_case.parquet") for u in units], ignore_index=True)
    hashes = sorted(frame["split_hash"].unique())
    if len(hashes) > 1:
        raise BenchError(f"{study_root}: finished units use different splits ({', '.join(hashes)}); "
                         "results from different splits cannot be compared")
    return with_derived_columns(frame)


def collect_specs(units: list[Path]) -> list[dict]:
    return [read_json(u / SPEC) for u in units]


#: What a unit finished before its DONE.json recorded the machine counts as.
HARDWARE_NOT_RECORDED = "not recorded (units finished before DONE.json recorded the machine)"


def collect_hardware(units: list[Path]) -> Counter[str]:
    """How many of the finished ``units`` trained on each machine (:func:`bench.machine.describe_hardware`, as
    their DONE.json records it)."""
    return Counter(read_json(u / DONE).get("hardware", HARDWARE_NOT_RECORDED) for u in units)
