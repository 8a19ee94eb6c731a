"""``bench check``: build every arm of a study at a profile without training; collect every problem.

Each arm is built at the profile's size and width (parameter count), its loss is made with the arm's
weights, and its output contract is checked by a forward + backward pass at a small size. The dataset
is resolved (the synthetic cohort is not generated) and checked against each method's task.
"""

from __future__ import annotations

from dataclasses import fields

from rich.console import Console
from rich.table import Table

from bench.errors import BenchError

__all__ = ["check_study", "check_arm"]


def check_arm(arm, profile) -> tuple[int | None, list[str]]:
    """(parameter count at the profile, problems) for one arm."""
    import torch

    from bench.registry import METHODS
    from bench.tasks import get_task

    method = METHODS.get(arm.method)
    problems: list[str] = []
    try:
        model = method.build(in_channels=1, num_classes=2, spatial_size=profile.size, width=profile.width, **arm.model_args)
        n_params = sum(p.numel() for p in model.parameters())
        method.make_loss(arm.weights)
    except BenchError as exc:
        return None, [f"arm '{arm.name}': {exc}"]
    except Exception as exc:  # a builder's own validation
        return None, [f"arm '{arm.name}': building '{arm.method}' failed: {type(exc).__name__}: {exc}"]
    size = max(method.size_multiple, 16)
    size = ((32 + size - 1) // size) * size
    try:
        small = method.build(in_channels=1, num_classes=2, spatial_size=size, width=profile.width, **arm.model_args)
        out = small(torch.randn(2, 1, size, size, size))
        get_task(method.task_kind(arm.model_args)).check_output(arm.method, out, batch_size=2, size=size)
        batch = {"image": torch.randn(2, 1, size, size, size), "mask": torch.zeros(2, 1, size, size, size),
                 "label": torch.tensor([0, 1])}
        loss, _ = method.make_loss(arm.weights)(out, batch, progress=0.0)
        loss.backward()
    except BenchError as exc:
        problems.append(f"arm '{arm.name}': {exc}")
    except Exception as exc:
        problems.append(f"arm '{arm.name}': forward/backward at {size}³ failed: {type(exc).__name__}: {exc}")
    return n_params, problems


def _data_problems(study, profile) -> tuple[str, list[str], bool, bool]:
    from bench.data import DATASETS
    from bench.data.manifest import read_manifest
    from bench.data.synthetic import SyntheticConfig

    name, options = study.dataset.name, study.dataset.options
    if name == "synthetic":
        allowed = {f.name for f in fields(SyntheticConfig)} - {"size"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            return "synthetic", [f"dataset.options: unknown synthetic option(s) {unknown}"], True, True
        return "synthetic (generated on first run)", [], True, True
    try:
        DATASETS.get(name)
        from bench.data import resolve_manifest

        cases = read_manifest(resolve_manifest(name, options, profile))
    except BenchError as exc:
        return name, [str(exc)], False, False
    return f"{name}: {len(cases)} scans", [], all(c.mask_path for c in cases), all(c.label is not None for c in cases)


def check_study(name: str, profile_name: str | None, console: Console) -> list[str]:
    from bench.registry import METHODS
    from bench.study import load_study
    from bench.tasks import get_task

    study = load_study(name)
    profile = study.resolve_profile(profile_name)
    description, problems, has_masks, has_labels = _data_problems(study, profile)
    table = Table(title=f"{study.name} at profile '{profile.name}' ({profile.size}³, width {profile.width}) — data: {description}")
    for col in ("arm", "method", "kind", "parameters", "status"):
        table.add_column(col)
    for arm in study.arms:
        n_params, arm_problems = check_arm(arm, profile)
        kind = METHODS.get(arm.method).task_kind(arm.model_args)
        arm_problems += get_task(kind).data_problems(arm.method, has_masks=has_masks, has_labels=has_labels)
        problems += arm_problems
        table.add_row(arm.name, arm.method, kind, "—" if n_params is None else f"{n_params / 1e6:.2f} M",
                      "[green]ok[/green]" if not arm_problems else "[red]" + "; ".join(arm_problems) + "[/red]")
    console.print(table)
    return problems
