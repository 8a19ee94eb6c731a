"""``bench perf``: efficiency of each arm of a study, or of registered methods, at a profile (docs/statistics.md
"Efficiency").

Per arm: parameters, forward FLOPs per volume (``torch.utils.flop_counter``), training-step time
(forward + loss + backward + optimizer step at the profile's batch, on one random batch with the
optimizer at learning rate 0: :func:`timing_setup`), inference time per volume and
peak memory. Inference runs in batches of ``bench.evaluate.EVAL_BATCH`` volumes, as evaluation does.
Each arm is measured in a fresh spawned process so that its peak memory is its own: on CUDA
``torch.cuda.max_memory_allocated``, on CPU the process's peak RSS minus its RSS before the model was
built. Times are medians over ``steps`` repetitions after one warm-up.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.machine import processor
from bench.procs import run_isolated

__all__ = ["measure_arm", "measure_arms", "method_arms", "efficiency_markdown", "measured_setting", "median_time",
           "timing_setup"]


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_time(fn, steps: int, device=None, *, warmup: int = 1, after=None) -> float:
    """Median wall-clock seconds of ``fn()`` over ``steps`` calls that follow ``warmup`` calls left out of the
    median. On CUDA each call is bracketed by device synchronisations so that its kernels are inside the time;
    ``after``, if given, runs untimed after every call (warm-ups included)."""
    import torch

    def sync() -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for i in range(warmup + steps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
        if after is not None:
            after()
    return statistics.median(times)


def timing_setup(method: str, model_args: dict, weights: dict | None, profile: dict, device):
    """A seeded network, its loss, an optimizer and one random batch at the profile's size, for timing steps.

    The optimizer's learning rate is 0: a timed step does all of a training step's work (forward, loss,
    backward, the optimizer's moment updates and its parameter update) but leaves the weights where they
    started. Timing repeats one step on one random batch; with a real learning rate that would be training on
    noise, each timed step on other weights, drifting towards whatever that does to the network.
    ``weights``: the loss weights that differ from the method's defaults (None: all defaults).
    """
    import torch

    from bench.loop import make_optimizer, place_model, to_device
    from bench.registry import METHODS, load_plugins
    from bench.study_types import Training

    load_plugins()
    spec = METHODS.get(method)
    size, batch = profile["size"], profile["batch"]
    torch.manual_seed(0)
    model = place_model(spec.build(in_channels=1, num_classes=2, spatial_size=size, width=profile["width"], **model_args), device)
    loss_fn = spec.make_loss(weights).to(device)
    optimizer = make_optimizer(model.parameters(), Training(), lr=0.0)
    image = to_device(torch.randn(batch, 1, size, size, size), device)
    data = {"image": image, "mask": (torch.rand_like(image) > 0.99).float(),
            "label": torch.arange(batch, device=device) % 2}
    return model, loss_fn, optimizer, data


def measure_arm(method: str, model_args: dict, weights: dict, profile: dict, steps: int, threads: int) -> dict[str, Any]:
    """Measure one arm in this process (called in a fresh worker by :func:`measure_arms`)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.evaluate import EVAL_BATCH
    from bench.loop import to_device, train_step

    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size, batch = profile["size"], profile["batch"]
    rss_before = _rss_mb()
    model, loss_fn, optimizer, data = timing_setup(method, model_args, weights, profile, device)
    params = sum(p.numel() for p in model.parameters())
    image = data["image"]

    model.train()
    train_s = median_time(lambda: train_step(model, loss_fn, optimizer, data, progress=0.5), steps, device)
    model.eval()
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(image[:1])
        flops = counter.get_total_flops()
        # per volume, in batches of EVAL_BATCH as bench.evaluate runs them
        infer_batch = to_device(torch.randn(EVAL_BATCH, 1, size, size, size), device)
        infer_s = median_time(lambda: model(infer_batch), steps, device) / EVAL_BATCH
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = _rss_mb() - rss_before
    return {"method": method, "params_M": params / 1e6, "gflops_per_volume": flops / 1e9,
            "train_step_s": train_s, "inference_s": infer_s,
            "peak_memory_MB": peak, "device": str(device), "size": size, "batch": batch, "width": profile["width"]}


def _worker(args) -> dict[str, Any]:
    arm, method, model_args, weights, profile, steps, threads = args
    try:
        return {"arm": arm, **measure_arm(method, model_args, weights, profile, steps, threads)}
    except Exception as exc:  # one arm's failure is reported, the others are measured
        return {"arm": arm, "method": method, "error": f"{type(exc).__name__}: {exc}"}


def measure_arms(arms, profile, *, steps: int = 3, threads: int = 1, progress=None) -> list[dict[str, Any]]:
    """Measure every arm (a :class:`bench.study.Arm`) at ``profile``, one fresh process per arm, one
    after the other."""
    rows = []
    for i, arm in enumerate(arms):
        rows.append(run_isolated(_worker, ((arm.name, arm.method, dict(arm.model_args), dict(arm.weights),
                                            profile.as_dict(), steps, threads),)))
        if progress:
            progress(i + 1, len(arms))
    return rows


def method_arms(names: list[str]) -> list:
    """One arm per registered method named (``all``: every method), default arguments and weights."""
    from bench.registry import METHODS, load_plugins
    from bench.study_types import Arm

    load_plugins()
    chosen = METHODS.names() if "all" in names else [METHODS.get(n).name for n in names]
    return [Arm(name=n, method=n, label=n) for n in dict.fromkeys(chosen)]


def measured_setting(rows: list[dict[str, Any]], profile, threads: int) -> tuple[str, str]:
    """The device the rows were measured on, and the words of a benchmark table's header that say how:
    profile, volume, batch, width, device, processor and threads."""
    device = next((r["device"] for r in rows if "device" in r), "?")
    return device, (f"at profile `{profile.name}` ({profile.size}³, batch {profile.batch}, width {profile.width}) on "
                    f"{device} ({processor(device)}), {threads} thread(s)")


def efficiency_markdown(rows: list[dict[str, Any]], labels: dict[str, str], profile, *, threads: int, steps: int) -> str:
    """The efficiency table (Markdown) with a line saying how it was measured."""
    device, setting = measured_setting(rows, profile, threads)
    memory = "peak GPU memory allocated" if device.startswith("cuda") else "growth of the process's peak RSS"
    lines = [f"Efficiency {setting}; medians of {steps} repetitions after a warm-up; memory = {memory}.",
             "", "| Method | Params (M) | GFLOPs / volume | Train step (s) | Inference (s / volume) | Peak memory (MB) |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {labels[row['arm']]} | failed: {row['error']} | | | | |")
        else:
            lines.append(f"| {labels[row['arm']]} | {row['params_M']:.2f} | {row['gflops_per_volume']:.3g} | "
                         f"{row['train_step_s']:.3f} | {row['inference_s']:.3f} | {row['peak_memory_MB']:.0f} |")
    return "\n".join(lines) + "\n"
