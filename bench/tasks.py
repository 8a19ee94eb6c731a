"""Tasks: what a method of each kind trains on and must output (seg | cls | joint).

The task checks a method against a dataset before anything trains (``bench check``) and checks the
network's output on the first batch, so a method that forgets a head fails at once with its name.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import ConfigError

__all__ = ["Task", "TASKS", "get_task"]


@dataclass(frozen=True)
class Task:
    kind: str
    needs_mask: bool
    needs_label: bool

    def data_problems(self, method: str, *, has_masks: bool, has_labels: bool) -> list[str]:
        """Reasons this method cannot run on a dataset (empty when it can)."""
        problems = []
        if self.needs_mask and not has_masks:
            problems.append(f"method '{method}' ({self.kind}) needs lesion masks, but some cases have no mask_path")
        if self.needs_label and not has_labels:
            problems.append(f"method '{method}' ({self.kind}) needs MS/NMOSD labels, but some cases have an empty label")
        return problems

    def check_output(self, method: str, out, *, batch_size: int, size: int) -> None:
        """Raise if the output lacks a head this task needs or has the wrong shape."""
        from bench.outputs import ModelOutput

        if not isinstance(out, ModelOutput):
            raise ConfigError(f"method '{method}': forward must return bench.outputs.ModelOutput, got {type(out).__name__}")
        if self.needs_mask:
            seg = out.seg_logits
            if seg is None:
                raise ConfigError(f"method '{method}' ({self.kind}) returned no seg_logits")
            if seg.ndim != 5 or seg.shape[0] != batch_size or seg.shape[1] not in (1, 2) or tuple(seg.shape[2:]) != (size,) * 3:
                raise ConfigError(f"method '{method}': seg_logits shape {tuple(seg.shape)}, "
                                  f"expected [{batch_size}, 1 or 2, {size}, {size}, {size}]")
        if self.needs_label:
            cls = out.cls_logits
            if cls is None:
                raise ConfigError(f"method '{method}' ({self.kind}) returned no cls_logits")
            if tuple(cls.shape) != (batch_size, 2):
                raise ConfigError(f"method '{method}': cls_logits shape {tuple(cls.shape)}, expected [{batch_size}, 2]")


TASKS = {
    "seg": Task("seg", needs_mask=True, needs_label=False),
    "cls": Task("cls", needs_mask=False, needs_label=True),
    "joint": Task("joint", needs_mask=True, needs_label=True),
}


def get_task(kind: str) -> Task:
    return TASKS[kind]
