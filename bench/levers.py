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
volumes at the profile's size, batch and width (:func:`bench.perf.timing_setup`: the optimizer runs at
learning rate 0, so every step does a training step's work on unchanged weights); times are medians over
``steps`` steps after two warm-up steps. With ``repeats`` > 1 every (method, lever) is measured in that many
fresh processes, the whole set once per round so that a drift of the machine spreads over every lever alike;
the table gives the median over the processes of their step medians and the range of those medians, because
one process's timing moves by tens of per cent between runs on a shared 2-core machine.

A step that produces a non-finite gradient is still timed (it did the work); its weights are put back untimed
and the table counts such steps below it. On torch 2.13's CPU build, bf16 autocast can give a non-finite conv3d
weight gradient where a 3³ convolution sees an input 2 voxels across (e.g. the 3D UNet's bottleneck at 32³): the
kernel reads memory it did not initialise, so it depends on what the allocator hands back (docs/profiles.md,
"Speed levers"). A lever that fails (e.g. no compiler) is reported with its error, the others are measured. A
lever that takes longer than ``timeout`` seconds (``torch.compile`` of a 3D network can take minutes on a CPU)
is stopped and reported as timed out.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any

from bench.perf import measured_setting, median_time, timing_setup
from bench.procs import run_isolated

__all__ = ["LEVERS", "measure_lever", "measure_levers", "combine_repeats", "levers_markdown", "DEFAULT_LEVER_METHODS"]

LEVERS = ("fp32", "bf16", "compile", "bf16+compile")
DEFAULT_LEVER_METHODS = ("unet3d", "joint_model", "resnet34")
WARMUP = 2  # steps run before the timed ones (the first steps allocate and pick kernels)


def _weight_guard(model, optimizer):
    """An untimed check after each timed step: if the step left a non-finite weight (a non-finite gradient times
    the learning rate 0 is still NaN), count it, put the starting weights back and zero the optimizer's moments.

    Returns ``(check, count)``; ``count()`` is the number of steps that produced a non-finite gradient.
    """
    import torch

    params = list(model.parameters())
    start = [p.detach().clone() for p in params]
    bad = 0

    def check() -> None:
        nonlocal bad
        if all(bool(torch.isfinite(p).all()) for p in params):
            return
        bad += 1
        with torch.no_grad():
            for p, p0 in zip(params, start):
                p.copy_(p0)
            for state in optimizer.state.values():
                for value in state.values():
                    if torch.is_tensor(value) and value.dim() > 0:
                        value.zero_()

    return check, lambda: bad


def measure_lever(method: str, lever: str, profile: dict, steps: int, threads: int) -> dict[str, Any]:
    """One method's training step with one lever, in this process."""
    import torch

    from bench.loop import train_step

    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, loss_fn, optimizer, data = timing_setup(method, {}, None, profile, device)
    precision = "bf16" if "bf16" in lever else "fp32"
    check, nonfinite = _weight_guard(model, optimizer)
    compile_s = float("nan")
    if "compile" in lever:
        start = time.perf_counter()
        model = torch.compile(model)
        train_step(model, loss_fn, optimizer, data, progress=0.5, precision=precision)  # compiles
        compile_s = time.perf_counter() - start
        check()

    model.train()
    step = median_time(lambda: train_step(model, loss_fn, optimizer, data, progress=0.5, precision=precision), steps,
                       device, warmup=WARMUP, after=check)
    return {"method": method, "lever": lever, "train_step_s": step, "compile_s": compile_s, "device": str(device),
            "nonfinite_steps": nonfinite(), "steps": steps + WARMUP + ("compile" in lever)}


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
        seconds = median_time(lambda dataset=dataset: [dataset[i] for i in range(batch)], steps, warmup=WARMUP)
        rows.append(("augment" if augment else "no augment", seconds))
    host = torch.randn(batch, 1, size, size, size)
    rows.append(("to_device", median_time(lambda: to_device(host, device), steps, device, warmup=WARMUP)))
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
                   timeout: float | None = None, repeats: int = 1):
    """Every (method, lever) and the data path, each in a fresh spawned process, one after the other.

    ``timeout``: seconds one (method, lever) may take, compile and warm-up included (None: no limit).
    ``repeats``: rounds over the whole set, each (method, lever) in a new process every round; the rows are
    :func:`combine_repeats` of the rounds.
    """
    jobs = [("step", m, lever, profile.as_dict(), steps, threads) for m in methods for lever in levers]
    jobs.append(("data", "", "", profile.as_dict(), steps, threads))
    results: list[list[dict[str, Any]]] = [[] for _ in jobs]  # per job, one result a round
    for round_ in range(repeats):
        for i, job in enumerate(jobs):
            results[i].append(_run_with_timeout(job, timeout))
            if progress:
                progress(round_ * len(jobs) + i + 1, len(jobs) * repeats)
    return [combine_repeats(r) for r in results[:-1]], _combine_data(results[-1])  # the data path is the last job


