"""Progress bars for long work: one overall bar for the units, one bar per running unit (epochs)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["UnitProgress", "TrialProgress", "counter_bar"]


def _columns():
    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn())


class UnitProgress:
    """Renders executor events. Use as a context manager."""

    def __init__(self, console: Console, total: int, title: str) -> None:
        self.progress = Progress(*_columns(), console=console, transient=False)
        self.overall = self.progress.add_task(title, total=total, info="")
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> UnitProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def event(self, key: str, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "start":
            self.tasks[key] = self.progress.add_task(f"  {key}", total=event["epochs"], info="training")
        elif key not in self.tasks:
            return
        elif kind == "epoch":
            self.progress.update(self.tasks[key], completed=event["epoch"], info=f"loss {event['loss']:.4f}")
        elif kind == "evaluate":
            self.progress.update(self.tasks[key], info=f"evaluating {event['cases']} cases")
        elif kind == "end":
            self.progress.remove_task(self.tasks.pop(key))

    def unit_finished(self, failed: bool) -> None:
        self.progress.advance(self.overall)
        if failed:
            self.progress.update(self.overall, info="[red]some units failed[/red]")


class TrialProgress:
    """``bench tune``: one bar of finished trials over every outer fold, one for the running trial's epochs."""

    def __init__(self, console: Console, total: int, done: int, title: str) -> None:
        self.progress = Progress(*_columns(), console=console, transient=False)
        self.overall = self.progress.add_task(title, total=total, completed=done, info="")
        self.current: int | None = None

    def __enter__(self) -> TrialProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, finished: int, info: str) -> None:
        self.progress.update(self.overall, completed=finished, info=info)

    def epoch(self, event: dict[str, Any]) -> None:
        """An epoch of the running trial (inline workers only): fold, trial, inner fold, epoch, values."""
        total = event["epochs"]
        description = f"  fold {event['fold']} trial {event['trial']} inner fold {event['inner_fold'] + 1}"
        if self.current is None:
            self.current = self.progress.add_task(description, total=total, info="")
        self.progress.update(self.current, description=description, completed=event["epoch"], total=total,
                             info=f"objective {event['value']:.3f} (estimate {event['estimate']:.3f})")


def counter_bar(console: Console, description: str):
    """A ``(done, total)`` callback drawing a simple bar, and the Progress to close after use."""
    progress = Progress(*_columns(), console=console, transient=True)
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            progress.start()
            task = progress.add_task(description, total=total, info="")
        progress.update(task, completed=done)
        if done >= total:
            progress.stop()

    return update, progress
