"""``bench perf --levers``: what each speed lever buys per training step, measured on the same arms in one run.

Levers, each against the harness's default path (fp32, ``channels_last_3d`` on CPU, eager):

* ``bf16`` — forward under ``torch.autocast(bfloat16)`` (:func:`bench.loop.forward`; the profile field
  ``precision``), the same path CUDA takes;
* ``compile`` — ``torch.compile`` of the network (default inductor backend); its one-off compile time is
  reported separately and is not in the step time;
* ``bf16+compile`` — both;
* ``augment`` — the augmentation's cost per batch (flip + rotation of every volume of a batch, the
  training loader's work), against a batch served without it;
* ``to_device`` — moving a batch to the device in the network's memory layout (what keeping the data on
  the device would save).

Each (method, lever) is measured in a fresh spawned process with ``threads`` torch threads on random
volumes at the profile's size, batch and width; times are medians over ``steps`` steps after two warm-up
steps. A lever that fails (e.g. no compiler) is reported with its error, the others are measured. A lever
that takes longer than ``timeout`` seconds (``torch.compile`` of a 3D network can take minutes on a CPU) is
stopped and reported as timed out.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.perf import measured_setting
from bench.procs import run_isolated

__all__ = ["LEVERS", "measure_lever", "measure_levers", "levers_markdown", "DEFAULT_LEVER_METHODS"]

LEVERS = ("fp32", "bf16", "compile", "bf16+compile")
DEFAULT_LEVER_METHODS = ("unet3d", "joint_model", "resnet34")


def _median_time(fn, steps: int, sync) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_lever(method: str, lever: str, profile: dict, steps: int, threads: int) -> dict[str, Any]:
    """One method's training step with one lever, in this process."""
    import torch

    from bench.loop import make_optimizer, place_model, to_device, train_step
    from bench.registry import METHODS, load_plugins
    from bench.study_types import Training

    torch.set_num_threads(threads)
    load_plugins()
    spec = METHODS.get(method)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size, batch = profile["size"], profile["batch"]
    torch.manual_seed(0)
    model = place_model(spec.build(in_channels=1, num_classes=2, spatial_size=size, width=profile["width"]), device)
    loss_fn = spec.make_loss(spec.weights).to(device)
    optimizer = make_optimizer(model.parameters(), Training(), profile["lr"])
    image = to_device(torch.randn(batch, 1, size, size, size), device)
    data = {"image": image, "mask": (torch.rand_like(image) > 0.99).float(), "label": torch.arange(batch, device=device) % 2}
    precision = "bf16" if "bf16" in lever else "fp32"
    compile_s = float("nan")
    if "compile" in lever:
        start = time.perf_counter()
        model = torch.compile(model)
        train_step(model, loss_fn, optimizer, data, progress=0.5, precision=precision)  # compiles
        compile_s = time.perf_counter() - start

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    step = _median_time(lambda: train_step(model, loss_fn, optimizer, data, progress=0.5, precision=precision), steps, sync)
    return {"method": method, "lever": lever, "train_step_s": step, "compile_s": compile_s, "device": str(device)}


def measure_data_path(profile: dict, steps: int, threads: int) -> dict[str, Any]:
    """The loader's augmentation cost per batch and the cost of moving a batch to the device."""
    import numpy as np
    import torch

    from bench.data.dataset import VolumeDataset
    from bench.data.manifest import Case
    from bench.data.preprocess import Volume
    from bench.loop import to_device

    torch.set_num_threads(threads)
    size, batch = profile["size"], profile["batch"]
    rng = np.random.default_rng(0)
    cases = [Case(scan_id=f"s{i}", patient_id=f"p{i}", timepoint="0", label=i % 2, site="A", image_path=Path("-"),
                  mask_path=None) for i in range(batch)]
    volumes = [Volume(scan_id=c.scan_id, image=rng.standard_normal((1, size, size, size), dtype=np.float32),
                      mask=(rng.random((1, size, size, size)) > 0.99).astype(np.uint8), spacing=(1.0, 1.0, 1.0))
               for c in cases]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for augment in (False, True):
        dataset = VolumeDataset(cases, volumes, augment=augment, flip_prob=1.0, rotate_prob=1.0, seed=0)
        seconds = _median_time(lambda dataset=dataset: [dataset[i] for i in range(batch)], steps, lambda: None)
        rows.append(("augment" if augment else "no augment", seconds))
    host = torch.randn(batch, 1, size, size, size)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    rows.append(("to_device", _median_time(lambda: to_device(host, device), steps, sync)))
    return {"device": str(device), "batch_s": dict(rows)}


