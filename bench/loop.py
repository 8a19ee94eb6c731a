"""The one training loop, for every method. What is method-specific lives in the method's loss.

Two learning-rate schedules, chosen by the profile (:class:`bench.profiles.Profile`):

* ``plateau`` — joint-model paper §4.1, the ``paper`` profile: Adam (default betas), the learning rate halved when the
  epoch's training loss has not improved for 10 epochs (ReduceLROnPlateau, patience 10, factor 0.5).
* ``cosine`` — the short CPU budgets (``smoke``, ``cpu``): a linear warm-up over the first ``warmup``
  fraction of the optimisation steps, then a cosine decay to zero at the last step, stepped per batch.
  With 8 epochs the plateau rule never fires (patience 10), so the weights evaluated were those of a
  full learning rate's last noisy steps; the cosine tail anneals them.

The weights after the final epoch are the ones evaluated.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from bench.profiles import PRECISIONS, SCHEDULES
from bench.study_types import Training
from bench.tasks import Task

__all__ = ["make_optimizer", "make_scheduler", "train_step", "forward", "PRECISIONS", "train", "TrainingDiverged", "place_model",
           "to_device",
           "SCHEDULES", "warmup_cosine"]




class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def _memory_format(device: torch.device) -> torch.memory_format:
    """``channels_last_3d`` on CPU, where oneDNN's channels-last 3D convolutions are the fast path (measured
    at the ``cpu`` profile, one thread: 3D UNet step 0.127 → 0.072 s, joint model 0.42 → 0.34 s, ResNet34
    unchanged); the default layout on CUDA, where cuDNN's fp32 3D kernels do not gain from it."""
    return torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format


