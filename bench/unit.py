"""One unit (arm × fold × seed): build, train, evaluate, write its run directory, DONE.json last.

:func:`run_unit` is the function every executor calls, in this process or in a worker. It reads
nothing but its :class:`~bench.spec.UnitSpec` and the files that spec names, so it runs the same
inline, in a local pool or on a cluster node.
"""

from __future__ import annotations

import os
import random
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.claims import Claim, take_claim
from bench.machine import describe_hardware
from bench.profiles import Profile
from bench.spec import UnitSpec, code_version
from bench.store import DONE, FAILED, SPEC, clear_unclaimed, file_digests, unit_status, write_json_atomic
from bench.study_types import Training
from bench.testhooks import hold, trace

if TYPE_CHECKING:
    import torch

    from bench.data.manifest import Case

__all__ = ["run_unit", "Event", "training_setup", "validation_metrics", "VALIDATION_METRICS"]

#: What a unit's validation split reports after every epoch (history.csv columns ``val_<name>``).
VALIDATION_METRICS = ("auc", "acc", "dsc", "dsc_lesion")

Event = Callable[[dict[str, Any]], None]


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_device():
    """CUDA when it is available, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def training_setup(method_name: str, *, model_args: Mapping[str, Any], weights: Mapping[str, float], profile: Profile,
                   training: Training, train_cases: Sequence[Case], cache: Path, seed: int, device: torch.device):
    """Seed everything with ``seed``, then build the network, its loss and the shuffled training loader.

    Shared by a unit and by a tuning trial (:mod:`bench.tuning`), so both train exactly alike; returns
    ``(model, loss_fn, loader)``.
    """
    import torch
    from torch.utils.data import DataLoader

    from bench.data.dataset import VolumeDataset, load_volumes
    from bench.loop import place_model
    from bench.registry import METHODS, load_plugins

    load_plugins()
    method = METHODS.get(method_name)
    _seed_everything(seed)
    train_set = VolumeDataset(train_cases, load_volumes(cache, train_cases), augment=training.augment,
                              flip_prob=training.flip_prob, rotate_prob=training.rotate_prob,
                              rotate_degrees=training.rotate_degrees, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_set, batch_size=profile.batch, shuffle=True, drop_last=len(train_set) > profile.batch,
                        num_workers=profile.workers, generator=generator, pin_memory=device.type == "cuda",
                        persistent_workers=profile.workers > 0)
    model = place_model(method.build(in_channels=1, num_classes=2, spatial_size=profile.size, width=profile.width,
                                     **model_args), device)
    return model, method.make_loss(weights).to(device), loader


def validation_metrics(model, loss_fn, cases, volumes, *, device, precision: str = "fp32") -> dict[str, float]:
    """``val_<metric>`` for :data:`VALIDATION_METRICS` the model's heads allow, on noise-free validation scans."""
    import pandas as pd

    from bench.aggregate import case_metrics
    from bench.evaluate import evaluate

    metrics = case_metrics(pd.DataFrame(evaluate(model, loss_fn, cases, volumes, sigmas=(0.0,), device=device,
                                                 precision=precision).rows))
    return {f"val_{name}": float(metrics[name]) for name in VALIDATION_METRICS if name in metrics}