def _median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else float("nan")


def _succeeded(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if "error" not in r]


def combine_repeats(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the same (method, lever) measured in several processes.

    ``train_step_s`` and ``compile_s`` are medians over the processes that succeeded, ``step_min_s`` /
    ``step_max_s`` the range of their step times, ``repeats`` their number; the non-finite steps and the steps
    are summed. When every process failed, the first failure is the row.
    """
    ok = _succeeded(results)
    if not ok:
        return results[0]
    steps = [r["train_step_s"] for r in ok]
    row = {**ok[0], "train_step_s": statistics.median(steps), "step_min_s": min(steps), "step_max_s": max(steps),
           "compile_s": _median([r["compile_s"] for r in ok]), "repeats": len(ok),
           "nonfinite_steps": sum(r["nonfinite_steps"] for r in ok), "steps": sum(r["steps"] for r in ok)}
    if len(ok) < len(results):
        row["failed_repeats"] = len(results) - len(ok)
        row["failure"] = next(r["error"] for r in results if "error" in r)
    return row


def _combine_data(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = _succeeded(results)
    if not ok:
        return results[0]
    return {"device": ok[0]["device"], "batch_s": {k: statistics.median(r["batch_s"][k] for r in ok)
                                                   for k in ok[0]["batch_s"]}}


def levers_markdown(rows, data, profile, *, threads: int, steps: int, repeats: int = 1) -> str:
    """The levers table: step time per method and lever, the speed-up against fp32, and the data path.

    With ``repeats`` > 1 the step column adds the range over the processes, and the speed-up its widest range:
    from fp32's fastest over the lever's slowest to fp32's slowest over the lever's fastest.
    """
    _, setting = measured_setting(rows, profile, threads)
    how = ("each method and lever in a fresh process" if repeats == 1 else
           f"each method and lever in {repeats} fresh processes, one round over all of them after another; the "
           "median over the processes, and their range in brackets")
    lines = [f"Speed levers {setting}; training-step medians of {steps} steps after two warm-ups, {how}. "
             "Speed-up = fp32 step / lever step.", "",
             "| Method | Lever | Train step (s) | Speed-up | Compile (s) |", "|---|---|---:|---:|---:|"]
    base = {r["method"]: r for r in rows if r.get("lever") == "fp32" and "error" not in r}
    nan = float("nan")
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['method']} | {row['lever']} | failed: {row['error']} | | |")
            continue
        fp32 = base.get(row["method"], {})
        speedup = fp32.get("train_step_s", nan) / row["train_step_s"]
        step, gain = f"{row['train_step_s']:.3f}", f"{speedup:.2f}×"
        if "step_min_s" in row and row.get("repeats", 1) > 1:
            step += f" [{row['step_min_s']:.3f}–{row['step_max_s']:.3f}]"
            if row["lever"] != "fp32":
                gain += (f" [{fp32.get('step_min_s', nan) / row['step_max_s']:.2f}–"
                         f"{fp32.get('step_max_s', nan) / row['step_min_s']:.2f}]")
        if row.get("failed_repeats"):
            step += f" ({row['failed_repeats']} process(es) failed: {row['failure']})"
        compile_s = "—" if math.isnan(row["compile_s"]) else f"{row['compile_s']:.1f}"
        lines.append(f"| {row['method']} | {row['lever']} | {step} | {gain} | {compile_s} |")
    unstable = [r for r in rows if r.get("nonfinite_steps")]
    if unstable:
        lines += ["", "Non-finite gradients (the step was timed, the weights put back): " + "; ".join(
            f"{r['method']} {r['lever']} in {r['nonfinite_steps']} of {r['steps']} steps" for r in unstable)
            + ". A lever that produces them cannot train on this processor, whatever its speed-up."]
    if data.get("batch_s"):
        batch = data["batch_s"]
        lines += ["", f"Data path per batch of {profile.batch}: served without augmentation "
                  f"{1000 * batch['no augment']:.1f} ms, with flip + rotation {1000 * batch['augment']:.1f} ms "
                  f"(the augmentation costs {1000 * (batch['augment'] - batch['no augment']):.1f} ms a batch); "
                  f"moving the batch to {data['device']} in the network's layout {1000 * batch['to_device']:.1f} ms."]
    elif "error" in data:
        lines += ["", f"Data path: failed: {data['error']}"]
    return "\n".join(lines) + "\n"