def place_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` in the memory layout the harness feeds it (see :func:`to_device`)."""
    return model.to(device=device, memory_format=_memory_format(device))


def to_device(tensor: torch.Tensor, device: torch.device, *, non_blocking: bool = False) -> torch.Tensor:
    """Move a tensor to ``device``; 5-D volumes take the device's preferred memory layout."""
    tensor = tensor.to(device, non_blocking=non_blocking)
    return tensor.contiguous(memory_format=_memory_format(device)) if tensor.ndim == 5 else tensor


def _to_float(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_float(v) for k, v in value.items()}
    return value


def forward(model: nn.Module, image: torch.Tensor, *, precision: str = "fp32"):
    """``model(image)``; with ``precision="bf16"`` under ``torch.autocast`` (CPU with AMX/AVX512-BF16, or CUDA),
    its output's floating tensors cast back to float32 so that every loss and metric is computed in float32."""
    if precision == "fp32":
        return model(image)
    if precision != "bf16":
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    with torch.autocast(device_type=image.device.type, dtype=torch.bfloat16):
        out = model(image)
    return dataclasses.replace(out, seg_logits=_to_float(out.seg_logits), cls_logits=_to_float(out.cls_logits),
                               aux=_to_float(dict(out.aux)))


def make_optimizer(params, training: Training, lr: float) -> torch.optim.Optimizer:
    if training.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=training.weight_decay)
    if training.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=training.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=training.weight_decay)


def warmup_cosine(step: int, total: int, warmup: float, decay: float = 1.0) -> float:
    """The learning-rate factor at optimisation step ``step`` (0-based) of ``total``.

    Linear from 1 / w to 1 over the first ``w = round(warmup · total)`` steps; then constant; then, over the
    last ``d = round(decay · total)`` steps (at most all steps after the warm-up), ½(1 + cos(π t)) with t
    going from 0 to 1 one step after the last (so the last step still learns a little). ``decay = 1``: the
    cosine starts right after the warm-up.

    >>> [round(warmup_cosine(s, 8, 0.25), 3) for s in range(8)]
    [0.5, 1.0, 1.0, 0.933, 0.75, 0.5, 0.25, 0.067]
    >>> [round(warmup_cosine(s, 8, 0.25, decay=0.5), 3) for s in range(8)]
    [0.5, 1.0, 1.0, 1.0, 1.0, 0.854, 0.5, 0.146]
    """
    warm = int(round(warmup * total))
    if step < warm:
        return (step + 1) / warm
    start = max(warm, total - int(round(decay * total)))
    if step < start:
        return 1.0
    t = (step - start) / max(total - start, 1)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def make_scheduler(optimizer: torch.optim.Optimizer, *, schedule: str, training: Training, total_steps: int,
                   warmup: float, decay: float = 1.0):
    """``plateau``: ReduceLROnPlateau on the epoch's training loss; ``cosine``: per-step warm-up + cosine."""
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=training.plateau_factor, patience=training.plateau_patience)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total_steps, warmup, decay))
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")


def train_step(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               *, progress: float, check_output: Callable[[Any], None] | None = None,
               precision: str = "fp32") -> tuple[torch.Tensor, dict[str, float]]:
    """One optimisation step: forward (:func:`forward`, at ``precision``), the method's loss, backward, optimizer step.

    ``check_output`` sees the network's output before the loss does (the task's contract check).
    Raises :class:`TrainingDiverged` when the loss is not finite, before any weight changes.
    """
    out = forward(model, batch["image"], precision=precision)
    if check_output is not None:
        check_output(out)
    loss, terms = loss_fn(out, batch, progress=progress)
    if not torch.isfinite(loss):
        hint = ""
        if precision == "bf16" and loss.device.type == "cpu":
            hint = (f"; precision is bf16 on a CPU, where torch {torch.__version__.split('+')[0]}'s bf16 conv3d "
                    "weight gradient can be non-finite for a layer whose input is 2 voxels across with a 3³ kernel "
                    "(docs/profiles.md, 'Speed levers'): try precision fp32")
        raise TrainingDiverged(f"loss is {float(loss.detach())} (terms {terms}){hint}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), terms


def train(
    model: nn.Module,
    loss_fn: nn.Module,
    loader: DataLoader,
    *,
    task: Task,
    method: str,
    epochs: int,
    lr: float,
    training: Training,
    device: torch.device,
    schedule: str = "plateau",
    warmup: float = 0.0,
    decay: float = 1.0,
    precision: str = "fp32",
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` for ``epochs`` epochs; returns one history row per epoch.

    ``schedule``, ``warmup`` and ``precision`` come from the profile (module docstring, :func:`forward`). A history row's ``lr`` is the
    learning rate of the epoch's last step.
    """
    optimizer = make_optimizer(model.parameters(), training, lr)
    per_step = schedule != "plateau"
    scheduler = make_scheduler(optimizer, schedule=schedule, training=training, total_steps=epochs * len(loader),
                               warmup=warmup, decay=decay)
    history: list[dict[str, Any]] = []
    for epoch in range(epochs):
        model.train()
        start, total, count, sums = time.perf_counter(), 0.0, 0, {}
        for step, batch in enumerate(loader):
            batch = {k: to_device(v, device, non_blocking=True) for k, v in batch.items()}
            n, size = batch["image"].shape[0], batch["image"].shape[-1]
            check = None
            if epoch == 0 and step == 0:  # the output contract, once, on the first batch
                check = lambda out, n=n, size=size: task.check_output(method, out, batch_size=n, size=size)  # noqa: E731
            try:
                loss, terms = train_step(model, loss_fn, optimizer, batch, progress=epoch / max(epochs, 1), check_output=check,
                                         precision=precision)
            except TrainingDiverged as exc:
                raise TrainingDiverged(f"{exc} at epoch {epoch + 1}, step {step + 1}") from None
            last_lr = optimizer.param_groups[0]["lr"]
            if per_step:
                scheduler.step()
            total, count = total + float(loss) * n, count + n
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value * n
        mean_loss = total / max(count, 1)
        if not per_step:
            scheduler.step(mean_loss)
            last_lr = optimizer.param_groups[0]["lr"]
        row = {"epoch": epoch + 1, "loss": mean_loss, **{f"loss_{k}": v / max(count, 1) for k, v in sums.items()},
               "lr": last_lr, "seconds": time.perf_counter() - start}
        history.append(row)
        if on_epoch:
            on_epoch(row)
    return history