def _worker(args) -> dict[str, Any]:
    kind, method, lever, profile, steps, threads = args
    try:
        if kind == "data":
            return measure_data_path(profile, steps, threads)
        return measure_lever(method, lever, profile, steps, threads)
    except Exception as exc:  # one lever's failure is reported, the others are measured
        return {"method": method, "lever": lever, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}


def _run_with_timeout(job, timeout: float | None) -> dict[str, Any]:
    """``_worker(job)`` in a fresh process; past ``timeout`` seconds the process is killed and the row says so."""
    try:
        return run_isolated(_worker, (job,), timeout=timeout)
    except TimeoutError as exc:
        return {"method": job[1], "lever": job[2], "error": str(exc)}


def measure_levers(methods, profile, *, levers=LEVERS, steps: int = 5, threads: int = 1, progress=None,
                   timeout: float | None = None):
    """Every (method, lever) and the data path, each in a fresh spawned process, one after the other.

    ``timeout``: seconds one (method, lever) may take, compile and warm-up included (None: no limit).
    """
    jobs = [("step", m, lever, profile.as_dict(), steps, threads) for m in methods for lever in levers]
    jobs.append(("data", "", "", profile.as_dict(), steps, threads))
    rows, data = [], {}
    for i, job in enumerate(jobs):
        result = _run_with_timeout(job, timeout)
        if job[0] == "data":
            data = result
        else:
            rows.append(result)
        if progress:
            progress(i + 1, len(jobs))
    return rows, data


def levers_markdown(rows, data, profile, *, threads: int, steps: int) -> str:
    """The levers table: step time per method and lever, the speed-up against fp32, and the data path."""
    import math

    _, setting = measured_setting(rows, profile, threads)
    lines = [f"Speed levers {setting}; training-step medians of {steps} steps after two warm-ups, each method "
             "and lever in a fresh process. Speed-up = fp32 step / lever step.", "",
             "| Method | Lever | Train step (s) | Speed-up | Compile (s) |", "|---|---|---:|---:|---:|"]
    base = {r["method"]: r["train_step_s"] for r in rows if r.get("lever") == "fp32" and "error" not in r}
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['method']} | {row['lever']} | failed: {row['error']} | | |")
            continue
        speedup = base.get(row["method"], float("nan")) / row["train_step_s"]
        compile_s = "—" if math.isnan(row["compile_s"]) else f"{row['compile_s']:.1f}"
        lines.append(f"| {row['method']} | {row['lever']} | {row['train_step_s']:.3f} | {speedup:.2f}× | {compile_s} |")
    if data.get("batch_s"):
        batch = data["batch_s"]
        lines += ["", f"Data path per batch of {profile.batch}: served without augmentation "
                  f"{1000 * batch['no augment']:.1f} ms, with flip + rotation {1000 * batch['augment']:.1f} ms "
                  f"(the augmentation costs {1000 * (batch['augment'] - batch['no augment']):.1f} ms a batch); "
                  f"moving the batch to {data['device']} in the network's layout {1000 * batch['to_device']:.1f} ms."]
    elif "error" in data:
        lines += ["", f"Data path: failed: {data['error']}"]
    return "\n".join(lines) + "\n"
