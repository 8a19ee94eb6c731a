"""Benchmark of the synthetic-cohort generator: ``python -m bench.bench_synth [--size 64] [--jobs 2] [--cold]``.

Generates the default cohort (69 MS + 62 NMOSD) into a temporary folder and reports wall-clock time, the time per
scan and whether the target (docs/data.md: under 2 minutes at 64³ on 2 cores) is met. ``--cold`` also
starts from an empty anatomy cache (deriving the 1 mm structures and regions from nilearn's templates first).
Finally one scan is regenerated alone and compared with the cohort's copy, byte for byte.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

TARGET_S = 120.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="Empty anatomy cache (includes deriving the anatomy).")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.cold:
            os.environ["BENCH_CACHE"] = str(Path(tmp) / "cache")
        import nibabel as nib
        import numpy as np

        from bench.data.cohort import generate_cohort
        from bench.data.manifest import read_manifest
        from bench.data.synthetic import SyntheticConfig, generate_scan

        config = SyntheticConfig(size=args.size)
        start = time.perf_counter()
        manifest = generate_cohort(config, Path(tmp) / "cohort", jobs=args.jobs)
        elapsed = time.perf_counter() - start
        cases = read_manifest(manifest)
        case = cases[len(cases) // 2]
        alone = generate_scan(config, case.patient_id.removeprefix("sub-"), int(case.timepoint),
                              "MS" if case.label == 0 else "NMOSD")
        identical = np.array_equal(np.asarray(nib.load(str(case.image_path)).dataobj), alone.image) and np.array_equal(
            np.asarray(nib.load(str(case.mask_path)).dataobj), alone.mask)
    verdict = "meets" if elapsed < TARGET_S else "MISSES"
    print(f"{len(cases)} scans at {args.size}³, {args.jobs} job(s){', cold cache' if args.cold else ''}: "
          f"{elapsed:.1f} s ({elapsed / len(cases):.2f} s per scan) — {verdict} the {TARGET_S:.0f} s target; "
          f"{case.scan_id} regenerated alone is {'identical' if identical else 'DIFFERENT'}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