def _train_and_evaluate(spec: UnitSpec, directory: Path, emit: Event) -> dict[str, Any]:
    import pandas as pd
    import torch
    from monai.data import set_track_meta

    from bench.data.dataset import load_volumes
    from bench.data.manifest import read_manifest
    from bench.evaluate import evaluate
    from bench.loop import train
    from bench.splits import inner_splits, read_splits
    from bench.tasks import get_task

    set_track_meta(False)
    task = get_task(spec.kind)
    profile, training = Profile.from_dict(spec.profile), Training(**spec.training)
    cases = read_manifest(Path(spec.manifest))
    splits = read_splits(Path(spec.splits_path))
    if splits.hash != spec.split_hash:
        raise RuntimeError(f"{spec.splits_path}: split hash {splits.hash} differs from the planned {spec.split_hash}")
    train_cases, test_cases = splits.train_test(spec.fold, cases)
    val_cases: list = []
    if training.validate:  # learning curves on a validation split of the training fold, never the test fold
        inner, _ = inner_splits(splits, spec.fold, cases, training.validate)
        train_cases, val_cases = inner.train_test(0, train_cases)
    cache = Path(spec.cache_dir)
    device = default_device()
    precision = profile.precision
    model, loss_fn, loader = training_setup(spec.method, model_args=spec.model_args, weights=spec.weights, profile=profile,
                                            training=training, train_cases=train_cases, cache=cache,
                                            seed=(spec.seed + spec.extra.get("seed_offset", 0)) * 1000 + spec.fold,
                                            device=device)
    n_params = sum(p.numel() for p in model.parameters())
    history_rows: list[dict[str, Any]] = []
    val_volumes = load_volumes(cache, val_cases) if val_cases else []

    def on_epoch(row: dict[str, Any]) -> None:
        if val_cases:
            row.update(validation_metrics(model, loss_fn, val_cases, val_volumes, device=device, precision=precision))
            model.train()
        history_rows.append(row)
        pd.DataFrame(history_rows).to_csv(directory / "history.csv", index=False)
        emit({"type": "epoch", "epoch": row["epoch"], "loss": row["loss"]})

    start = time.perf_counter()
    train(model, loss_fn, loader, task=task, method=spec.method, training=training, device=device, on_epoch=on_epoch,
          **profile.recipe())
    train_seconds = time.perf_counter() - start
    emit({"type": "evaluate", "cases": len(test_cases)})
    start = time.perf_counter()
    result = evaluate(model, loss_fn, test_cases, load_volumes(cache, test_cases), sigmas=spec.noise, device=device,
                      noise_units=spec.noise_units, precision=precision)
    eval_seconds = time.perf_counter() - start
    frame = pd.DataFrame(result.rows)
    frame.insert(0, "study", spec.study)
    frame.insert(1, "arm", spec.arm)
    frame.insert(2, "method", spec.method)
    frame.insert(3, "fold", spec.fold)
    frame.insert(4, "seed", spec.seed)
    frame["spec_hash"], frame["split_hash"], frame["code_version"] = spec.hash, spec.split_hash, code_version()
    frame.to_parquet(directory / "per_case.parquet", index=False)
    np.savez_compressed(directory / "predictions.npz", shape=np.asarray([profile.size] * 3), **result.masks)
    if result.maps:
        np.savez_compressed(directory / "cams.npz", **result.maps)
    if result.uncertainty:
        np.savez_compressed(directory / "uncertainty.npz", **result.uncertainty)
    if training.checkpoint:
        torch.save(model.state_dict(), directory / "model.pt")
    return {"params": n_params, "train_seconds": train_seconds, "eval_seconds": eval_seconds,
            "epochs": profile.epochs, "device": str(device), "hardware": describe_hardware(str(device)),
            "test_cases": len(test_cases),
            "train_cases": len(train_cases), "validation_cases": len(val_cases)}


def _record_failure(spec: UnitSpec, path: Path, started: float, exc: BaseException, emit: Event) -> dict[str, Any]:
    failure = {"spec_hash": spec.hash, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
               "started": started, "finished": time.time()}
    try:
        write_json_atomic(path / FAILED, failure)
    except OSError as write_error:  # e.g. the disk is still full: the unit stays partial and is rerun all the same
        failure["error"] += f" (and {FAILED} could not be written: {write_error})"
    emit({"type": "end", "status": "failed", "error": failure["error"]})
    return {"status": "failed", **failure}


def run_unit(spec_data: dict[str, Any], directory: str, emit: Event | None = None) -> dict[str, Any]:
    """Claim and run one unit into ``directory``; returns ``{"status": "done" | "failed" | "elsewhere", ...}``
    (``elsewhere``: another invocation holds the unit's claim or has finished it) and never raises (but for
    Ctrl-C / SIGTERM).

    Any error, a full disk included, ends as ``failed`` without a DONE.json: the unit is rerun by the next
    ``bench run``. DONE.json, written last and atomically, records the digests of the files it vouches for.
    """
    spec = UnitSpec.from_json(spec_data)
    path = Path(directory)
    emit = emit or (lambda event: None)
    started = time.time()
    try:
        claim = take_claim(path)
    except OSError as exc:  # e.g. a full disk: the unit is not started
        return _record_failure(spec, path, started, exc, emit)
    if not isinstance(claim, Claim):  # another invocation trains it (bench/claims.py)
        emit({"type": "end", "status": "elsewhere"})
        return {"status": "elsewhere", "holder": claim}
    try:
        return _run_claimed(spec, path, started, emit)
    finally:
        claim.release()


def _run_claimed(spec: UnitSpec, path: Path, started: float, emit: Event) -> dict[str, Any]:
    if unit_status(path, spec.hash) == "done":  # finished by another invocation since this one planned
        emit({"type": "end", "status": "elsewhere"})
        return {"status": "elsewhere", "holder": None}
    clear_unclaimed(path)  # what a killed holder left behind never mixes into this run
    trace(f"train {spec.key} {os.getpid()}")  # for the tests that count trainings; nothing otherwise
    try:
        write_json_atomic(path / SPEC, spec.to_json())
        emit({"type": "start", "epochs": spec.profile["epochs"]})
        hold(f"unit {spec.arm}/fold_{spec.fold}/seed_{spec.seed}")  # a kill test's pause point; returns at once otherwise
        started = time.time()
        summary = _train_and_evaluate(spec, path, emit)
        done = {"spec_hash": spec.hash, "code_version": code_version(), "started": started, "finished": time.time(),
                **summary, "files": file_digests(path)}
        write_json_atomic(path / DONE, done)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a failing unit is recorded; the others go on
        return _record_failure(spec, path, started, exc, emit)
    emit({"type": "end", "status": "done"})
    return {"status": "done", **done}
